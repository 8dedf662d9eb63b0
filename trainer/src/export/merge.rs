//! `loam merge`: a base checkpoint plus a PEFT adapter → a complete Hugging Face model
//! directory (sharded safetensors + index, config, tokenizer files, model card).
//!
//! It streams ([`shards`]): every base tensor is read from the memory-mapped checkpoint,
//! merged with its adapter in f32 when it has one ([`Lora::merged_weight`]: `W + s·BA`, or
//! DoRA's formula; trained token rows written over the embedding's and the output head's),
//! cast, and written shard by shard. The adapter is checked against the base's tensor shapes
//! before anything is written, and the output is built in `<out>.tmp` and renamed at the end.
//! A tied model stays tied: its trained rows go into the one embedding matrix.
//!
//! A multimodal base (Gemma 3 4B and up) keeps its vision tower and projector as they are:
//! the adapter's modules are found in the language model's part of the checkpoint, under
//! the file's own names, and every other tensor is copied through. A bitsandbytes 4-bit
//! base is merged onto its dequantized weights only when asked (`--onto-dequantized`).

use crate::adapter::{self, AdapterConfig};
use crate::export::card::identity::Identity;
use crate::export::card::model as card;
use crate::export::shards;
use crate::fsutil;
use crate::lora::{self, Lora};
use crate::model::ModelSpec;
use crate::train::held_out::HeldOutScores;
use crate::vocab::trainable_tokens::{self, check_ids};
use crate::weights::TensorLayout;
use anyhow::{bail, Context, Result};
use shards::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Kind, Tensor};

/// Files besides the weights that make the directory usable, copied when the base has them.
const SIDE_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    crate::vocab::report::REPORT_FILE,
];

pub struct MergeOptions {
    /// Output dtype of floating tensors; `None` keeps the base checkpoint's.
    pub dtype: Option<Kind>,
    /// Largest shard in bytes (a single larger tensor still gets a shard of its own).
    pub shard_size: u64,
    /// Replace an existing output directory.
    pub force: bool,
    /// The base is a bitsandbytes 4-bit model: merge onto its dequantized weights (the
    /// result is a 16-bit model, never re-quantized).
    pub onto_dequantized: bool,
}

pub struct MergeSummary {
    pub tensors: usize,
    pub merged: usize,
    pub shards: usize,
    pub total_bytes: u64,
    pub dtype: Kind,
}

/// Merges the adapter in `adapter_dir` into the model in `model_dir` (resolved; `base` is
/// what the model card names it) and writes the result to `out`.
pub fn merge(
    model_dir: &Path,
    base: &Identity,
    eval_results: Option<HeldOutScores>,
    adapter_dir: &Path,
    out: &Path,
    opts: &MergeOptions,
) -> Result<MergeSummary> {
    fsutil::ensure_new(out, opts.force)?;
    let cfg = adapter::read_config(adapter_dir)?;
    let spec = ModelSpec::from_model_dir(model_dir)?;
    let base_4bit = spec.quantization.as_ref().is_some_and(|q| q.pre_quantized);
    if base_4bit && !opts.onto_dequantized {
        bail!(
            "{} is a 4-bit (bitsandbytes) model. Merge onto the original 16-bit model instead: pass \
             it as --model (an adapter trained on the 4-bit model fits it). Or add --onto-dequantized \
             to merge onto the dequantized 4-bit weights (a 16-bit result that keeps their 4-bit rounding)",
            model_dir.display()
        );
    }
    if opts.onto_dequantized && !base_4bit {
        bail!(
            "--onto-dequantized merges onto a 4-bit model, but {} is not one (its config.json has no \
             bitsandbytes quantization_config); drop the flag",
            model_dir.display()
        );
    }
    let entries = shards::list_tensors(model_dir)?;
    let adapter = read_adapter(adapter_dir, &cfg, &entries, &spec)?;
    let dtype = opts.dtype.unwrap_or_else(|| shards::saved_dtype(&entries));

    let written = fsutil::build_dir(out, |tmp| {
        let written = shards::write_tensors(
            model_dir,
            &entries,
            dtype,
            opts.shard_size,
            tmp,
            |e, base| Ok(adapter.merged(&e.name, base)),
        )?;
        shards::write_config(model_dir, tmp, |config| set_dtype(config, dtype))?;
        fsutil::copy_present(model_dir, tmp, SIDE_FILES)?;
        // The chat template the adapter was trained with (not the base's own) goes in, and
        // generation stops on its end-of-turn token.
        if let Some(source) = loam_data::template::install::trained_with(adapter_dir)? {
            loam_data::template::install::install(tmp, &source)?;
        }
        card::write(&card::CardInput {
            out: tmp,
            base,
            adapter_dir,
            adapter: &cfg,
            card: card::Card::Merged {
                dtype,
                onto_dequantized: opts.onto_dequantized,
            },
            eval_results,
        })?;
        Ok(written)
    })?;
    Ok(MergeSummary {
        tensors: entries.len(),
        merged: adapter.loras.len() + adapter.rows.len(),
        shards: written.shards,
        total_bytes: written.total_bytes,
        dtype,
    })
}

/// An adapter as merge applies it, keyed by the base weight's name.
struct Adapter {
    loras: BTreeMap<String, Lora>,
    /// Trained token rows: (row ids, their values `[n, hidden]` f32).
    rows: BTreeMap<String, (Tensor, Tensor)>,
}

impl Adapter {
    /// The base tensor `name` with the adapter merged in.
    fn merged(&self, name: &str, base: Tensor) -> Tensor {
        let merged = match self.loras.get(name) {
            Some(lora) => lora.merged_weight(&base),
            None => base,
        };
        match self.rows.get(name) {
            Some((ids, values)) => merged.to_kind(Kind::Float).index_copy(0, ids, values),
            None => merged,
        }
    }
}

/// The adapter in `adapter_dir`, checked against the base in `model_dir` as `merge` checks it:
/// its config, and each adapted linear (by base weight name) with its f32 A, B and scale.
pub(crate) fn read_checked_adapter(
    model_dir: &Path,
    adapter_dir: &Path,
) -> Result<(AdapterConfig, BTreeMap<String, Lora>)> {
    let cfg = adapter::read_config(adapter_dir)?;
    let spec = ModelSpec::from_model_dir(model_dir)?;
    let entries = shards::list_tensors(model_dir)?;
    let adapter = read_adapter(adapter_dir, &cfg, &entries, &spec)?;
    if !adapter.rows.is_empty() {
        bail!(
            "{}: the adapter trains token rows (trainable_token_indices), which a LoRA adapter \
             file elsewhere cannot carry; merge it (`loam merge`) and use the merged model",
            adapter_dir.display()
        );
    }
    Ok((cfg, adapter.loras))
}

/// `5GB`, `500MB`, `2GiB`, `1024` (bytes), as transformers' `max_shard_size` spells them.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_bytes: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => bail!("shard size `{s}`: unknown unit; use e.g. 5GB, 500MB, 2GiB or a byte count"),
    };
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 => Ok((n * unit_bytes) as u64),
        _ => bail!("shard size `{s}` is not a positive size such as 5GB or 500MB"),
    }
}

/// Reads the adapter's tensors and pairs them with base weights, keyed by the weight's
/// name in the file (`model.layers.0.self_attn.q_proj.weight`). Every tensor must fit the base.
fn read_adapter(
    dir: &Path,
    cfg: &AdapterConfig,
    entries: &[Entry],
    spec: &ModelSpec,
) -> Result<Adapter> {
    let tied = spec.tie_word_embeddings;
    let layout = TensorLayout::detect(entries.iter().map(|e| e.name.as_str()), spec.multimodal)?;
    let path = dir.join("adapter_model.safetensors");
    let mut tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .into_iter()
        .collect();
    let shapes: HashMap<&str, &[i64]> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.shape.as_slice()))
        .collect();
    let rows = match &cfg.trainable_token_indices {
        None => BTreeMap::new(),
        Some(indices) => token_rows(indices, &mut tensors, tied, &shapes, &layout, &path)?,
    };
    let mut parts: BTreeMap<String, [Option<Tensor>; 3]> = BTreeMap::new();
    for (key, tensor) in tensors {
        let module_and_part = key.strip_prefix("base_model.model.").and_then(|rest| {
            [".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector"]
                .iter()
                .enumerate()
                .find_map(|(i, suffix)| rest.strip_suffix(suffix).map(|m| (m.to_string(), i)))
        });
        let Some((module, part)) = module_and_part else {
            bail!(
                "{}: tensor `{key}` is not a LoRA tensor (expected base_model.model.<module>.lora_A.weight, lora_B.weight or lora_magnitude_vector)",
                path.display()
            );
        };
        parts.entry(module).or_default()[part] = Some(tensor.to_kind(Kind::Float));
    }
    let mut adapters = BTreeMap::new();
    for (module, [a, b, magnitude]) in parts {
        let weight = match layout.canonical_module(&module) {
            Some(canonical) => layout.tensor(&format!("{canonical}.weight")),
            None => format!("{module}.weight"),
        };
        let Some((out, inp)) = shapes.get(weight.as_str()).and_then(|s| match s {
            [o, i] => Some((*o, *i)),
            _ => None,
        }) else {
            bail!(
                "{}: the adapter targets `{module}`, but the base model has no linear layer `{weight}` \
                 (the adapter was made for another base model?)",
                path.display()
            );
        };
        let (Some(a), Some(b)) = (a, b) else {
            bail!(
                "{}: `{module}` has only one of lora_A / lora_B",
                path.display()
            );
        };
        let r = a.size()[0];
        if a.size() != [r, inp] || b.size() != [out, r] {
            bail!(
                "{}: `{module}` has lora_A {:?} and lora_B {:?}, but the base layer is [{out}, {inp}] \
                 (the adapter was made for another base model?)",
                path.display(),
                a.size(),
                b.size()
            );
        }
        if cfg.use_dora != magnitude.is_some() {
            bail!(
                "{}: `{module}`: use_dora is {} but lora_magnitude_vector is {}",
                path.display(),
                cfg.use_dora,
                if magnitude.is_some() {
                    "present"
                } else {
                    "missing"
                }
            );
        }
        if let Some(m) = &magnitude {
            if m.size() != [out] {
                bail!(
                    "{}: `{module}` has lora_magnitude_vector {:?}, but the base layer has {out} rows",
                    path.display(),
                    m.size()
                );
            }
        }
        let alpha = cfg
            .alpha_pattern
            .iter()
            .find(|(k, _)| module == **k || module.ends_with(&format!(".{k}")))
            .map_or(cfg.lora_alpha, |(_, v)| *v);
        let lora = Lora {
            a,
            b,
            magnitude,
            scale: lora::scale(r, alpha, cfg.use_rslora),
            dropout: 0.0,
            pissa_start: None,
        };
        adapters.insert(weight, lora);
    }
    if adapters.is_empty() && rows.is_empty() {
        bail!("{} holds no LoRA tensors", path.display());
    }
    Ok(Adapter {
        loras: adapters,
        rows,
    })
}

/// The adapter's trained token rows by the weight they go into; a tied model's rows go into
/// the embedding (and into a stored copy of `lm_head.weight`, if the checkpoint has one).
fn token_rows(
    indices: &trainable_tokens::TokenIndices,
    tensors: &mut BTreeMap<String, Tensor>,
    tied: bool,
    shapes: &HashMap<&str, &[i64]>,
    layout: &TensorLayout,
    path: &Path,
) -> Result<BTreeMap<String, (Tensor, Tensor)>> {
    let (embedding, output) = trainable_tokens::saved_rows(indices, tensors, tied, path)?;
    let (embed, head) = (
        layout.tensor("model.embed_tokens.weight"),
        layout.tensor("lm_head.weight"),
    );
    let mut targets = Vec::new();
    if let Some(rows) = &embedding {
        targets.push((embed.as_str(), rows));
        if tied && shapes.contains_key(head.as_str()) {
            targets.push((head.as_str(), rows));
        }
    }
    if let Some(rows) = &output {
        targets.push((head.as_str(), rows));
    }
    let mut out = BTreeMap::new();
    for (weight, (ids, values)) in targets {
        let Some(&[vocab, hidden]) = shapes.get(weight).copied() else {
            bail!(
                "{}: the adapter trains rows of `{weight}`, which the base model lacks",
                path.display()
            );
        };
        check_ids(ids, vocab).with_context(|| format!("{}", path.display()))?;
        if values.size() != [ids.len() as i64, hidden] {
            bail!(
                "{}: trained rows of `{weight}` are {:?}, the base's rows [{}, {hidden}]",
                path.display(),
                values.size(),
                ids.len()
            );
        }
        let values = values.to_kind(Kind::Float);
        out.insert(weight.to_string(), (Tensor::from_slice(ids), values));
    }
    Ok(out)
}

/// The config's dtype key(s) set to the merged dtype: transformers 5 writes `dtype`, older
/// versions `torch_dtype`; whichever the base had is kept (both set alike).
fn set_dtype(config: &mut serde_json::Map<String, serde_json::Value>, dtype: Kind) {
    let name = torch_dtype_name(dtype);
    let mut keys: Vec<String> = ["dtype", "torch_dtype"]
        .into_iter()
        .filter(|k| config.contains_key(*k))
        .map(String::from)
        .collect();
    if keys.is_empty() {
        keys.push("dtype".into());
    }
    for key in keys {
        config.insert(key, name.into());
    }
    // Merged weights are 16-bit: a 4-bit base's quantization_config no longer applies.
    config.remove("quantization_config");
}

/// The dtype as transformers names it in `config.json`.
pub fn torch_dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_sizes_parse_like_transformers() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("0MB").is_err());
    }
}

//! `loam merge`: a base checkpoint plus a PEFT adapter → a complete Hugging Face model
//! directory (sharded safetensors + index, config, tokenizer files, model card).
//!
//! It streams: every base tensor is read from the memory-mapped checkpoint, merged with its
//! adapter in f32 when it has one ([`Lora::merged_weight`]: `W + s·BA`, or DoRA's formula),
//! cast, and written shard by shard, so only one shard's bytes are ever in memory. The
//! adapter is checked against the base's tensor shapes before anything is written, and the
//! output is built in `<out>.tmp` and renamed at the end.
//!
//! A multimodal base (Gemma 3 4B and up) keeps its vision tower and projector as they are:
//! the adapter's modules are found in the language model's part of the checkpoint, under
//! the file's own names, and every other tensor is copied through.

use crate::adapter::{self, AdapterConfig};
use crate::export::model_card;
use crate::fsutil;
use crate::lora::{self, Lora};
use crate::model::quant::bnb;
use crate::model::ModelSpec;
use crate::weights::{kind_of, TensorLayout, Weights};
use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
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

/// One tensor of the base checkpoint, as its header describes it (a 4-bit weight as the
/// 16-bit weight it dequantizes to).
struct Entry {
    name: String,
    kind: Kind,
    shape: Vec<i64>,
    quantized: bool,
}

/// Merges the adapter in `adapter_dir` into the model in `model_dir` (resolved; `model_arg`
/// is what the user typed, for the model card) and writes the result to `out`.
pub fn merge(
    model_dir: &Path,
    model_arg: &str,
    adapter_dir: &Path,
    out: &Path,
    opts: &MergeOptions,
) -> Result<MergeSummary> {
    if out.exists() && !opts.force {
        bail!(
            "{} already exists; pass --force to replace it",
            out.display()
        );
    }
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
    let entries = list_tensors(model_dir)?;
    let layout = TensorLayout::detect(entries.iter().map(|e| e.name.as_str()), spec.multimodal)?;
    let adapters = read_adapter(adapter_dir, &cfg, &entries, &layout)?;
    let dtype = opts.dtype.unwrap_or_else(|| saved_dtype(&entries));
    let shards = plan_shards(&entries, dtype, opts.shard_size);

    let tmp = PathBuf::from(format!("{}.tmp", out.display()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = (|| -> Result<u64> {
        let total = write_shards(model_dir, &shards, &adapters, dtype, &tmp)?;
        write_config(model_dir, dtype, &tmp)?;
        for name in SIDE_FILES {
            let src = model_dir.join(name);
            if src.exists() {
                std::fs::copy(&src, tmp.join(name))
                    .with_context(|| format!("cannot copy {}", src.display()))?;
            }
        }
        model_card::write(&model_card::CardInput {
            out: &tmp,
            model_dir,
            model_arg,
            adapter_dir,
            adapter: &cfg,
            dtype,
            onto_dequantized: opts.onto_dequantized,
        })?;
        Ok(total)
    })();
    let total_bytes = match written {
        Ok(total) => total,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    fsutil::replace_dir(&tmp, out)?;
    Ok(MergeSummary {
        tensors: entries.len(),
        merged: adapters.len(),
        shards: shards.len(),
        total_bytes,
        dtype,
    })
}

/// The adapter in `adapter_dir`, checked against the base in `model_dir` as `merge` checks it:
/// its config, and each adapted linear (by base weight name) with its f32 A, B and scale.
pub(crate) fn read_checked_adapter(
    model_dir: &Path,
    adapter_dir: &Path,
) -> Result<(AdapterConfig, BTreeMap<String, Lora>)> {
    let cfg = adapter::read_config(adapter_dir)?;
    let spec = ModelSpec::from_model_dir(model_dir)?;
    let entries = list_tensors(model_dir)?;
    let layout = TensorLayout::detect(entries.iter().map(|e| e.name.as_str()), spec.multimodal)?;
    let adapters = read_adapter(adapter_dir, &cfg, &entries, &layout)?;
    Ok((cfg, adapters))
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

/// Every tensor of the checkpoint in file order (shards as the index lists them, tensors
/// by offset), read from the safetensors headers only.
fn list_tensors(dir: &Path) -> Result<Vec<Entry>> {
    // Opening through `Weights` gives its clear errors for a missing or corrupt checkpoint.
    let mut weights = Weights::open(dir)?;
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.exists() {
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index)?)?;
        let mut names: Vec<String> = json["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| dir.join(n)).collect()
    } else {
        vec![dir.join("model.safetensors")]
    };
    let mut entries = Vec::new();
    for path in files {
        let file = std::fs::File::open(&path)?;
        // SAFETY: read-only mapping of a checkpoint loam never writes to.
        let mmap = unsafe { memmap2::Mmap::map(&file) }?;
        let (_, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| {
            anyhow::anyhow!("{} is not a valid safetensors file: {e}", path.display())
        })?;
        let infos = meta.tensors();
        for name in meta.offset_keys() {
            let info = infos[&name];
            let kind = kind_of(info.dtype).with_context(|| {
                format!(
                    "tensor `{name}` in {} has unsupported dtype {:?}",
                    path.display(),
                    info.dtype
                )
            })?;
            let shape = info.shape.iter().map(|&d| d as i64).collect();
            let quantized = bnb::is_quantized(&weights, &name);
            entries.push(Entry {
                name,
                kind,
                shape,
                quantized,
            });
        }
    }
    // A 4-bit weight stands for the 16-bit weight it dequantizes to; the tensors beside it
    // are folded into it.
    let quantized: Vec<String> = entries
        .iter()
        .filter(|e| e.quantized)
        .map(|e| e.name.clone())
        .collect();
    entries.retain(|e| !quantized.iter().any(|w| bnb::is_quant_state_of(&e.name, w)));
    for e in entries.iter_mut().filter(|e| e.quantized) {
        (e.shape, e.kind) = bnb::original_shape_and_dtype(&mut weights, &e.name)?;
    }
    Ok(entries)
}

/// The dtype the base saved its floating tensors in (f32 if it has none).
fn saved_dtype(entries: &[Entry]) -> Kind {
    entries
        .iter()
        .map(|e| e.kind)
        .find(|&k| is_float(k))
        .unwrap_or(Kind::Float)
}

/// The dtype a tensor is written in: floating tensors are cast, others kept.
fn out_kind(entry: &Entry, dtype: Kind) -> Kind {
    if is_float(entry.kind) {
        dtype
    } else {
        entry.kind
    }
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
    )
}

/// Reads the adapter's tensors and pairs them with base weights, keyed by the weight's
/// name in the file (`model.layers.0.self_attn.q_proj.weight`). Every tensor must fit the base.
fn read_adapter(
    dir: &Path,
    cfg: &AdapterConfig,
    entries: &[Entry],
    layout: &TensorLayout,
) -> Result<BTreeMap<String, Lora>> {
    let path = dir.join("adapter_model.safetensors");
    let tensors = Tensor::read_safetensors(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
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
    let shapes: HashMap<&str, &[i64]> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.shape.as_slice()))
        .collect();
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
    if adapters.is_empty() {
        bail!("{} holds no LoRA tensors", path.display());
    }
    Ok(adapters)
}

/// Groups tensors (in order) into shards of at most `max_bytes` each.
fn plan_shards(entries: &[Entry], dtype: Kind, max_bytes: u64) -> Vec<Vec<&Entry>> {
    let mut shards: Vec<Vec<&Entry>> = Vec::new();
    let mut current = 0u64;
    for e in entries {
        let bytes = nbytes(e, dtype);
        match shards.last_mut() {
            Some(shard) if current + bytes <= max_bytes => shard.push(e),
            _ => {
                shards.push(vec![e]);
                current = 0;
            }
        }
        current += bytes;
    }
    shards
}

fn nbytes(e: &Entry, dtype: Kind) -> u64 {
    let numel: i64 = e.shape.iter().product();
    numel as u64 * out_kind(e, dtype).elt_size_in_bytes() as u64
}

/// Writes `model.safetensors`, or `model-0000i-of-0000N.safetensors` + the index; returns
/// the total tensor bytes.
fn write_shards(
    model_dir: &Path,
    shards: &[Vec<&Entry>],
    adapters: &BTreeMap<String, Lora>,
    dtype: Kind,
    out: &Path,
) -> Result<u64> {
    let mut weights = Weights::open(model_dir)?;
    let mut weight_map = BTreeMap::new();
    let mut total = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let file = if shards.len() == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len())
        };
        let mut tensors = Vec::with_capacity(shard.len());
        for e in shard {
            let base = if e.quantized {
                bnb::read(&mut weights, &e.name, &e.shape)?.dequantize(Kind::Float)
            } else {
                weights.load(&e.name)?
            };
            let tensor = match adapters.get(&e.name) {
                Some(lora) => lora.merged_weight(&base),
                None => base,
            };
            let tensor = tensor.to_kind(out_kind(e, dtype)).contiguous();
            total += nbytes(e, dtype);
            weight_map.insert(e.name.clone(), file.clone());
            tensors.push((e.name.clone(), tensor_bytes(&tensor)?));
        }
        write_safetensors(&tensors, &out.join(&file))?;
    }
    if shards.len() > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        std::fs::write(
            out.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&index)? + "\n",
        )?;
    }
    Ok(total)
}

/// A tensor's dtype, shape and raw bytes (little-endian, row-major).
type Bytes = (Dtype, Vec<usize>, Vec<u8>);

fn tensor_bytes(t: &Tensor) -> Result<Bytes> {
    let dtype = match t.kind() {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        k => bail!("cannot write a {k:?} tensor to safetensors"),
    };
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut data, numel);
    let shape = t.size().iter().map(|&d| d as usize).collect();
    Ok((dtype, shape, data))
}

fn write_safetensors(tensors: &[(String, Bytes)], path: &Path) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            Ok((
                name.as_str(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // transformers checks this metadata key before loading.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    // The safetensors crate creates the file owner-only; a published model is world-readable.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// `config.json` with its dtype key(s) set to the merged dtype: transformers 5 writes `dtype`,
/// older versions `torch_dtype`; whichever the base had is kept (both set alike).
fn write_config(model_dir: &Path, dtype: Kind, out: &Path) -> Result<()> {
    let path = model_dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let obj = config
        .as_object_mut()
        .with_context(|| format!("{} is not a JSON object", path.display()))?;
    let name = torch_dtype_name(dtype);
    let mut keys: Vec<&str> = ["dtype", "torch_dtype"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if keys.is_empty() {
        keys.push("dtype");
    }
    for key in keys {
        obj.insert(key.to_string(), name.into());
    }
    // Merged weights are 16-bit: a 4-bit base's quantization_config no longer applies.
    obj.remove("quantization_config");
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&config)? + "\n",
    )?;
    Ok(())
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

    #[test]
    fn shards_hold_at_most_the_limit_unless_one_tensor_is_larger() {
        let e = |name: &str, n: i64| Entry {
            name: name.into(),
            kind: Kind::Float,
            shape: vec![n],
            quantized: false,
        };
        let entries = [e("a", 10), e("b", 10), e("c", 100), e("d", 5)];
        let shards = plan_shards(&entries, Kind::Float, 80);
        let names: Vec<Vec<&str>> = shards
            .iter()
            .map(|s| s.iter().map(|e| e.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["a", "b"], vec!["c"], vec!["d"]]);
    }
}

//! `loam gguf import`: a GGUF of any architecture loam exports (llama, qwen2, qwen3, gemma,
//! gemma2, gemma3, phi3, smollm3) → a Hugging Face model directory in f32.
//!
//! Written as transformers' own GGUF loader would: tensors dequantized to f32 with HF names,
//! what export changed undone ([`super::arch`]: the llama Q/K row permutation, Gemma's
//! `+ 1` on norms and its folded query scale), `config.json` from the `<arch>.*` keys as
//! llama.cpp reads them (its defaults where a key is missing), and a `tokenizer.json` rebuilt
//! from `tokenizer.ggml.*`. Everything is checked before anything is written, the directory
//! is built under a temporary name and renamed at the end.

use super::arch::{TensorRules, Transform};
use super::names::{gguf_to_hf_in, unpermute_rows};
use super::rope_freqs;
use super::tokenizer::Vocab;
use crate::fsutil;
use crate::model::config::RopeScaling;
use anyhow::{bail, Context, Result};
use loam_data::tokenize::TemplateSource;
use loam_gguf::{GgmlType, GgufFile};
use serde_json::{json, Value as Json};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

mod family;

/// The GGUF architectures import understands, with the transformers class each becomes.
pub use super::arch::ARCHITECTURES;

/// Metadata key where `loam gguf export` keeps a Hugging Face `rope_scaling` that llama.cpp
/// only stores as the `rope_freqs.weight` tensor (Llama 3.1 scaling). Import restores the
/// exact parameters from it, and reconstructs equivalent ones from the tensor without it.
pub const ROPE_SCALING_KEY: &str = "loam.rope_scaling";

/// One tensor to write: GGUF name, HF name, PyTorch shape, what export did to its values.
struct Planned {
    gguf: String,
    hf: String,
    shape: Vec<usize>,
    transform: Transform,
}

/// The hyper-parameters of a GGUF decoder, read from `<arch>.*`.
struct HParams {
    arch: &'static str,
    class: &'static str,
    model_type: &'static str,
    layers: u64,
    hidden: u64,
    ffn: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    context: u64,
    rms_eps: f64,
    rope_theta: f64,
    rope_scaling: Option<Json>,
    /// The config keys of the family (windows, soft-caps, rotary bases, LongRoPE), as
    /// llama.cpp reads the file.
    family: serde_json::Map<String, Json>,
    /// `√(assumed / query_pre_attn_scalar)` folded into the file's query (Gemma 2/3).
    query_fold: f32,
}

/// Imports `gguf_path` into the directory `out`, with a README.md that keeps the file's
/// `general.*` keys and `hub_id` (the model's Hugging Face repo id, when given) for the cards
/// of what is trained from it. Refuses to replace `out` unless `force`.
///
/// `chat_template` (a built-in template, a file: see `ChatTemplate::from_setting`) replaces
/// the GGUF's own — or gives one to a base model that has none — and generation stops on its
/// end-of-turn token (`generation_config.json`).
pub fn import(
    gguf_path: &Path,
    out: &Path,
    hub_id: Option<&str>,
    chat_template: Option<&TemplateSource>,
    force: bool,
) -> Result<()> {
    if out.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it",
            out.display()
        );
    }
    let f = GgufFile::open(gguf_path)?;
    let hp = read_hparams(&f)?;
    let vocab = Vocab::from_gguf(&f)?;
    let plan = plan_tensors(&f, &hp)?;
    let vocab_size = f
        .tensor("token_embd.weight")
        .map(|t| t.shape()[0])
        .unwrap_or(vocab.tokens.len());
    let tokenizer_json = vocab.tokenizer_json()?;
    let tied = !plan.iter().any(|p| p.gguf == "output.weight");
    let has_bias = |module: &str| {
        plan.iter()
            .any(|p| p.gguf.ends_with(&format!("{module}.bias")))
    };
    let biases = Biases {
        attention: has_bias("attn_q") || has_bias("attn_output"),
        mlp: has_bias("ffn_gate"),
    };

    let tmp = temp_dir_for(out)?;
    let result = (|| -> Result<()> {
        write_safetensors(&f, &plan, &tmp.join("model.safetensors"))?;
        let config = config_json(&hp, &vocab, vocab_size, tied, biases);
        write_json(&tmp.join("config.json"), &config)?;
        write_json(
            &tmp.join("generation_config.json"),
            &generation_config(&vocab),
        )?;
        write_json(&tmp.join("tokenizer.json"), &tokenizer_json)?;
        write_json(
            &tmp.join("tokenizer_config.json"),
            &vocab.tokenizer_config(hp.context),
        )?;
        match chat_template {
            Some(source) => {
                loam_data::template::install::install(&tmp, source)?;
            }
            None if vocab.chat_template.is_none() => tracing::warn!(
                "{} has no chat template (tokenizer.chat_template): chat data and `loam \
                 generate` need one; pass --chat-template NAME (built-in: {}) to import it \
                 with one, or set data.chat_template when training",
                gguf_path.display(),
                loam_data::template::builtin::names()
            ),
            None => {}
        }
        let file_name = gguf_path.file_name().unwrap_or_default().to_string_lossy();
        let readme = super::general::imported_readme(&f, &file_name, hub_id);
        std::fs::write(tmp.join("README.md"), readme)
            .with_context(|| format!("cannot write {}", tmp.join("README.md").display()))?;
        fsutil::replace_dir(&tmp, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn read_hparams(f: &GgufFile) -> Result<HParams> {
    let arch_name = f.architecture()?;
    let Some(&(arch, class, model_type)) = ARCHITECTURES.iter().find(|a| a.0 == arch_name) else {
        bail!(
            "{}: general.architecture is `{arch_name}`; loam imports: {}",
            f.path().display(),
            ARCHITECTURES
                .iter()
                .map(|a| a.0)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let uint = |key: &str| -> Result<u64> { Ok(f.get_uint_lossless(&format!("{arch}.{key}"))?) };
    let float = |key: &str| -> Result<Option<f64>> {
        let key = format!("{arch}.{key}");
        Ok(match f.metadata(&key) {
            None => None,
            Some(loam_gguf::Value::F32(x)) => Some(shortest_f64(*x)),
            Some(loam_gguf::Value::F64(x)) => Some(*x),
            Some(v) => bail!("{key} is a {}, expected a float", v.type_name()),
        })
    };
    let hidden = uint("embedding_length")?;
    let heads = uint("attention.head_count")?;
    let kv_heads = f
        .get_opt::<u32>(&format!("{arch}.attention.head_count_kv"))?
        .map_or(heads, u64::from);
    let head_dim = f
        .get_opt::<u32>(&format!("{arch}.attention.key_length"))?
        .map_or(hidden / heads, u64::from);
    let rotary_dim = f
        .get_opt::<u32>(&format!("{arch}.rope.dimension_count"))?
        .map_or(head_dim, u64::from);
    // (phi3's partial rotary becomes `partial_rotary_factor` in the family's keys)
    if rotary_dim != head_dim && arch != "phi3" {
        bail!(
            "{}: {arch}.rope.dimension_count is {rotary_dim} but heads have {head_dim} \
             dimensions; partial rotary embeddings are supported for phi3 only",
            f.path().display()
        );
    }
    let rope_theta = float("rope.freq_base")?.unwrap_or(10_000.0);
    let mut rope_scaling = None;
    if let Some(kind) = f.get_opt::<&str>(&format!("{arch}.rope.scaling.type"))? {
        match kind {
            "none" => {}
            "linear" => {
                let factor = float("rope.scaling.factor")?.unwrap_or(1.0);
                rope_scaling = Some(json!({"rope_type": "linear", "factor": factor}));
            }
            other => bail!(
                "{}: {arch}.rope.scaling.type `{other}` is not supported (only linear)",
                f.path().display()
            ),
        }
    }
    let context = uint("context_length")?;
    if let Some(text) = f.get_opt::<&str>(ROPE_SCALING_KEY)? {
        rope_scaling =
            Some(serde_json::from_str(text).with_context(|| {
                format!("{}: {ROPE_SCALING_KEY} is not JSON", f.path().display())
            })?);
    } else if f.tensor("rope_freqs.weight").is_some() {
        let original = f
            .get_opt::<u32>(&format!("{arch}.rope.scaling.original_context_length"))?
            .map(f64::from);
        rope_scaling = llama3_from_rope_freqs(f, rope_theta, head_dim, context, original)?;
    }
    let layers = uint("block_count")?;
    let (family, query_fold) = family::read(f, arch, layers, hidden, heads, head_dim, context)?;
    Ok(HParams {
        arch,
        class,
        model_type,
        layers,
        hidden,
        ffn: uint("feed_forward_length")?,
        heads,
        kv_heads,
        head_dim,
        context,
        rms_eps: float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        rope_theta,
        rope_scaling,
        family,
        query_fold,
    })
}

/// The Hugging Face `rope_scaling` (llama3) equivalent to llama.cpp's `rope_freqs.weight`,
/// as llama.cpp's converter writes it for Llama 3.1 models. Its parameters are identifiable
/// only up to a common scale, fixed by `original_max_position_embeddings`: the file's
/// `rope.scaling.original_context_length` if it has one, else Llama 3.1's 8192, or
/// `context / factor` for models whose context is not longer than that.
fn llama3_from_rope_freqs(
    f: &GgufFile,
    rope_theta: f64,
    head_dim: u64,
    context: u64,
    original: Option<f64>,
) -> Result<Option<Json>> {
    let divisors = f.dequantize("rope_freqs.weight")?;
    let top = divisors.iter().copied().fold(1f32, f32::max) as f64;
    let old = original.unwrap_or(if context > 8192 {
        8192.0
    } else {
        (context as f64 / top).round().max(1.0)
    });
    let scaling =
        rope_freqs::solve(&divisors, rope_theta, head_dim as usize, old).with_context(|| {
            format!(
                "{}: tensor rope_freqs.weight does not hold Llama 3.1 rope scaling, the only \
                 kind loam imports",
                f.path().display()
            )
        })?;
    Ok(match scaling {
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => Some(json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings as u64,
        })),
        _ => None,
    })
}

/// The f64 that prints like `x` (GGUF stores 1e-5 as the f32 9.99999974e-6; config.json
/// should say 1e-05, as transformers writes it).
fn shortest_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn plan_tensors(f: &GgufFile, hp: &HParams) -> Result<Vec<Planned>> {
    let rules = TensorRules {
        arch: hp.arch,
        heads: hp.heads as usize,
        kv_heads: hp.kv_heads as usize,
        query_fold: hp.query_fold,
    };
    let mut plan = Vec::new();
    for t in f.tensors() {
        let name = t.name();
        if family::ROPE_TENSORS.contains(&name) {
            continue; // recomputed from rope_scaling / rope_parameters in config.json
        }
        let hf = gguf_to_hf_in(hp.arch, name).with_context(|| {
            format!(
                "{}: tensor `{name}` has no Hugging Face counterpart in a {} model",
                f.path().display(),
                hp.arch
            )
        })?;
        let ty = t.ggml_type();
        if !ty.can_dequantize() {
            bail!(
                "{}: tensor `{name}` has type {ty}, which loam cannot dequantize (supported: {})",
                f.path().display(),
                GgmlType::list(GgmlType::DEQUANTIZABLE)
            );
        }
        let transform = rules.transform(&hf);
        plan.push(Planned {
            gguf: name.to_string(),
            hf,
            shape: t.shape(),
            transform,
        });
    }
    for required in ["token_embd.weight", "output_norm.weight"] {
        if f.tensor(required).is_none() {
            bail!("{}: tensor `{required}` is missing", f.path().display());
        }
    }
    Ok(plan)
}

/// Writes one f32 safetensors file, tensor by tensor (the header's offsets are known from the
/// shapes, so nothing is held in memory beyond the tensor being converted).
fn write_safetensors(f: &GgufFile, plan: &[Planned], path: &Path) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0usize;
    for p in plan {
        let bytes = p.shape.iter().product::<usize>() * 4;
        header.insert(
            p.hf.clone(),
            json!({"dtype": "F32", "shape": p.shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&header)?;
    header.resize(header.len().div_ceil(8) * 8, b' ');

    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    let mut bytes = Vec::new();
    for p in plan {
        let mut values = f.dequantize(&p.gguf)?;
        if let Some(heads) = p.transform.permute_heads {
            let row_len = if p.shape.len() > 1 { p.shape[1] } else { 1 };
            values = unpermute_rows(&values, row_len, heads);
        }
        p.transform.invert(&mut values);
        bytes.clear();
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        out.write_all(&bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    out.flush()?;
    Ok(())
}

/// Which optional biases the file has (Llama's `attention_bias` / `mlp_bias`).
struct Biases {
    attention: bool,
    mlp: bool,
}

fn config_json(hp: &HParams, vocab: &Vocab, vocab_size: usize, tied: bool, biases: Biases) -> Json {
    let mut rope = hp
        .rope_scaling
        .clone()
        .unwrap_or(json!({"rope_type": "default"}));
    rope["rope_theta"] = json!(hp.rope_theta);
    let mut c = json!({
        "architectures": [hp.class],
        "model_type": hp.model_type,
        "hidden_act": if hp.arch.starts_with("gemma") { "gelu_pytorch_tanh" } else { "silu" },
        "hidden_size": hp.hidden,
        "intermediate_size": hp.ffn,
        "num_hidden_layers": hp.layers,
        "num_attention_heads": hp.heads,
        "num_key_value_heads": hp.kv_heads,
        "head_dim": hp.head_dim,
        "max_position_embeddings": hp.context,
        "rms_norm_eps": hp.rms_eps,
        "rope_theta": hp.rope_theta,
        "rope_parameters": rope,
        "tie_word_embeddings": tied,
        "vocab_size": vocab_size,
        "bos_token_id": vocab.bos,
        "eos_token_id": vocab.eos,
        "pad_token_id": vocab.pad,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": true,
        "dtype": "float32",
        "torch_dtype": "float32",
    });
    match hp.arch {
        "llama" | "smollm3" => {
            c["attention_bias"] = json!(biases.attention);
            c["mlp_bias"] = json!(biases.mlp);
        }
        "qwen2" | "qwen3" => {
            c["use_sliding_window"] = json!(false);
            c["sliding_window"] = Json::Null;
            c["max_window_layers"] = json!(hp.layers);
        }
        _ => {}
    }
    if let Some(obj) = c.as_object_mut() {
        for (k, v) in &hp.family {
            obj.insert(k.clone(), v.clone());
        }
    }
    c
}

fn generation_config(vocab: &Vocab) -> Json {
    json!({"bos_token_id": vocab.bos, "eos_token_id": vocab.eos, "pad_token_id": vocab.pad})
}

fn write_json(path: &Path, value: &Json) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// An empty sibling directory of `out` to build in (same filesystem, so rename works).
fn temp_dir_for(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{} is not a directory name", out.display()))?
        .to_string_lossy();
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.loam-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    Ok(tmp)
}

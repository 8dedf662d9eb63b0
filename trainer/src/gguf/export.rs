//! `loam gguf export`: a Hugging Face model directory → a GGUF v3 file for llama.cpp, plus an
//! Ollama `Modelfile` beside it.
//!
//! Metadata and layout follow llama.cpp's `convert_hf_to_gguf.py`: `<arch>.*`
//! hyper-parameters, `tokenizer.ggml.*`, llama.cpp tensor names, the Q/K row permutation for
//! the `llama` architecture, norms, biases and other 1-D tensors kept in F32. Tensors are read
//! from the memory-mapped checkpoint and written one at a time.

use super::import::ROPE_SCALING_KEY;
use super::names::{hf_to_gguf, permute_rows, rotary_of, Rotary};
use super::rope_freqs;
use super::tokenizer::Vocab;
use crate::model::config::{Family, ModelSpec, RopeScaling};
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use loam_gguf::{shape_to_ne, GgmlType, GgufWriter};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// What was written.
pub struct Exported {
    pub gguf: PathBuf,
    pub modelfile: PathBuf,
    pub tensors: usize,
}

/// llama.cpp's `general.file_type` (`llama_ftype`) for the types export writes.
fn file_type(ty: GgmlType) -> Option<u32> {
    Some(match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::BF16 => 32,
        _ => return None,
    })
}

/// One tensor: HF name, PyTorch shape, GGUF name and type, rows to permute by `n_heads`.
struct Planned {
    hf: String,
    shape: Vec<i64>,
    gguf: String,
    ty: GgmlType,
    permute_heads: Option<usize>,
}

pub fn export(model_dir: &Path, out: &Path, ty: GgmlType, force: bool) -> Result<Exported> {
    let Some(ftype) = file_type(ty) else {
        bail!("--type {ty} is not supported; use one of f32, f16, bf16, q8_0, q4_0, q4_1");
    };
    let spec = ModelSpec::from_model_dir(model_dir)?;
    let arch = architecture(&spec, model_dir)?;
    if spec.quantization.as_ref().is_some_and(|q| q.pre_quantized) {
        bail!(
            "{} is a bitsandbytes 4-bit model; GGUF export reads 16-bit weights. Export the \
             16-bit model it came from, or first `loam merge --onto-dequantized` (with an adapter)",
            model_dir.display()
        );
    }
    let modelfile = out.with_file_name("Modelfile");
    for path in [out, modelfile.as_path()] {
        if path.exists() && !force {
            bail!(
                "{} already exists; pass --force to replace it",
                path.display()
            );
        }
    }
    let vocab = Vocab::from_hf_dir(model_dir, spec.vocab_size as usize)?;
    crate::fsutil::create_parent_dir(out)?;
    let mut weights = Weights::open(model_dir)?;
    let plan = plan_tensors(&spec, arch, ty);

    let mut w = GgufWriter::new(out);
    w.add_metadata("general.architecture", arch)?;
    w.add_metadata("general.type", "model")?;
    w.add_metadata("general.name", model_name(model_dir).as_str())?;
    w.add_metadata("general.file_type", ftype)?;
    w.add_metadata("general.quantization_version", 2u32)?;
    add_hparams(&mut w, &spec, arch)?;
    vocab.write_metadata(&mut w)?;
    let rope_freqs = llama3_rope_factors(&spec);
    if rope_freqs.is_some() {
        w.add_tensor(
            "rope_freqs.weight",
            &[spec.head_dim as u64 / 2],
            GgmlType::F32,
        )?;
    }
    for p in &plan {
        let shape: Vec<usize> = p.shape.iter().map(|&d| d as usize).collect();
        w.add_tensor(&p.gguf, &shape_to_ne(&shape), p.ty)?;
    }

    let mut data = w.start_data()?;
    if let Some(factors) = &rope_freqs {
        data.write_tensor_f32("rope_freqs.weight", factors)?;
    }
    for p in &plan {
        let t = weights.get(&p.hf, &p.shape, Kind::Float, Device::Cpu)?;
        let mut values = Vec::<f32>::try_from(t.flatten(0, -1))
            .with_context(|| format!("cannot read tensor `{}`", p.hf))?;
        if let Some(heads) = p.permute_heads {
            let row_len = if p.shape.len() > 1 {
                p.shape[1] as usize
            } else {
                1
            };
            values = permute_rows(&values, row_len, heads);
        }
        data.write_tensor_f32(&p.gguf, &values)?;
    }
    if spec.tie_word_embeddings && weights.contains("lm_head.weight") {
        weights.skip("lm_head.weight");
    }
    weights.ensure_all_used()?;
    let gguf = data.finish()?;
    let from = format!(
        "./{}",
        out.file_name().unwrap_or_default().to_string_lossy()
    );
    write_modelfile(&modelfile, &from, None, &vocab)?;
    Ok(Exported {
        gguf,
        modelfile,
        tensors: plan.len() + rope_freqs.is_some() as usize,
    })
}

/// llama.cpp's `general.architecture` for a model (also the base of a LoRA adapter).
pub(super) fn architecture(spec: &ModelSpec, model_dir: &Path) -> Result<&'static str> {
    Ok(match spec.family {
        Family::Llama | Family::Mistral => "llama",
        Family::Qwen2 => "qwen2",
        Family::Qwen3 => bail!(
            "{}: {} cannot be exported to GGUF yet; loam exports Llama, Mistral and Qwen2 models",
            model_dir.display(),
            spec.architecture
        ),
    })
}

/// Every checkpoint tensor the decoder uses, in llama.cpp's order.
fn plan_tensors(spec: &ModelSpec, arch: &str, ty: GgmlType) -> Vec<Planned> {
    let (h, q, kv, ffn) = (
        spec.hidden_size,
        spec.num_heads * spec.head_dim,
        spec.num_kv_heads * spec.head_dim,
        spec.intermediate_size,
    );
    let mut list: Vec<(String, Vec<i64>)> =
        vec![("model.embed_tokens.weight".into(), vec![spec.vocab_size, h])];
    for l in 0..spec.num_layers {
        let p = |m: &str| format!("model.layers.{l}.{m}");
        list.push((p("input_layernorm.weight"), vec![h]));
        for (m, rows, cols) in [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h)] {
            list.push((p(&format!("self_attn.{m}.weight")), vec![rows, cols]));
            if spec.qkv_bias {
                list.push((p(&format!("self_attn.{m}.bias")), vec![rows]));
            }
        }
        list.push((p("self_attn.o_proj.weight"), vec![h, q]));
        if spec.o_bias {
            list.push((p("self_attn.o_proj.bias"), vec![h]));
        }
        list.push((p("post_attention_layernorm.weight"), vec![h]));
        for (m, rows, cols) in [
            ("gate_proj", ffn, h),
            ("up_proj", ffn, h),
            ("down_proj", h, ffn),
        ] {
            list.push((p(&format!("mlp.{m}.weight")), vec![rows, cols]));
            if spec.mlp_bias {
                list.push((p(&format!("mlp.{m}.bias")), vec![rows]));
            }
        }
    }
    list.push(("model.norm.weight".into(), vec![h]));
    if !spec.tie_word_embeddings {
        list.push(("lm_head.weight".into(), vec![spec.vocab_size, h]));
    }
    list.into_iter()
        .map(|(hf, shape)| {
            let gguf = hf_to_gguf(&hf).expect("every planned tensor has a GGUF name");
            let permute_heads = match (arch, rotary_of(&hf)) {
                ("llama", Some(Rotary::Query)) => Some(spec.num_heads as usize),
                ("llama", Some(Rotary::Key)) => Some(spec.num_kv_heads as usize),
                _ => None,
            };
            let ty = tensor_type(&shape, ty);
            Planned {
                hf,
                shape,
                gguf,
                ty,
                permute_heads,
            }
        })
        .collect()
}

/// 1-D tensors (norms, biases) stay F32; rows that do not fill whole quantization blocks
/// fall back to F16, as llama.cpp's converter does.
fn tensor_type(shape: &[i64], ty: GgmlType) -> GgmlType {
    if shape.len() < 2 {
        GgmlType::F32
    } else if !(shape[shape.len() - 1] as usize).is_multiple_of(ty.block_size()) {
        GgmlType::F16
    } else {
        ty
    }
}

fn add_hparams(w: &mut GgufWriter, spec: &ModelSpec, arch: &str) -> Result<()> {
    let key = |k: &str| format!("{arch}.{k}");
    let u = |x: i64| x as u32;
    w.add_metadata(&key("context_length"), u(spec.max_position_embeddings))?;
    w.add_metadata(&key("embedding_length"), u(spec.hidden_size))?;
    w.add_metadata(&key("block_count"), spec.num_layers as u32)?;
    w.add_metadata(&key("feed_forward_length"), u(spec.intermediate_size))?;
    w.add_metadata(&key("attention.head_count"), u(spec.num_heads))?;
    w.add_metadata(&key("attention.head_count_kv"), u(spec.num_kv_heads))?;
    w.add_metadata(
        &key("attention.layer_norm_rms_epsilon"),
        spec.rms_norm_eps as f32,
    )?;
    w.add_metadata(&key("rope.freq_base"), spec.rope_theta as f32)?;
    w.add_metadata(&key("rope.dimension_count"), u(spec.head_dim))?;
    w.add_metadata(&key("vocab_size"), u(spec.vocab_size))?;
    if spec.head_dim * spec.num_heads != spec.hidden_size {
        w.add_metadata(&key("attention.key_length"), u(spec.head_dim))?;
        w.add_metadata(&key("attention.value_length"), u(spec.head_dim))?;
    }
    match &spec.rope_scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            w.add_metadata(&key("rope.scaling.type"), "linear")?;
            w.add_metadata(&key("rope.scaling.factor"), *factor as f32)?;
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            // llama.cpp only needs the rope_freqs tensor; the parameters let import restore
            // config.json exactly.
            let params = serde_json::json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            });
            w.add_metadata(ROPE_SCALING_KEY, params.to_string())?;
        }
    }
    Ok(())
}

/// Llama 3.1's per-frequency divisors, which llama.cpp reads from `rope_freqs.weight`.
fn llama3_rope_factors(spec: &ModelSpec) -> Option<Vec<f32>> {
    let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    } = spec.rope_scaling
    else {
        return None;
    };
    Some(rope_freqs::factors(
        spec.rope_theta,
        spec.head_dim as usize,
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    ))
}

/// `general.name`: the directory's name (`_name_or_path` is often a training path).
fn model_name(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// An Ollama Modelfile: `ollama create NAME -f Modelfile` next to the GGUF. `from` is the
/// model GGUF; `adapter`, a LoRA GGUF applied on top of it (Ollama's `ADAPTER` line).
pub(super) fn write_modelfile(
    path: &Path,
    from: &str,
    adapter: Option<&str>,
    vocab: &Vocab,
) -> Result<()> {
    let mut text = format!(
        "# Ollama Modelfile written by loam. Use: ollama create NAME -f {}\nFROM {from}\n",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    if let Some(adapter) = adapter {
        text += &format!("ADAPTER {adapter}\n");
    }
    let jinja = vocab.chat_template.as_deref().unwrap_or("");
    let mut stops: Vec<String> = Vec::new();
    if jinja.contains("<|im_start|>") {
        text += "TEMPLATE \"\"\"{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n\"\"\"\n";
        stops.push("<|im_end|>".into());
    } else if jinja.contains("<|start_header_id|>") {
        text += "TEMPLATE \"\"\"{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n\"\"\"\n";
        stops.push("<|eot_id|>".into());
    } else if !jinja.is_empty() {
        text +=
            "# The model's Jinja chat template is stored in the GGUF (tokenizer.chat_template);\n\
                 # add a TEMPLATE here if your Ollama version does not pick it up.\n";
    }
    if let Some(eos) = vocab.eos.and_then(|i| vocab.tokens.get(i as usize)) {
        if !stops.contains(eos) {
            stops.push(eos.clone());
        }
    }
    for stop in stops {
        text += &format!("PARAMETER stop \"{stop}\"\n");
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

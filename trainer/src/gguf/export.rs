//! `loam gguf export`: a Hugging Face model directory → a GGUF v3 file for llama.cpp, plus an
//! Ollama `Modelfile` beside it.
//!
//! Metadata and layout follow llama.cpp's `convert_hf_to_gguf.py`: `<arch>.*`
//! hyper-parameters, `tokenizer.ggml.*`, llama.cpp tensor names, the Q/K row permutation for
//! the `llama` architecture, norms, biases and other 1-D tensors kept in F32. Where loam's
//! file differs from the converter's, it is so that llama.cpp computes what transformers
//! does ([`super::arch`]). Tensors are read from the memory-mapped checkpoint and written
//! one at a time; a multimodal checkpoint's language model is exported, its vision tower
//! left out (llama.cpp takes it as a separate `mmproj` file).

use super::arch::{self, TensorRules, Transform};
use super::general;
use super::import::ROPE_SCALING_KEY;
use super::names::{hf_to_gguf_in, permute_rows};
use super::rope_freqs;
use super::tokenizer::Vocab;
use crate::export::card::identity::Identity;
use crate::model::config::{ModelSpec, RopeScaling};
use crate::weights::{TensorLayout, Weights};
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

/// One tensor: HF (canonical) name, PyTorch shape, GGUF name and type, how its values change.
struct Planned {
    hf: String,
    shape: Vec<i64>,
    gguf: String,
    ty: GgmlType,
    transform: Transform,
}

/// Exports `model_dir` to `out`. `model` is what the directory is ([`Identity::of`]: the
/// `general.*` keys), `base_model_id` the model it was trained from, over what its README says.
pub fn export(
    model_dir: &Path,
    model: &Identity,
    base_model_id: Option<&str>,
    out: &Path,
    ty: GgmlType,
    force: bool,
) -> Result<Exported> {
    let Some(ftype) = file_type(ty) else {
        bail!("--type {ty} is not supported; use one of f32, f16, bf16, q8_0, q4_0, q4_1");
    };
    let spec = ModelSpec::from_model_dir(model_dir)?;
    if spec.quantization.as_ref().is_some_and(|q| q.pre_quantized) {
        bail!(
            "{} is a bitsandbytes 4-bit model; GGUF export reads 16-bit weights. Export the \
             16-bit model it came from, or first `loam merge --onto-dequantized` (with an adapter)",
            model_dir.display()
        );
    }
    let rules =
        arch::rules_for(&spec).with_context(|| format!("exporting {}", model_dir.display()))?;
    let arch = rules.arch;
    if let Some(window) = spec.uniform_window().filter(|_| arch == "phi3") {
        tracing::warn!(
            "llama.cpp runs Phi-3 without its sliding window ({window} tokens): its outputs \
             differ from transformers' once a context exceeds {window} tokens"
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
    let layout = TensorLayout::detect(weights.names(), spec.multimodal)?;
    let plan = plan_tensors(&spec, &rules, ty);

    let mut w = GgufWriter::new(out);
    w.add_metadata("general.architecture", arch)?;
    w.add_metadata("general.type", "model")?;
    let params: i64 = plan.iter().map(|p| p.shape.iter().product::<i64>()).sum();
    let named = Identity {
        name: defuse_name_triggers(&model.name),
        ..model.clone()
    };
    general::write(&mut w, &named, base_model_id, params as u64)?;
    w.add_metadata("general.file_type", ftype)?;
    w.add_metadata("general.quantization_version", 2u32)?;
    add_hparams(&mut w, &spec, arch)?;
    arch::write_family_metadata(&mut w, &spec, arch)?;
    vocab.write_metadata(&mut w)?;
    // Rotary factors llama.cpp reads as tensors: Llama 3.1's divisors, Phi-3's LongRoPE.
    let mut extra: Vec<(&str, Vec<f32>)> = Vec::new();
    if let Some(factors) = llama3_rope_factors(&spec) {
        extra.push(("rope_freqs.weight", factors));
    }
    extra.extend(arch::longrope_factors(&spec).into_iter().flatten());
    for (name, values) in &extra {
        w.add_tensor(name, &[values.len() as u64], GgmlType::F32)?;
    }
    for p in &plan {
        let shape: Vec<usize> = p.shape.iter().map(|&d| d as usize).collect();
        w.add_tensor(&p.gguf, &shape_to_ne(&shape), p.ty)?;
    }

    let mut data = w.start_data()?;
    for (name, values) in &extra {
        data.write_tensor_f32(name, values)?;
    }
    for p in &plan {
        let t = weights.get(&layout.tensor(&p.hf), &p.shape, Kind::Float, Device::Cpu)?;
        let mut values = Vec::<f32>::try_from(t.flatten(0, -1))
            .with_context(|| format!("cannot read tensor `{}`", p.hf))?;
        p.transform.apply(&mut values);
        if let Some(heads) = p.transform.permute_heads {
            let row_len = if p.shape.len() > 1 {
                p.shape[1] as usize
            } else {
                1
            };
            values = permute_rows(&values, row_len, heads);
        }
        data.write_tensor_f32(&p.gguf, &values)?;
    }
    let lm_head = layout.tensor("lm_head.weight");
    if spec.tie_word_embeddings && weights.contains(&lm_head) {
        weights.skip(&lm_head);
    }
    if spec.multimodal {
        weights.skip_outside(&layout);
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
        tensors: plan.len() + extra.len(),
    })
}

/// Every checkpoint tensor the decoder uses, in llama.cpp's order.
fn plan_tensors(spec: &ModelSpec, rules: &TensorRules, ty: GgmlType) -> Vec<Planned> {
    let (h, q, kv, ffn, d) = (
        spec.hidden_size,
        spec.num_heads * spec.head_dim,
        spec.num_kv_heads * spec.head_dim,
        spec.intermediate_size,
        spec.head_dim,
    );
    let mut list: Vec<(String, Vec<i64>)> =
        vec![("model.embed_tokens.weight".into(), vec![spec.vocab_size, h])];
    for l in 0..spec.num_layers {
        let p = |m: &str| format!("model.layers.{l}.{m}");
        list.push((p("input_layernorm.weight"), vec![h]));
        let projections: &[(&str, i64)] = if spec.fused_projections {
            &[("qkv_proj", q + 2 * kv)]
        } else {
            &[("q_proj", q), ("k_proj", kv), ("v_proj", kv)]
        };
        for &(m, rows) in projections {
            list.push((p(&format!("self_attn.{m}.weight")), vec![rows, h]));
            if spec.qkv_bias {
                list.push((p(&format!("self_attn.{m}.bias")), vec![rows]));
            }
        }
        if spec.qk_norm {
            list.push((p("self_attn.q_norm.weight"), vec![d]));
            list.push((p("self_attn.k_norm.weight"), vec![d]));
        }
        list.push((p("self_attn.o_proj.weight"), vec![h, q]));
        if spec.o_bias {
            list.push((p("self_attn.o_proj.bias"), vec![h]));
        }
        list.push((p("post_attention_layernorm.weight"), vec![h]));
        if spec.sandwich_norms {
            list.push((p("pre_feedforward_layernorm.weight"), vec![h]));
            list.push((p("post_feedforward_layernorm.weight"), vec![h]));
        }
        let mlp: &[(&str, i64, i64)] = if spec.fused_projections {
            &[("gate_up_proj", 2 * ffn, h), ("down_proj", h, ffn)]
        } else {
            &[
                ("gate_proj", ffn, h),
                ("up_proj", ffn, h),
                ("down_proj", h, ffn),
            ]
        };
        for &(m, rows, cols) in mlp {
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
            let gguf =
                hf_to_gguf_in(rules.arch, &hf).expect("every planned tensor has a GGUF name");
            let transform = rules.transform(&hf);
            let ty = tensor_type(&shape, ty);
            Planned {
                hf,
                shape,
                gguf,
                ty,
                transform,
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
    w.add_metadata(&key("rope.dimension_count"), u(spec.rotary_dim))?;
    w.add_metadata(&key("vocab_size"), u(spec.vocab_size))?;
    if spec.head_dim * spec.num_heads != spec.hidden_size {
        w.add_metadata(&key("attention.key_length"), u(spec.head_dim))?;
        w.add_metadata(&key("attention.value_length"), u(spec.head_dim))?;
    }
    match &spec.rope_scaling {
        // LongRoPE is written by the family (factor tensors, attention factor).
        RopeScaling::None | RopeScaling::LongRope { .. } => {}
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

/// llama.cpp's vocabulary loader changes how special tokens tokenize when `general.name`
/// contains `phi3` or `phi-3` (and fails on a vocabulary without `</s>`): the name is
/// written with those spelled `Phi 3`, so a model's name never changes what llama.cpp
/// computes.
/// `name` with every (case-insensitive) `phi3` / `phi-3` written `Phi 3`.
fn defuse_name_triggers(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        let lower = rest.to_ascii_lowercase();
        let hit = ["phi-3", "phi3"].iter().find(|t| lower.starts_with(**t));
        match hit {
            Some(t) => {
                out.push_str("Phi 3");
                rest = &rest[t.len()..];
            }
            None => {
                let c = rest.chars().next().expect("non-empty");
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_switch_llama_cpp_s_phi3_tokenizer_hack_are_defused() {
        assert_eq!(
            defuse_name_triggers("my-PHI3-finetune"),
            "my-Phi 3-finetune"
        );
        assert_eq!(defuse_name_triggers("Phi-3.5-mini"), "Phi 3.5-mini");
        assert_eq!(defuse_name_triggers("gemma-3-ŵyr"), "gemma-3-ŵyr");
        for name in ["phi3", "x-phi-3-y", "pHi3phi-3"] {
            let lower = defuse_name_triggers(name).to_lowercase();
            assert!(
                !lower.contains("phi3") && !lower.contains("phi-3"),
                "{lower}"
            );
        }
    }
}

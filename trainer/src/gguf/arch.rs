//! The llama.cpp architecture of each family: its name, what its loader reads (and what it
//! assumes when a key is missing), and how a Hugging Face tensor changes on its way into
//! the GGUF. Export and import both go through here, so they invert each other.
//!
//! The measure is llama.cpp computing what transformers computes, not the bytes of
//! llama.cpp's converter. Where the loader assumes a value the model does not have, export
//! writes the key that overrides it, or expresses the model in what llama.cpp does compute:
//! - Gemma 2/3: llama.cpp scales q by `1/√head_dim` (by `1/√(hidden/heads)` for 46 or 62
//!   layers, the 27B models), transformers by `query_pre_attn_scalar^-½`. The ratio
//!   `√(assumed / query_pre_attn_scalar)` is folded into Gemma 3's q-norm weight or Gemma 2's
//!   q projection; `loam.query_pre_attn_scalar` records the true value for import.
//! - Gemma 2/3: the per-layer `attention.sliding_window_pattern` (llama.cpp otherwise
//!   assumes every 2nd / 6th layer is full) and Gemma 3's `rope.freq_base_swa`.
//! - Gemma: norm weights `+ 1` (llama.cpp multiplies by the stored weight), kept in F32.
//! - Llama, Mistral, SmolLM3 (llama.cpp's NORM rope): the Q/K row permutation.

use crate::model::config::{Family, LayerRotary, ModelSpec, RopeScaling};
use anyhow::{bail, Result};
use loam_gguf::GgufWriter;

/// A soft-cap too large to bite: llama.cpp's gemma2 always caps, a model without a cap is
/// written with this one (`tanh(s / 1e30) · 1e30 = s` in f32).
pub const NO_SOFTCAP: f32 = 1e30;

/// The llama.cpp architecture (`general.architecture`) a family is written as.
pub fn arch_name(family: Family) -> &'static str {
    match family {
        Family::Llama | Family::Mistral => "llama",
        Family::Qwen2 => "qwen2",
        Family::Qwen3 => "qwen3",
        Family::Gemma => "gemma",
        Family::Gemma2 => "gemma2",
        Family::Gemma3 => "gemma3",
        Family::Phi3 => "phi3",
        Family::SmolLM3 => "smollm3",
    }
}

/// Every architecture import reads: (GGUF name, transformers class, model_type).
pub const ARCHITECTURES: &[(&str, &str, &str)] = &[
    ("llama", "LlamaForCausalLM", "llama"),
    ("qwen2", "Qwen2ForCausalLM", "qwen2"),
    ("qwen3", "Qwen3ForCausalLM", "qwen3"),
    ("gemma", "GemmaForCausalLM", "gemma"),
    ("gemma2", "Gemma2ForCausalLM", "gemma2"),
    ("gemma3", "Gemma3ForCausalLM", "gemma3_text"),
    ("phi3", "Phi3ForCausalLM", "phi3"),
    ("smollm3", "SmolLM3ForCausalLM", "smollm3"),
];

/// Metadata key keeping Gemma 2/3's `query_pre_attn_scalar` (llama.cpp has none).
pub const QUERY_PRE_ATTN_SCALAR_KEY: &str = "loam.query_pre_attn_scalar";

/// llama.cpp's smollm3 makes every 4th layer NoPE, whatever the file says.
pub const SMOLLM3_NOPE_INTERVAL: usize = 4;

/// The q-scale denominator llama.cpp assumes for Gemma 2/3: `head_dim`, or `hidden / heads`
/// for its 27B models (recognised by their layer counts, 46 and 62).
pub fn assumed_query_scalar(
    arch: &str,
    layers: u64,
    hidden: u64,
    heads: u64,
    head_dim: u64,
) -> f64 {
    let big = matches!((arch, layers), ("gemma2", 46) | ("gemma3", 62));
    if big {
        (hidden / heads) as f64
    } else {
        head_dim as f64
    }
}

/// How one tensor is stored: `gguf = (hf + shift) · scale`, rows permuted by `permute_heads`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub permute_heads: Option<usize>,
    pub shift: f32,
    pub scale: f32,
}

impl Transform {
    pub const IDENTITY: Transform = Transform {
        permute_heads: None,
        shift: 0.0,
        scale: 1.0,
    };

    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }

    /// HF → GGUF values (the permutation is applied by the caller, which knows the shape).
    pub fn apply(&self, values: &mut [f32]) {
        if self.shift != 0.0 || self.scale != 1.0 {
            values
                .iter_mut()
                .for_each(|v| *v = (*v + self.shift) * self.scale);
        }
    }

    /// GGUF → HF values.
    pub fn invert(&self, values: &mut [f32]) {
        if self.shift != 0.0 || self.scale != 1.0 {
            values
                .iter_mut()
                .for_each(|v| *v = *v / self.scale - self.shift);
        }
    }
}

/// What the per-tensor transforms depend on.
#[derive(Debug, Clone, Copy)]
pub struct TensorRules {
    pub arch: &'static str,
    pub heads: usize,
    pub kv_heads: usize,
    /// `√(assumed / query_pre_attn_scalar)`, folded into Gemma 2's q projection or Gemma 3's
    /// q norm; 1 elsewhere.
    pub query_fold: f32,
}

impl TensorRules {
    /// The transform of the tensor with canonical HF name `hf`.
    pub fn transform(&self, hf: &str) -> Transform {
        let mut t = Transform::IDENTITY;
        let rotated = |m: &str| hf.contains(&format!(".self_attn.{m}."));
        if matches!(self.arch, "llama" | "smollm3") {
            if rotated("q_proj") {
                t.permute_heads = Some(self.heads);
            } else if rotated("k_proj") {
                t.permute_heads = Some(self.kv_heads);
            }
        }
        let gemma = self.arch.starts_with("gemma");
        if gemma && hf.ends_with("norm.weight") {
            t.shift = 1.0;
        }
        let folds_into = match self.arch {
            "gemma2" => rotated("q_proj"),
            "gemma3" => hf.ends_with(".self_attn.q_norm.weight"),
            _ => false,
        };
        if folds_into {
            t.scale = self.query_fold;
        }
        t
    }
}

/// The export's rules for `spec`, after checking llama.cpp can compute what it computes.
pub fn rules_for(spec: &ModelSpec) -> Result<TensorRules> {
    let arch = arch_name(spec.family);
    check_expressible(spec, arch)?;
    let query_fold = match spec.family {
        Family::Gemma2 | Family::Gemma3 => {
            let assumed = assumed_query_scalar(
                arch,
                spec.num_layers as u64,
                spec.hidden_size as u64,
                spec.num_heads as u64,
                spec.head_dim as u64,
            );
            // attention_scale = query_pre_attn_scalar^-½
            (assumed.sqrt() * spec.attention_scale) as f32
        }
        _ => 1.0,
    };
    Ok(TensorRules {
        arch,
        heads: spec.num_heads as usize,
        kv_heads: spec.num_kv_heads as usize,
        query_fold,
    })
}

/// Refuses what llama.cpp's architecture cannot compute, naming the key and why.
fn check_expressible(spec: &ModelSpec, arch: &str) -> Result<()> {
    let who = &spec.architecture;
    let new_family = !matches!(
        spec.family,
        Family::Llama | Family::Mistral | Family::Qwen2 | Family::Qwen3
    );
    if new_family && (spec.qkv_bias || spec.o_bias || spec.mlp_bias) {
        bail!("{who} with attention_bias / mlp_bias cannot be exported: llama.cpp's {arch} has no biases");
    }
    if matches!(spec.family, Family::Gemma | Family::Gemma2) && !spec.tie_word_embeddings {
        bail!("{who} with tie_word_embeddings = false cannot be exported: llama.cpp's {arch} always uses the token embeddings as the output projection");
    }
    if let Some(local) = &spec.local_rope {
        if local.scaling != RopeScaling::None {
            bail!("{who}: rope scaling on the sliding layers cannot be exported: llama.cpp's {arch} scales only the full layers' rotary frequencies");
        }
    }
    match (&spec.rope_scaling, arch) {
        (RopeScaling::LongRope { .. }, a) if a != "phi3" => {
            bail!("{who}: longrope scaling cannot be exported as {arch}")
        }
        (RopeScaling::Llama3 { .. }, a) if a != "llama" => {
            bail!("{who}: llama3 rope scaling cannot be exported as {arch}")
        }
        _ => {}
    }
    if spec.family == Family::SmolLM3 {
        let llama_cpp_rule = |i: usize| !(i + 1).is_multiple_of(SMOLLM3_NOPE_INTERVAL);
        if spec
            .layers
            .iter()
            .enumerate()
            .any(|(i, l)| (l.rotary != LayerRotary::None) != llama_cpp_rule(i))
        {
            bail!("{who}: key `no_rope_layers` cannot be exported: llama.cpp's smollm3 makes exactly every 4th layer NoPE");
        }
        if spec.layers.iter().any(|l| l.window.is_some()) {
            bail!("{who} with use_sliding_window cannot be exported: llama.cpp's smollm3 has no sliding window");
        }
    }
    if spec.rotary_dim != spec.head_dim && arch != "phi3" {
        bail!("{who}: partial rotary cannot be exported as {arch}");
    }
    Ok(())
}

/// Gemma 2/3's sliding layers, as llama.cpp's per-layer `sliding_window_pattern` (true =
/// sliding), and their window (llama.cpp has one window for all sliding layers).
pub fn sliding_pattern(spec: &ModelSpec) -> (Vec<bool>, Option<i64>) {
    let pattern = spec.layers.iter().map(|l| l.window.is_some()).collect();
    let window = spec.layers.iter().find_map(|l| l.window);
    (pattern, window)
}

/// The keys of the family beyond the hyper-parameters every architecture has.
pub fn write_family_metadata(w: &mut GgufWriter, spec: &ModelSpec, arch: &str) -> Result<()> {
    let key = |k: &str| format!("{arch}.{k}");
    match spec.family {
        Family::Gemma2 | Family::Gemma3 => {
            let (pattern, window) = sliding_pattern(spec);
            if let Some(window) = window {
                w.add_metadata(&key("attention.sliding_window"), window as u32)?;
            }
            // Per layer, so llama.cpp does not assume its fixed pattern (2 or 6).
            w.add_metadata(&key("attention.sliding_window_pattern"), pattern)?;
            let scalar = spec.attention_scale.powi(-2);
            w.add_metadata(QUERY_PRE_ATTN_SCALAR_KEY, scalar as f32)?;
            if spec.family == Family::Gemma2 {
                let cap = |c: Option<f64>| c.map_or(NO_SOFTCAP, |c| c as f32);
                w.add_metadata(&key("attn_logit_softcapping"), cap(spec.attn_logit_softcap))?;
                w.add_metadata(
                    &key("final_logit_softcapping"),
                    cap(spec.final_logit_softcap),
                )?;
            } else {
                if let Some(cap) = spec.final_logit_softcap {
                    w.add_metadata(&key("final_logit_softcapping"), cap as f32)?;
                }
                if let Some(local) = &spec.local_rope {
                    w.add_metadata(&key("rope.freq_base_swa"), local.theta as f32)?;
                }
            }
        }
        Family::Phi3 => {
            // 0 for none, as llama.cpp's converter writes it (llama.cpp ignores Phi-3's window).
            w.add_metadata(
                &key("attention.sliding_window"),
                spec.uniform_window().unwrap_or(0) as u32,
            )?;
            if let RopeScaling::LongRope {
                original_max_position_embeddings,
                attention_factor,
                ..
            } = &spec.rope_scaling
            {
                w.add_metadata(
                    &key("rope.scaling.original_context_length"),
                    *original_max_position_embeddings as u32,
                )?;
                w.add_metadata(&key("rope.scaling.attn_factor"), *attention_factor as f32)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Phi-3's LongRoPE factor tensors: (`rope_factors_long.weight`, `rope_factors_short.weight`).
pub fn longrope_factors(spec: &ModelSpec) -> Option<[(&'static str, Vec<f32>); 2]> {
    let RopeScaling::LongRope {
        short_factor,
        long_factor,
        ..
    } = &spec.rope_scaling
    else {
        return None;
    };
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect();
    Some([
        ("rope_factors_long.weight", f32s(long_factor)),
        ("rope_factors_short.weight", f32s(short_factor)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_invert() {
        let rules = TensorRules {
            arch: "gemma3",
            heads: 2,
            kv_heads: 1,
            query_fold: 0.75,
        };
        let t = rules.transform("model.layers.0.self_attn.q_norm.weight");
        assert_eq!((t.shift, t.scale, t.permute_heads), (1.0, 0.75, None));
        let mut v = vec![0.5f32, -0.25];
        t.apply(&mut v);
        assert_eq!(v, [1.125, 0.5625]);
        t.invert(&mut v);
        assert_eq!(v, [0.5, -0.25]);
        assert!(rules
            .transform("model.layers.0.self_attn.k_proj.weight")
            .is_identity());
        let k_norm = rules.transform("model.layers.0.self_attn.k_norm.weight");
        assert_eq!((k_norm.shift, k_norm.scale), (1.0, 1.0));
        let llama = TensorRules {
            arch: "smollm3",
            ..rules
        };
        let k = llama.transform("model.layers.0.self_attn.k_proj.weight");
        assert_eq!(k.permute_heads, Some(1));
        assert!(llama.transform("model.norm.weight").is_identity());
    }

    #[test]
    fn llama_cpp_assumes_hidden_over_heads_only_for_the_27b_layer_counts() {
        assert_eq!(assumed_query_scalar("gemma3", 62, 5376, 32, 128), 168.0);
        assert_eq!(assumed_query_scalar("gemma3", 34, 2560, 8, 256), 256.0);
        assert_eq!(assumed_query_scalar("gemma2", 46, 4608, 32, 128), 144.0);
    }
}

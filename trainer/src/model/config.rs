//! `config.json` → [`ModelSpec`]: every difference between the supported families is
//! decided here, once, so the decoder reads switches instead of family names.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The architectures loam can load (`architectures[0]` in `config.json`).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

/// How rotary frequencies are rescaled for long context.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// The normalized description of a decoder, whatever the family or config layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub architecture: String,
    pub family: Family,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: usize,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Llama `attention_bias`, always on for Qwen2).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama `attention_bias` only).
    pub o_bias: bool,
    /// Bias on gate/up/down (Llama `mlp_bias`).
    pub mlp_bias: bool,
    /// RMSNorm on each head of q and k before rotary (Qwen3).
    pub qk_norm: bool,
    /// Mistral: a token attends to at most this many previous tokens (itself included).
    pub sliding_window: Option<i64>,
    /// The dtype the checkpoint was saved in (`torch_dtype`, or `dtype` in transformers 5).
    pub saved_dtype: Option<String>,
    /// 4-bit linears: as `quantization_config` says the checkpoint holds them, or asked for
    /// at load ([`super::load_with`]).
    pub quantization: Option<super::quant::Quantization>,
}

/// `config.json` as transformers writes it: the v4 layout (`rope_theta`, `rope_scaling`)
/// and the v5 layout (`rope_parameters`) both deserialize into this.
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: usize,
    num_attention_heads: i64,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeParams>,
    rope_parameters: Option<RopeParams>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: i64,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    sliding_window: Option<i64>,
    #[serde(default)]
    use_sliding_window: bool,
    torch_dtype: Option<String>,
    dtype: Option<String>,
    quantization_config: Option<serde_json::Value>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> i64 {
    2048
}

/// `rope_scaling` (v4) or `rope_parameters` (v5); v5 also carries `rope_theta` here.
#[derive(Debug, Deserialize)]
struct RopeParams {
    rope_type: Option<String>,
    /// v4 configs of older models spell `rope_type` as `type`.
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

impl ModelSpec {
    /// Reads `<dir>/config.json`.
    pub fn from_model_dir(dir: &Path) -> Result<ModelSpec> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read {}: a model directory needs the config.json of a Hugging Face checkpoint", path.display())
        })?;
        Self::from_json(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<ModelSpec> {
        let cfg: HfConfig =
            serde_json::from_str(text).context("config.json is not a valid model config")?;
        let architecture = cfg
            .architectures
            .first()
            .cloned()
            .context("key `architectures` is missing or empty")?;
        let family = match architecture.as_str() {
            "LlamaForCausalLM" => Family::Llama,
            "MistralForCausalLM" => Family::Mistral,
            "Qwen2ForCausalLM" => Family::Qwen2,
            "Qwen3ForCausalLM" => Family::Qwen3,
            other => bail!(
                "unsupported architecture `{other}`; loam supports: {}",
                SUPPORTED_ARCHITECTURES.join(", ")
            ),
        };
        if let Some(act) = cfg.hidden_act.as_deref() {
            if act != "silu" {
                bail!("key `hidden_act` is `{act}`; loam's {architecture} supports only `silu`");
            }
        }
        if cfg.num_attention_heads <= 0 {
            bail!("key `num_attention_heads` must be positive");
        }
        let num_kv_heads = cfg.num_key_value_heads.unwrap_or(cfg.num_attention_heads);
        if num_kv_heads <= 0 || cfg.num_attention_heads % num_kv_heads != 0 {
            bail!(
                "key `num_key_value_heads` ({num_kv_heads}) must divide `num_attention_heads` ({})",
                cfg.num_attention_heads
            );
        }
        let head_dim = cfg
            .head_dim
            .unwrap_or(cfg.hidden_size / cfg.num_attention_heads);

        // v5 keeps theta inside rope_parameters; v4 at the top level.
        let rope = cfg.rope_parameters.as_ref().or(cfg.rope_scaling.as_ref());
        let rope_theta = cfg
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(cfg.rope_theta)
            .unwrap_or(10_000.0);
        let rope_scaling = match rope {
            None => RopeScaling::None,
            Some(p) => rope_scaling_from(p)?,
        };

        // Family defaults follow transformers' config classes.
        let (tie_default, qkv_bias, o_bias, qk_norm) = match family {
            Family::Llama => (false, cfg.attention_bias, cfg.attention_bias, false),
            Family::Mistral => (false, false, false, false),
            Family::Qwen2 => (false, true, false, false),
            Family::Qwen3 => (false, cfg.attention_bias, cfg.attention_bias, true),
        };
        let mlp_bias = family == Family::Llama && cfg.mlp_bias;
        let sliding_window = match family {
            Family::Mistral => cfg.sliding_window,
            // Qwen2/3 only slide when asked, and then only in some layers: not supported.
            Family::Qwen2 | Family::Qwen3 if cfg.use_sliding_window => {
                bail!("key `use_sliding_window` is true; loam does not support sliding-window {architecture} models")
            }
            _ => None,
        };

        Ok(ModelSpec {
            architecture,
            family,
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            num_layers: cfg.num_hidden_layers,
            num_heads: cfg.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: cfg.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: cfg.max_position_embeddings,
            tie_word_embeddings: cfg.tie_word_embeddings.unwrap_or(tie_default),
            qkv_bias,
            o_bias,
            mlp_bias,
            qk_norm,
            sliding_window,
            saved_dtype: cfg.dtype.or(cfg.torch_dtype),
            quantization: cfg
                .quantization_config
                .as_ref()
                .map(super::quant::bnb::parse_quantization_config)
                .transpose()?,
        })
    }
}

fn rope_scaling_from(p: &RopeParams) -> Result<RopeScaling> {
    let kind = p
        .rope_type
        .as_deref()
        .or(p.legacy_type.as_deref())
        .unwrap_or("default");
    let need = |v: Option<f64>, key: &str| {
        v.with_context(|| {
            format!("rope type `{kind}` needs key `{key}` in rope_scaling / rope_parameters")
        })
    };
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: need(p.factor, "factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: need(p.factor, "factor")?,
            low_freq_factor: need(p.low_freq_factor, "low_freq_factor")?,
            high_freq_factor: need(p.high_freq_factor, "high_freq_factor")?,
            original_max_position_embeddings: need(
                p.original_max_position_embeddings,
                "original_max_position_embeddings",
            )?,
        },
        other => {
            bail!("rope type `{other}` is not supported; loam supports default, linear and llama3")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA_V4: &str = r#"{
        "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "tie_word_embeddings": true, "torch_dtype": "bfloat16"}"#;

    #[test]
    fn v4_and_v5_layouts_give_the_same_spec() {
        let v4 = ModelSpec::from_json(LLAMA_V4).unwrap();
        let v5 = LLAMA_V4
            .replace(r#""rope_theta": 500000.0,"#, "")
            .replace(
                r#""rope_scaling": {"rope_type""#,
                r#""rope_parameters": {"rope_theta": 500000.0, "rope_type""#,
            )
            .replace("torch_dtype", "dtype");
        let v5 = ModelSpec::from_json(&v5).unwrap();
        assert_eq!(v4, v5);
        assert_eq!(v4.rope_theta, 500000.0);
        assert!(matches!(v4.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        assert_eq!(v4.head_dim, 16);
        assert_eq!(v4.saved_dtype.as_deref(), Some("bfloat16"));
    }

    #[test]
    fn qwen2_has_qkv_bias_but_no_o_bias() {
        let s = LLAMA_V4.replace("LlamaForCausalLM", "Qwen2ForCausalLM");
        let spec = ModelSpec::from_json(&s).unwrap();
        assert!(spec.qkv_bias && !spec.o_bias && !spec.qk_norm);
    }

    #[test]
    fn unsupported_architecture_lists_the_supported_ones() {
        let s = LLAMA_V4.replace("LlamaForCausalLM", "GPT2LMHeadModel");
        let err = format!("{:#}", ModelSpec::from_json(&s).unwrap_err());
        assert!(err.contains("GPT2LMHeadModel"), "{err}");
        for arch in SUPPORTED_ARCHITECTURES {
            assert!(err.contains(arch), "{err}");
        }
    }

    #[test]
    fn kv_heads_must_divide_heads() {
        let s = LLAMA_V4.replace(r#""num_key_value_heads": 2"#, r#""num_key_value_heads": 3"#);
        let err = format!("{:#}", ModelSpec::from_json(&s).unwrap_err());
        assert!(err.contains("num_key_value_heads"), "{err}");
    }
}

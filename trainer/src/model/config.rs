//! `config.json` → [`ModelSpec`]: every difference between the supported families is
//! decided here, once, so the decoder reads switches instead of family names.
//!
//! Families and what sets them apart (transformers 5's config classes and modeling files):
//! - Llama, Mistral, Qwen2, Qwen3: biases, q/k RMSNorm, explicit `head_dim`, rope scaling,
//!   Mistral's sliding window.
//! - Gemma: norms `x·rsqrt(mean x² + eps)·(1 + w)` in f32, embeddings × √hidden, tanh GELU.
//! - Gemma 2: four norms per layer, attention scale `query_pre_attn_scalar^-½`, attention and
//!   final logit soft-capping, sliding-window layers.
//! - Gemma 3: Gemma 2 without attention soft-capping, with Gemma-style q/k norms and two rotary
//!   embeddings (a local base on sliding layers); `Gemma3ForConditionalGeneration` is the
//!   same decoder inside a multimodal checkpoint (`text_config`).
//! - Phi-3/3.5/4: fused `qkv_proj` and `gate_up_proj`, partial rotary, LongRoPE.
//! - SmolLM3: NoPE layers.
//!
//! Keys a config omits take the family's defaults from transformers' config classes
//! ([`super::family_defaults`]): Gemma 3's multimodal `text_config` omits most of them.

use super::family_defaults;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The architectures loam can load (`architectures[0]` in `config.json`).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "Gemma3ForConditionalGeneration",
    "Phi3ForCausalLM",
    "SmolLM3ForCausalLM",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma,
    Gemma2,
    Gemma3,
    Phi3,
    SmolLM3,
}

impl Family {
    /// Gemma 1/2/3: the `(1 + w)` norms and the scaled embeddings.
    pub fn is_gemma(self) -> bool {
        matches!(self, Family::Gemma | Family::Gemma2 | Family::Gemma3)
    }
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
    /// Phi-3's LongRoPE (`longrope`, legacy `su`): frequency i divided by `short_factor[i]`
    /// while a pass's positions stay within `original_max_position_embeddings`, by
    /// `long_factor[i]` beyond; cos and sin multiplied by `attention_factor` either way.
    LongRope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        original_max_position_embeddings: f64,
        attention_factor: f64,
    },
}

/// How a layer's RMSNorms compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// Llama: normalize in f32, cast, then `w ·` in the compute dtype.
    Plain,
    /// Gemma: `(1 + w) ·` in f32, then cast.
    Gemma,
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// transformers' `gelu_pytorch_tanh` (Gemma).
    GeluTanh,
    /// Exact (erf) GELU.
    Gelu,
}

/// Which rotary embedding a layer's queries and keys take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerRotary {
    /// The model's rotary embedding (`rope_theta`, `rope_scaling`).
    Global,
    /// Gemma 3's sliding layers: [`ModelSpec::local_rope`].
    Local,
    /// SmolLM3's NoPE layers: no position embedding at all.
    None,
}

/// What differs between the layers of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// A token attends to at most this many tokens, itself included (a sliding layer).
    pub window: Option<i64>,
    pub rotary: LayerRotary,
}

/// Gemma 3's second rotary embedding, on its sliding layers.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRope {
    pub theta: f64,
    pub scaling: RopeScaling,
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
    /// Dimensions of each head that rotate (the first ones): `head_dim` but for Phi-3's
    /// `partial_rotary_factor`.
    pub rotary_dim: i64,
    pub local_rope: Option<LocalRope>,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Llama `attention_bias`, always on for Qwen2).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama `attention_bias` only).
    pub o_bias: bool,
    /// Bias on gate/up/down (Llama `mlp_bias`).
    pub mlp_bias: bool,
    /// RMSNorm on each head of q and k before rotary (Qwen3, Gemma 3).
    pub qk_norm: bool,
    pub norm: NormKind,
    /// Embeddings multiplied by √hidden, rounded to the compute dtype first (Gemma).
    pub embed_scale: Option<f64>,
    pub activation: Activation,
    /// Gemma 2/3: the attention and MLP outputs are normed too (four norms per layer).
    pub sandwich_norms: bool,
    /// Factor on q·k: `head_dim^-½`, Gemma 2/3 `query_pre_attn_scalar^-½`.
    pub attention_scale: f64,
    /// Gemma 2: scores become `tanh(s / cap) · cap` before the mask.
    pub attn_logit_softcap: Option<f64>,
    /// Gemma 2 (and Gemma 3 text models that set it): logits become `tanh(z / cap) · cap`.
    pub final_logit_softcap: Option<f64>,
    /// Phi-3: `qkv_proj` (q rows, then k, then v) and `gate_up_proj` (gate half, then up).
    pub fused_projections: bool,
    /// Gemma3ForConditionalGeneration: the decoder is the language model of a checkpoint
    /// that also holds a vision tower, which loam leaves untouched.
    pub multimodal: bool,
    /// One entry per layer: its window and rotary embedding.
    pub layers: Vec<LayerSpec>,
    /// The dtype the checkpoint was saved in (`torch_dtype`, or `dtype` in transformers 5).
    pub saved_dtype: Option<String>,
    /// 4-bit linears: as `quantization_config` says the checkpoint holds them, or asked for
    /// at load ([`super::load_with`]).
    pub quantization: Option<super::quant::Quantization>,
}

impl ModelSpec {
    /// The window shared by every layer, when all layers have the same one (Mistral).
    pub fn uniform_window(&self) -> Option<i64> {
        let first = self.layers.first()?.window;
        self.layers
            .iter()
            .all(|l| l.window == first)
            .then_some(first)?
    }
}

/// `config.json` as transformers writes it: the v4 layout (`rope_theta`, `rope_scaling`)
/// and the v5 layout (`rope_parameters`) both deserialize into this.
#[derive(Debug, Deserialize)]
struct HfConfig {
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
    /// Gemma 3 v4 layout: the sliding layers' rotary base.
    rope_local_base_freq: Option<f64>,
    /// Phi-3 v4 layout (also inside `rope_parameters` in v5).
    partial_rotary_factor: Option<f64>,
    /// Phi-3 keeps it at the top level, and it wins over `rope_parameters`' (as in
    /// transformers' `standardize_rope_params`).
    original_max_position_embeddings: Option<f64>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: i64,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    /// Gemma 2/3's name for the MLP activation.
    hidden_activation: Option<String>,
    sliding_window: Option<i64>,
    #[serde(default)]
    use_sliding_window: bool,
    layer_types: Option<Vec<String>>,
    /// Gemma 3 v4 layout: every `sliding_window_pattern`-th layer is full.
    sliding_window_pattern: Option<usize>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    /// SmolLM3: 1 = the layer rotates, 0 = NoPE.
    no_rope_layers: Option<Vec<i64>>,
    no_rope_layer_interval: Option<usize>,
    #[serde(default)]
    use_bidirectional_attention: Option<bool>,
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

/// `rope_scaling` (v4) or `rope_parameters` (v5); v5 also carries `rope_theta` here, and
/// Gemma 3's v5 layout one of these per layer type.
#[derive(Debug, Clone, Default, Deserialize)]
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
    partial_rotary_factor: Option<f64>,
    short_factor: Option<Vec<f64>>,
    long_factor: Option<Vec<f64>>,
    attention_factor: Option<f64>,
    full_attention: Option<Box<RopeParams>>,
    sliding_attention: Option<Box<RopeParams>>,
}

impl RopeParams {
    fn kind(&self) -> &str {
        self.rope_type
            .as_deref()
            .or(self.legacy_type.as_deref())
            .unwrap_or("default")
    }
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
        let mut root: serde_json::Value =
            serde_json::from_str(text).context("config.json is not a valid model config")?;
        let architecture = root["architectures"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .map(String::from)
            .context("key `architectures` is missing or empty")?;
        let (family, multimodal) = match architecture.as_str() {
            "LlamaForCausalLM" => (Family::Llama, false),
            "MistralForCausalLM" => (Family::Mistral, false),
            "Qwen2ForCausalLM" => (Family::Qwen2, false),
            "Qwen3ForCausalLM" => (Family::Qwen3, false),
            "GemmaForCausalLM" => (Family::Gemma, false),
            "Gemma2ForCausalLM" => (Family::Gemma2, false),
            "Gemma3ForCausalLM" => (Family::Gemma3, false),
            "Gemma3ForConditionalGeneration" => (Family::Gemma3, true),
            "Phi3ForCausalLM" => (Family::Phi3, false),
            "SmolLM3ForCausalLM" => (Family::SmolLM3, false),
            other => bail!(
                "unsupported architecture `{other}`; loam supports: {}",
                SUPPORTED_ARCHITECTURES.join(", ")
            ),
        };
        // The multimodal checkpoint's language model is described by `text_config`; the
        // top level says whether its embeddings are tied and the dtype.
        let (mut text_cfg, outer) = if multimodal {
            let text = root
                .get_mut("text_config")
                .map(serde_json::Value::take)
                .unwrap_or(serde_json::json!({}));
            (text, Some(root))
        } else {
            (root, None)
        };
        if !text_cfg.is_object() {
            bail!("key `text_config` must be an object");
        }
        family_defaults::fill(family, &mut text_cfg);
        let cfg: HfConfig =
            serde_json::from_value(text_cfg).context("config.json is not a valid model config")?;
        let mut spec = spec_from(cfg, architecture, family)?;
        if let Some(outer) = outer {
            spec.multimodal = true;
            if let Some(tied) = outer["tie_word_embeddings"].as_bool() {
                spec.tie_word_embeddings = tied;
            }
            let dtype = outer["dtype"].as_str().or(outer["torch_dtype"].as_str());
            if let Some(dtype) = dtype {
                spec.saved_dtype = Some(dtype.into());
            }
            if let Some(q) = outer.get("quantization_config") {
                spec.quantization = Some(super::quant::bnb::parse_quantization_config(q)?);
            }
            // Gemma3ForConditionalGeneration's forward never soft-caps its logits, whatever
            // text_config says (Gemma3ForCausalLM does).
            spec.final_logit_softcap = None;
        }
        Ok(spec)
    }
}

fn spec_from(cfg: HfConfig, architecture: String, family: Family) -> Result<ModelSpec> {
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
    if cfg.use_bidirectional_attention == Some(true) {
        bail!("key `use_bidirectional_attention` is true: an embedding model, not a causal LM; loam trains causal LMs only");
    }
    let head_dim = cfg
        .head_dim
        .unwrap_or(cfg.hidden_size / cfg.num_attention_heads);
    let activation = activation(&cfg, family, &architecture)?;

    // Phi-3 prefers `rope_scaling` over `rope_parameters` (its config class does); v5
    // configs have only the latter.
    let rope = match family {
        Family::Phi3 => cfg.rope_scaling.as_ref().or(cfg.rope_parameters.as_ref()),
        _ => cfg.rope_parameters.as_ref().or(cfg.rope_scaling.as_ref()),
    };
    let (global, local) = match rope {
        // Gemma 3's v5 layout: one rope per layer type.
        Some(p) if p.full_attention.is_some() || p.sliding_attention.is_some() => (
            p.full_attention.as_deref().cloned().unwrap_or_default(),
            p.sliding_attention.as_deref().cloned(),
        ),
        Some(p) => (p.clone(), None),
        None => (RopeParams::default(), None),
    };
    // v5 keeps theta inside rope_parameters; v4 at the top level.
    let rope_theta = global.rope_theta.or(cfg.rope_theta).unwrap_or(10_000.0);
    let partial = global
        .partial_rotary_factor
        .or(cfg.partial_rotary_factor)
        .unwrap_or(1.0);
    if !(partial > 0.0 && partial <= 1.0) {
        bail!("key `partial_rotary_factor` ({partial}) must be in (0, 1]");
    }
    let rotary_dim = (head_dim as f64 * partial) as i64;
    if rotary_dim % 2 != 0 || rotary_dim == 0 {
        bail!("head_dim {head_dim} × partial_rotary_factor {partial} = {rotary_dim} rotary dimensions; it must be even and positive");
    }
    let original_max = match family {
        Family::Phi3 => cfg
            .original_max_position_embeddings
            .or(global.original_max_position_embeddings),
        _ => global
            .original_max_position_embeddings
            .or(cfg.original_max_position_embeddings),
    }
    .unwrap_or(cfg.max_position_embeddings as f64);
    let rope_scaling = rope_scaling_from(
        &global,
        family,
        original_max,
        cfg.max_position_embeddings as f64,
        rotary_dim,
    )?;
    let local_rope = (family == Family::Gemma3)
        .then(|| -> Result<LocalRope> {
            let p = local.unwrap_or_default();
            Ok(LocalRope {
                theta: p
                    .rope_theta
                    .or(cfg.rope_local_base_freq)
                    .unwrap_or(10_000.0),
                scaling: rope_scaling_from(
                    &p,
                    family,
                    original_max,
                    cfg.max_position_embeddings as f64,
                    rotary_dim,
                )?,
            })
        })
        .transpose()?;

    // Family defaults follow transformers' config classes.
    let (qkv_bias, o_bias, qk_norm) = match family {
        Family::Llama | Family::SmolLM3 | Family::Gemma | Family::Gemma2 => {
            (cfg.attention_bias, cfg.attention_bias, false)
        }
        Family::Mistral | Family::Phi3 => (false, false, false),
        Family::Qwen2 => (true, false, false),
        Family::Qwen3 => (cfg.attention_bias, cfg.attention_bias, true),
        Family::Gemma3 => (cfg.attention_bias, cfg.attention_bias, true),
    };
    let mlp_bias = matches!(family, Family::Llama | Family::SmolLM3) && cfg.mlp_bias;
    let layers = layer_specs(&cfg, family, &architecture)?;
    let attention_scale = match family {
        Family::Gemma2 | Family::Gemma3 => {
            let scalar = cfg.query_pre_attn_scalar.unwrap_or(head_dim as f64);
            if scalar <= 0.0 {
                bail!("key `query_pre_attn_scalar` must be positive");
            }
            scalar.powf(-0.5)
        }
        _ => (head_dim as f64).powf(-0.5),
    };
    let positive = |v: Option<f64>, key: &str| -> Result<Option<f64>> {
        match v {
            Some(c) if c <= 0.0 => bail!("key `{key}` ({c}) must be positive or null"),
            v => Ok(v),
        }
    };
    let attn_logit_softcap = match family {
        Family::Gemma2 => positive(cfg.attn_logit_softcapping, "attn_logit_softcapping")?,
        _ => None,
    };
    let final_logit_softcap = match family {
        Family::Gemma2 | Family::Gemma3 => {
            positive(cfg.final_logit_softcapping, "final_logit_softcapping")?
        }
        _ => None,
    };
    let gemma = family.is_gemma();

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
        rotary_dim,
        local_rope,
        max_position_embeddings: cfg.max_position_embeddings,
        tie_word_embeddings: cfg.tie_word_embeddings.unwrap_or(false),
        qkv_bias,
        o_bias,
        mlp_bias,
        qk_norm,
        norm: if gemma {
            NormKind::Gemma
        } else {
            NormKind::Plain
        },
        embed_scale: gemma.then(|| (cfg.hidden_size as f64).sqrt()),
        activation,
        sandwich_norms: matches!(family, Family::Gemma2 | Family::Gemma3),
        attention_scale,
        attn_logit_softcap,
        final_logit_softcap,
        fused_projections: family == Family::Phi3,
        multimodal: false,
        layers,
        saved_dtype: cfg.dtype.or(cfg.torch_dtype),
        quantization: cfg
            .quantization_config
            .as_ref()
            .map(super::quant::bnb::parse_quantization_config)
            .transpose()?,
    })
}

/// The MLP activation: `hidden_act`, or Gemma 2/3's `hidden_activation`.
fn activation(cfg: &HfConfig, family: Family, architecture: &str) -> Result<Activation> {
    let (key, value) = match family {
        Family::Gemma2 | Family::Gemma3 => ("hidden_activation", cfg.hidden_activation.as_deref()),
        _ => ("hidden_act", cfg.hidden_act.as_deref()),
    };
    Ok(match (family, value.unwrap_or("silu")) {
        // GemmaConfig turns the legacy `gelu` of the official releases into the tanh form.
        (Family::Gemma, "gelu" | "gelu_pytorch_tanh") => Activation::GeluTanh,
        (Family::Gemma2 | Family::Gemma3, "gelu_pytorch_tanh") => Activation::GeluTanh,
        (Family::Gemma2 | Family::Gemma3, "gelu") => Activation::Gelu,
        (f, "silu") if !f.is_gemma() => Activation::Silu,
        (_, other) => bail!(
            "key `{key}` is `{other}`; loam's {architecture} supports only {}",
            match family {
                Family::Gemma => "`gelu_pytorch_tanh` (or legacy `gelu`)",
                Family::Gemma2 | Family::Gemma3 => "`gelu_pytorch_tanh` or `gelu`",
                _ => "`silu`",
            }
        ),
    })
}

/// Each layer's window and rotary embedding.
fn layer_specs(cfg: &HfConfig, family: Family, architecture: &str) -> Result<Vec<LayerSpec>> {
    let n = cfg.num_hidden_layers;
    let plain = |window| LayerSpec {
        window,
        rotary: LayerRotary::Global,
    };
    Ok(match family {
        Family::Mistral | Family::Phi3 => vec![plain(cfg.sliding_window); n],
        // Qwen2/3 only slide when asked, and then only in some layers: not supported.
        Family::Qwen2 | Family::Qwen3 if cfg.use_sliding_window => {
            bail!("key `use_sliding_window` is true; loam does not support sliding-window {architecture} models")
        }
        Family::Gemma2 | Family::Gemma3 => {
            // transformers' defaults: Gemma 2 slides on even layers, Gemma 3 on all but
            // every `sliding_window_pattern`-th (6).
            let pattern = match family {
                Family::Gemma2 => 2,
                _ => cfg.sliding_window_pattern.unwrap_or(6),
            };
            let sliding = sliding_layers(cfg, n, |i| pattern == 0 || (i + 1) % pattern != 0)?;
            sliding
                .into_iter()
                .map(|s| LayerSpec {
                    window: if s { cfg.sliding_window } else { None },
                    rotary: match (family, s) {
                        (Family::Gemma3, true) => LayerRotary::Local,
                        _ => LayerRotary::Global,
                    },
                })
                .collect()
        }
        Family::SmolLM3 => {
            let interval = cfg.no_rope_layer_interval.unwrap_or(4);
            let rope: Vec<bool> = match &cfg.no_rope_layers {
                Some(flags) if flags.len() < n => bail!(
                    "key `no_rope_layers` has {} entries for {n} layers",
                    flags.len()
                ),
                Some(flags) => flags[..n].iter().map(|&f| f != 0).collect(),
                None if interval == 0 => bail!("key `no_rope_layer_interval` must be positive"),
                None => (0..n).map(|i| (i + 1) % interval != 0).collect(),
            };
            let window = cfg.sliding_window.filter(|_| cfg.use_sliding_window);
            let sliding = sliding_layers(cfg, n, |i| window.is_some() && !rope[i])?;
            (0..n)
                .map(|i| LayerSpec {
                    window: window.filter(|_| sliding[i]),
                    rotary: if rope[i] {
                        LayerRotary::Global
                    } else {
                        LayerRotary::None
                    },
                })
                .collect()
        }
        _ => vec![plain(None); n],
    })
}

/// Which layers slide: `layer_types` when the config lists them, else `default(i)`.
fn sliding_layers(cfg: &HfConfig, n: usize, default: impl Fn(usize) -> bool) -> Result<Vec<bool>> {
    let Some(types) = &cfg.layer_types else {
        return Ok((0..n).map(default).collect());
    };
    if types.len() < n {
        bail!(
            "key `layer_types` has {} entries for {n} layers",
            types.len()
        );
    }
    types[..n]
        .iter()
        .enumerate()
        .map(|(i, t)| match t.as_str() {
            "sliding_attention" => Ok(true),
            "full_attention" => Ok(false),
            other => bail!(
                "key `layer_types[{i}]` is `{other}`; loam knows sliding_attention and full_attention"
            ),
        })
        .collect()
}

/// The rescaling of one rotary embedding. `original_max` and `max_positions` are the
/// config's, for LongRoPE; `rotary_dim` checks its factor lists.
fn rope_scaling_from(
    p: &RopeParams,
    family: Family,
    original_max: f64,
    max_positions: f64,
    rotary_dim: i64,
) -> Result<RopeScaling> {
    let kind = p.kind();
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
        // Phi-3's config class reads `su` and `yarn` as LongRoPE.
        "longrope" | "su" => longrope(p, original_max, max_positions, rotary_dim)?,
        "yarn" if family == Family::Phi3 => longrope(p, original_max, max_positions, rotary_dim)?,
        other => bail!(
            "rope type `{other}` is not supported; loam supports default, linear, llama3 and longrope"
        ),
    })
}

/// LongRoPE as transformers' `_compute_longrope_parameters`: the attention factor is the
/// config's, or `√(1 + ln f / ln original)` with `f = factor` or `max / original`.
fn longrope(
    p: &RopeParams,
    original_max: f64,
    max_positions: f64,
    rotary_dim: i64,
) -> Result<RopeScaling> {
    let factors = |v: &Option<Vec<f64>>, key: &str| -> Result<Vec<f64>> {
        let f = v.clone().with_context(|| {
            format!("rope type `longrope` needs key `{key}` in rope_scaling / rope_parameters")
        })?;
        if f.len() as i64 != rotary_dim / 2 {
            bail!(
                "key `{key}` has {} entries; {rotary_dim} rotary dimensions need {}",
                f.len(),
                rotary_dim / 2
            );
        }
        if f.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
            bail!("key `{key}` must hold positive numbers");
        }
        Ok(f)
    };
    let factor = p.factor.unwrap_or(max_positions / original_max);
    let attention_factor = p.attention_factor.unwrap_or(if factor <= 1.0 {
        1.0
    } else {
        (1.0 + factor.ln() / original_max.ln()).sqrt()
    });
    Ok(RopeScaling::LongRope {
        short_factor: factors(&p.short_factor, "short_factor")?,
        long_factor: factors(&p.long_factor, "long_factor")?,
        original_max_position_embeddings: original_max,
        attention_factor,
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

    fn windows(spec: &ModelSpec) -> Vec<(Option<i64>, LayerRotary)> {
        spec.layers.iter().map(|l| (l.window, l.rotary)).collect()
    }

    /// google/gemma-3-4b-it's `text_config`, as published: everything else is a default.
    const GEMMA3_4B: &str = r#"{
        "architectures": ["Gemma3ForConditionalGeneration"], "torch_dtype": "bfloat16",
        "text_config": {"hidden_size": 2560, "intermediate_size": 10240,
            "model_type": "gemma3_text", "num_hidden_layers": 34,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
        "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}}"#;

    #[test]
    fn gemma3_multimodal_text_config_takes_the_defaults() {
        let spec = ModelSpec::from_json(GEMMA3_4B).unwrap();
        assert!(spec.multimodal && spec.tie_word_embeddings && spec.qk_norm);
        assert_eq!(spec.family, Family::Gemma3);
        assert_eq!(
            (spec.vocab_size, spec.num_heads, spec.num_kv_heads),
            (262208, 8, 4)
        );
        assert_eq!((spec.head_dim, spec.rope_theta), (256, 1e6));
        assert_eq!(spec.rope_scaling, RopeScaling::Linear { factor: 8.0 });
        let local = spec.local_rope.as_ref().unwrap();
        assert_eq!((local.theta, &local.scaling), (1e4, &RopeScaling::None));
        assert_eq!(spec.attention_scale, 1.0 / 16.0);
        assert_eq!(spec.embed_scale, Some(2560f64.sqrt()));
        assert_eq!(spec.saved_dtype.as_deref(), Some("bfloat16"));
        // Every 6th layer is full and takes the global rope; the others slide.
        let w = windows(&spec);
        assert_eq!(w.len(), 34);
        assert_eq!(w[5], (None, LayerRotary::Global));
        assert_eq!(w[4], (Some(1024), LayerRotary::Local));
        assert_eq!(w.iter().filter(|l| l.0.is_none()).count(), 5);
    }

    #[test]
    fn gemma3_v5_rope_parameters_per_layer_type_equal_the_v4_keys() {
        let v4 = r#"{"architectures": ["Gemma3ForCausalLM"], "vocab_size": 10,
            "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 3,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
            "query_pre_attn_scalar": 9, "sliding_window": 5, "sliding_window_pattern": 2,
            "rope_theta": 100.0, "rope_local_base_freq": 7.0,
            "rope_scaling": {"rope_type": "linear", "factor": 2.0}}"#;
        let v5 = r#"{"architectures": ["Gemma3ForCausalLM"], "vocab_size": 10,
            "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 3,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
            "query_pre_attn_scalar": 9, "sliding_window": 5,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 100.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 7.0}}}"#;
        let (a, b) = (
            ModelSpec::from_json(v4).unwrap(),
            ModelSpec::from_json(v5).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.attention_scale, 1.0 / 3.0);
        assert_eq!(
            windows(&a),
            [
                (Some(5), LayerRotary::Local),
                (None, LayerRotary::Global),
                (Some(5), LayerRotary::Local)
            ]
        );
    }

    #[test]
    fn gemma2_defaults_slide_on_even_layers_and_soft_cap() {
        let s = r#"{"architectures": ["Gemma2ForCausalLM"], "num_hidden_layers": 4,
            "final_logit_softcapping": null}"#;
        let spec = ModelSpec::from_json(s).unwrap();
        assert_eq!(spec.attn_logit_softcap, Some(50.0));
        assert_eq!(spec.final_logit_softcap, None, "an explicit null is no cap");
        let w: Vec<_> = spec.layers.iter().map(|l| l.window).collect();
        assert_eq!(w, [Some(4096), None, Some(4096), None]);
        assert!(spec.sandwich_norms && !spec.qk_norm && spec.tie_word_embeddings);
    }

    #[test]
    fn gemma_legacy_gelu_is_the_tanh_form() {
        let s = r#"{"architectures": ["GemmaForCausalLM"], "hidden_act": "gelu"}"#;
        let spec = ModelSpec::from_json(s).unwrap();
        assert_eq!(spec.activation, Activation::GeluTanh);
        assert_eq!(spec.norm, NormKind::Gemma);
        let s = r#"{"architectures": ["GemmaForCausalLM"], "hidden_act": "relu"}"#;
        let err = format!("{:#}", ModelSpec::from_json(s).unwrap_err());
        assert!(err.contains("hidden_act") && err.contains("relu"), "{err}");
    }

    #[test]
    fn phi3_longrope_from_the_legacy_su_type_with_partial_rotary() {
        let s = r#"{"architectures": ["Phi3ForCausalLM"], "vocab_size": 10,
            "hidden_size": 32, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "partial_rotary_factor": 0.5,
            "max_position_embeddings": 4096, "original_max_position_embeddings": 256,
            "rope_scaling": {"type": "su", "short_factor": [1.0, 2.0, 3.0, 4.0],
                             "long_factor": [2.0, 3.0, 4.0, 5.0]}}"#;
        let spec = ModelSpec::from_json(s).unwrap();
        assert_eq!((spec.head_dim, spec.rotary_dim), (16, 8));
        assert!(spec.fused_projections);
        let RopeScaling::LongRope {
            attention_factor,
            original_max_position_embeddings,
            ..
        } = spec.rope_scaling
        else {
            panic!("{:?}", spec.rope_scaling)
        };
        assert_eq!(original_max_position_embeddings, 256.0);
        let want = (1.0 + 16f64.ln() / 256f64.ln()).sqrt();
        assert!((attention_factor - want).abs() < 1e-12);
        let bad = s.replace("[1.0, 2.0, 3.0, 4.0]", "[1.0]");
        let err = format!("{:#}", ModelSpec::from_json(&bad).unwrap_err());
        assert!(err.contains("short_factor"), "{err}");
    }

    /// microsoft/Phi-4-mini-instruct's config.json (its keys loam reads; the factor lists
    /// shortened to their 48 entries' shape): partial rotary 0.75 of 128, LongRoPE from 4096.
    #[test]
    fn phi4_mini_config() {
        let factors = format!("[{}]", vec!["1.5"; 48].join(", "));
        let s = format!(
            r#"{{"architectures": ["Phi3ForCausalLM"], "hidden_size": 3072,
            "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 24,
            "num_key_value_heads": 8, "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096, "partial_rotary_factor": 0.75,
            "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": true,
            "vocab_size": 200064, "rms_norm_eps": 1e-05, "resid_pdrop": 0.0,
            "rope_scaling": {{"type": "longrope", "long_factor": {factors},
                              "short_factor": {factors}}}}}"#
        );
        let spec = ModelSpec::from_json(&s).unwrap();
        assert_eq!((spec.head_dim, spec.rotary_dim), (128, 96));
        assert_eq!(spec.uniform_window(), Some(262144));
        let RopeScaling::LongRope {
            attention_factor, ..
        } = spec.rope_scaling
        else {
            panic!()
        };
        // √(1 + ln 32 / ln 4096)
        assert!(
            (attention_factor - 1.190_238_071).abs() < 1e-9,
            "{attention_factor}"
        );
    }

    /// HuggingFaceTB/SmolLM3-3B's config.json: NoPE on every 4th of 36 layers.
    #[test]
    fn smollm3_3b_config() {
        let s = r#"{"architectures": ["SmolLM3ForCausalLM"], "hidden_size": 2048,
            "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 4,
            "intermediate_size": 11008, "vocab_size": 128256, "max_position_embeddings": 65536,
            "rope_theta": 5000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
            "no_rope_layer_interval": 4,
            "no_rope_layers": [1,1,1,0,1,1,1,0,1,1,1,0,1,1,1,0,1,1,1,0,1,1,1,0,1,1,1,0,1,1,1,0,1,1,1,0]}"#;
        let spec = ModelSpec::from_json(s).unwrap();
        let nope: Vec<usize> = (0..36)
            .filter(|&i| spec.layers[i].rotary == LayerRotary::None)
            .collect();
        assert_eq!(nope, [3, 7, 11, 15, 19, 23, 27, 31, 35]);
        assert_eq!((spec.head_dim, spec.rope_theta), (128, 5e6));
    }

    #[test]
    fn smollm3_nope_layers_from_the_list_or_the_interval() {
        let base = r#"{"architectures": ["SmolLM3ForCausalLM"], "num_hidden_layers": 4"#;
        let by_interval = ModelSpec::from_json(&format!("{base}}}")).unwrap();
        let by_list =
            ModelSpec::from_json(&format!(r#"{base}, "no_rope_layers": [1, 1, 1, 0]}}"#)).unwrap();
        assert_eq!(by_interval, by_list);
        let r: Vec<_> = by_list.layers.iter().map(|l| l.rotary).collect();
        use LayerRotary::{Global as G, None as N};
        assert_eq!(r, [G, G, G, N]);
        assert_eq!(by_list.rope_theta, 2e6);
    }
}

//! PEFT-format adapters: which linears get LoRA, and the `adapter/` directory on disk
//! (`adapter_model.safetensors` + `adapter_config.json`), read and written name for name
//! as PEFT does.

use crate::lora::{self, Lora, LoraInit};
use crate::model::CausalLm;
use crate::vocab::trainable_tokens::{TokenIndices, TrainableTokens};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// The linears `all-linear` means: every linear of the decoder, never `lm_head`.
pub const ALL_LINEAR: &str = "all-linear";

/// `adapter_config.json`: the keys PEFT writes and reads for a LoRA adapter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    #[serde(default)]
    pub task_type: Option<String>,
    pub r: i64,
    pub lora_alpha: f64,
    pub target_modules: Targets,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default = "default_bias")]
    pub bias: String,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub inference_mode: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Per-module overrides PEFT supports (`{"q_proj": 8}`); keys match module-path suffixes.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, i64>,
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// PEFT writes `true`, or the name of an init (`"pissa"`, …). An adapter saved with a
    /// named init that changes the base weights only works on that changed base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_lora_weights: Option<serde_json::Value>,
    /// Embedding / output-head rows trained beside the adapter (`lora.trainable_tokens`);
    /// written from the model's trained rows when saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable_token_indices: Option<TokenIndices>,
}

fn default_bias() -> String {
    "none".into()
}

/// `target_modules`: a list of module-name suffixes, or a single string (`all-linear`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    List(Vec<String>),
    One(String),
}

impl Targets {
    /// Does the module at `path` (e.g. `model.layers.0.self_attn.q_proj`) get an adapter?
    /// Like PEFT: a target matches the whole path or a `.`-separated suffix of it.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Targets::One(t) if t == ALL_LINEAR => true,
            Targets::One(t) => suffix_match(path, t),
            Targets::List(list) => list
                .iter()
                .any(|t| t == ALL_LINEAR || suffix_match(path, t)),
        }
    }
}

fn suffix_match(path: &str, target: &str) -> bool {
    path == target || path.ends_with(&format!(".{target}"))
}

/// The value of a PEFT pattern map for `path`, if one of its keys matches.
fn pattern_value<T: Copy>(patterns: &BTreeMap<String, T>, path: &str) -> Option<T> {
    patterns
        .iter()
        .find(|(k, _)| suffix_match(path, k))
        .map(|(_, v)| *v)
}

/// The PEFT key of a LoRA tensor of the module at `path`.
fn key(path: &str, tensor: &str) -> String {
    format!("base_model.model.{path}.{tensor}")
}

/// Puts a fresh adapter on every targeted linear; errors when nothing matches.
pub fn attach_new(model: &mut CausalLm, cfg: &AdapterConfig, init: LoraInit) -> Result<usize> {
    let mut count = 0;
    for (path, linear) in model.linears_mut() {
        if cfg.target_modules.matches(&path) {
            if init == LoraInit::Pissa && linear.weight.is_quantized() {
                bail!(
                    "lora.init = \"pissa\" rewrites the base weights, but `{path}` is 4-bit; \
                     train PiSSA on the 16-bit model (model.quantize = \"none\"), or use lora.init = \"default\""
                );
            }
            let r = pattern_value(&cfg.rank_pattern, &path).unwrap_or(cfg.r);
            let alpha = pattern_value(&cfg.alpha_pattern, &path).unwrap_or(cfg.lora_alpha);
            let scale = lora::scale(r, alpha, cfg.use_rslora);
            linear.lora = Some(Lora::init(
                &mut linear.weight,
                r,
                scale,
                cfg.lora_dropout,
                init,
                cfg.use_dora,
            ));
            count += 1;
        }
    }
    if count == 0 {
        bail!(
            "lora targets {:?} match no linear layer of this model; use its module names ({}), \
             or \"all-linear\"",
            cfg.target_modules,
            module_names(model).join(", ")
        );
    }
    Ok(count)
}

/// The distinct module names of the model's linears (`q_proj`, …; Phi-3: `qkv_proj`, …).
fn module_names(model: &mut CausalLm) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (path, _) in model.linears_mut() {
        let name = path.rsplit('.').next().unwrap_or(&path).to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// PEFT's `target_modules` for a multimodal model: a regular expression (PEFT matches a
/// string in full against each module path) naming exactly the adapted modules of the
/// language model, so PEFT does not also adapt the vision tower's `q_proj` or `fc1`, as
/// `all-linear` or a module-name list would.
fn language_model_targets(model: &mut CausalLm) -> Targets {
    let prefix = model.layout.peft_module("model.layers.");
    let mut modules: Vec<String> = Vec::new();
    for (path, linear) in model.linears_mut() {
        let within_layer = path
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('.'))
            .map(|(_, module)| module.to_string());
        if let (Some(module), true) = (within_layer, linear.lora.is_some()) {
            if !modules.contains(&module) {
                modules.push(module);
            }
        }
    }
    let escape = |s: &str| s.replace('.', "\\.");
    Targets::One(format!(
        "{}\\d+\\.({})",
        escape(&prefix),
        modules
            .iter()
            .map(|m| escape(m))
            .collect::<Vec<_>>()
            .join("|")
    ))
}

/// An adapter tensor's key as loam names the module: adapters saved on transformers 4 name
/// Gemma 3's multimodal modules as its files do (`language_model.model.layers…`).
fn normalized_key(model: &CausalLm, key: &str) -> String {
    let Some(rest) = key.strip_prefix("base_model.model.") else {
        return key.to_string();
    };
    match model.layout.canonical_module(rest) {
        Some(canonical) => format!("base_model.model.{}", model.layout.peft_module(&canonical)),
        None => key.to_string(),
    }
}

/// Reads `adapter_config.json` and `adapter_model.safetensors` from `dir` and attaches them.
pub fn load(model: &mut CausalLm, dir: &Path) -> Result<AdapterConfig> {
    let cfg = read_config(dir)?;
    let weights_path = dir.join("adapter_model.safetensors");
    let mut tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(&weights_path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", weights_path.display()))?
        .into_iter()
        .map(|(k, t)| (normalized_key(model, &k), t))
        .collect();
    if let Some(indices) = &cfg.trainable_token_indices {
        let tokens = TrainableTokens::from_adapter(model, indices, &mut tensors, &weights_path)?;
        model.trainable_tokens = Some(tokens);
    }
    let device = model.device;
    let mut attached = 0;
    for (path, linear) in model.linears_mut() {
        let a = tensors.remove(&key(&path, "lora_A.weight"));
        let b = tensors.remove(&key(&path, "lora_B.weight"));
        let magnitude = tensors.remove(&key(&path, "lora_magnitude_vector"));
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => continue,
            _ => bail!(
                "{}: `{path}` has only one of lora_A / lora_B",
                weights_path.display()
            ),
        };
        let (out, inp) = linear.weight.size2();
        let r = a.size()[0];
        if a.size() != [r, inp] || b.size() != [out, r] {
            bail!(
                "{}: `{path}` has lora_A {:?} and lora_B {:?}, but the base layer is [{out}, {inp}] \
                 (the adapter was made for another base model?)",
                weights_path.display(),
                a.size(),
                b.size()
            );
        }
        if cfg.use_dora != magnitude.is_some() {
            bail!(
                "{}: `{path}`: use_dora is {} but lora_magnitude_vector is {}",
                weights_path.display(),
                cfg.use_dora,
                if magnitude.is_some() {
                    "present"
                } else {
                    "missing"
                }
            );
        }
        let alpha = pattern_value(&cfg.alpha_pattern, &path).unwrap_or(cfg.lora_alpha);
        let to_master = |t: Tensor| t.to_kind(Kind::Float).to_device(device);
        linear.lora = Some(
            Lora {
                a: to_master(a),
                b: to_master(b),
                magnitude: magnitude.map(to_master),
                scale: lora::scale(r, alpha, cfg.use_rslora),
                dropout: cfg.lora_dropout,
                pissa_start: None,
            }
            .with_grad(),
        );
        attached += 1;
    }
    if let Some(extra) = tensors.keys().next() {
        bail!(
            "{}: tensor `{extra}` matches no linear layer of the base model (the adapter was made for another base model, or targets modules loam does not adapt)",
            weights_path.display()
        );
    }
    if attached == 0 && model.trainable_tokens.is_none() {
        bail!("{} holds no LoRA tensors", weights_path.display());
    }
    Ok(cfg)
}

pub fn read_config(dir: &Path) -> Result<AdapterConfig> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: an adapter directory holds adapter_config.json and adapter_model.safetensors", path.display()))?;
    let cfg: AdapterConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a PEFT adapter config", path.display()))?;
    if cfg.peft_type != "LORA" {
        bail!(
            "{}: peft_type is `{}`; loam reads LORA adapters only",
            path.display(),
            cfg.peft_type
        );
    }
    if let Some(serde_json::Value::String(init)) = &cfg.init_lora_weights {
        if ["pissa", "olora", "corda", "loftq"]
            .iter()
            .any(|m| init.starts_with(m))
        {
            bail!(
                "{}: init_lora_weights = \"{init}\": this adapter only works on the base weights \
                 its init changed, which are not saved. Save it from PEFT with \
                 save_pretrained(..., path_initial_model_for_weight_conversion=...) to get a plain \
                 LoRA adapter (loam's own PiSSA adapters are saved that way)",
                path.display()
            );
        }
    }
    if cfg.fan_in_fan_out {
        bail!(
            "{}: fan_in_fan_out = true (Conv1D / GPT-2 style) is not supported",
            path.display()
        );
    }
    Ok(cfg)
}

/// The trainable tensors under PEFT's key names, as they are (for PiSSA: on the residual).
pub fn state_dict(model: &mut CausalLm) -> Vec<(String, Tensor)> {
    tensors_by_key(model, |lora| (lora.a.detach(), lora.b.detach()))
}

/// The adapter as a plain LoRA on the original base: what `adapter/` holds.
fn plain_state_dict(model: &mut CausalLm) -> Vec<(String, Tensor)> {
    tensors_by_key(model, Lora::to_plain_lora)
}

fn tensors_by_key(
    model: &mut CausalLm,
    a_and_b: impl Fn(&Lora) -> (Tensor, Tensor),
) -> Vec<(String, Tensor)> {
    let cpu = |t: &Tensor| {
        t.detach()
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous()
    };
    let mut out = Vec::new();
    for (path, linear) in model.linears_mut() {
        if let Some(lora) = &linear.lora {
            let (a, b) = a_and_b(lora);
            out.push((key(&path, "lora_A.weight"), cpu(&a)));
            out.push((key(&path, "lora_B.weight"), cpu(&b)));
            if let Some(m) = &lora.magnitude {
                out.push((key(&path, "lora_magnitude_vector"), cpu(m)));
            }
        }
    }
    if let Some(tokens) = &model.trainable_tokens {
        out.extend(tokens.state_dict());
    }
    out
}

/// Writes the PEFT adapter directory `dir` atomically: into `dir.tmp`, then renamed.
/// A PiSSA adapter is written converted to a plain LoRA of twice the rank on the original
/// base, with `lora_alpha` raised to keep the scale (PEFT's conversion), so it loads anywhere.
pub fn save(model: &mut CausalLm, cfg: &AdapterConfig, dir: &Path) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let is_pissa = model
        .linears_mut()
        .iter()
        .any(|(_, l)| l.lora.as_ref().is_some_and(|l| l.pissa_start.is_some()));
    let tensors = plain_state_dict(model);
    Tensor::write_safetensors(&tensors, tmp.join("adapter_model.safetensors"))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    let mut cfg = cfg.clone();
    cfg.inference_mode = true;
    if model.spec.multimodal {
        cfg.target_modules = language_model_targets(model);
    }
    cfg.trainable_token_indices = model.trainable_tokens.as_ref().map(|t| t.indices());
    if is_pissa {
        // scale = alpha / r (rsLoRA: alpha / √r) stays the same at rank 2r
        let alpha_factor = if cfg.use_rslora { 2f64.sqrt() } else { 2.0 };
        cfg.r *= 2;
        cfg.lora_alpha *= alpha_factor;
        cfg.rank_pattern.values_mut().for_each(|r| *r *= 2);
        cfg.alpha_pattern
            .values_mut()
            .for_each(|a| *a *= alpha_factor);
        cfg.init_lora_weights = Some(serde_json::Value::Bool(true));
    }
    std::fs::write(
        tmp.join("adapter_config.json"),
        serde_json::to_string_pretty(&cfg)?,
    )?;
    crate::fsutil::replace_dir(&tmp, dir)
}

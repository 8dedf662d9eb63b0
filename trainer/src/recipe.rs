//! A recipe: the whole description of a training run (TOML, DESIGN's recipe contract).
//! Unknown keys are errors that name the key and the nearest valid one; `--set a.b=v`
//! overrides any key before validation.

use crate::adapter::Targets;
use crate::lora::LoraInit;
use crate::model::quant::Quantize;
use crate::vocab::trainable_tokens::TrainableTokensSpec;
use anyhow::{bail, Context, Result};
use loam_data::config::{check_data_keys, check_keys, explain_serde_error};
use loam_data::DataConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recipe {
    pub model: ModelSection,
    #[serde(default)]
    pub lora: LoraSection,
    pub data: DataConfig,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub output: OutputSection,
    /// Read with `train.objective = "dpo"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<DpoSection>,
    /// Read with `train.objective = "orpo"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orpo: Option<OrpoSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Local directory or hub id in the local Hugging Face cache.
    pub path: String,
    /// The base model's Hugging Face repo id (`org/name`), for the cards' `base_model`.
    /// Default: `path` when it is a hub id, the Hugging Face cache folder it is in, or the
    /// model's README.md (an imported GGUF's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_id: Option<String>,
    #[serde(default = "default_dtype")]
    pub dtype: String,
    #[serde(default = "default_device")]
    pub device: String,
    /// Quantize the base's linears to 4 bits at load (QLoRA): none | nf4 | fp4. A
    /// bitsandbytes 4-bit checkpoint is 4-bit whatever this says.
    #[serde(default)]
    pub quantize: Quantize,
    /// Modules `quantize` leaves in 16 bits (names or suffixes, as `llm_int8_skip_modules`).
    #[serde(default)]
    pub quantize_skip: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    pub r: i64,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Targets,
    pub rslora: bool,
    pub dora: bool,
    pub init: LoraInit,
    /// Start from an existing PEFT adapter directory (its own r / alpha / targets).
    pub from: String,
    /// Embedding / output-head rows trained beside the adapter: `"new"` (the tokens
    /// `loam vocab extend` added) or a list of token ids (PEFT's `trainable_token_indices`).
    pub trainable_tokens: TrainableTokensSpec,
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: Targets::List(
                ["q_proj", "k_proj", "v_proj", "o_proj"]
                    .map(String::from)
                    .to_vec(),
            ),
            rslora: false,
            dora: false,
            init: LoraInit::Default,
            from: String::new(),
            trainable_tokens: TrainableTokensSpec::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

/// What a run optimizes (recipe `train.objective`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Next-token cross-entropy on the trained tokens.
    #[default]
    Sft,
    /// Direct preference optimization on pairs, against a reference (`[dpo]`).
    Dpo,
    /// Odds-ratio preference optimization on pairs, no reference (`[orpo]`).
    Orpo,
}

/// `[dpo]`: TRL's `DPOConfig` keys of the same names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoSection {
    /// β: how far the policy may move from the reference (IPO: its τ).
    pub beta: f64,
    pub loss: DpoLoss,
    /// ε, the probability that a pair's preference is flipped (sigmoid, robust).
    pub label_smoothing: f64,
    /// Compute the reference log-probabilities of every training pair once, before the
    /// first step, instead of in every step.
    pub precompute_reference: bool,
}

impl Default for DpoSection {
    fn default() -> Self {
        DpoSection {
            beta: 0.1,
            loss: DpoLoss::Sigmoid,
            label_smoothing: 0.0,
            precompute_reference: false,
        }
    }
}

/// The DPO loss of a pair from its reward margin (`dpo.loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoLoss {
    Sigmoid,
    Ipo,
    Hinge,
    Robust,
}

/// `[orpo]`: TRL's `ORPOConfig` keys of the same names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrpoSection {
    /// λ, the weight of the odds-ratio term against the chosen sequences' NLL.
    pub beta: f64,
}

impl Default for OrpoSection {
    fn default() -> Self {
        OrpoSection { beta: 0.1 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// `sft` (default), `dpo` or `orpo`.
    pub objective: Objective,
    /// Optimizer steps; or set `epochs`.
    pub steps: Option<u64>,
    pub epochs: Option<f64>,
    pub micro_batch: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub schedule: Schedule,
    /// < 1: a fraction of the steps; >= 1: a number of steps.
    pub warmup: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub eval_every: u64,
    /// Eval batches per evaluation (0 = the whole eval split).
    pub eval_batches: u64,
    /// Held-out prompts answered and scored (chrF++, BLEU) at each eval; 0: none.
    pub eval_generate: u64,
    /// New tokens per held-out answer at most.
    pub eval_max_new_tokens: usize,
    pub activation_checkpointing: bool,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            objective: Objective::Sft,
            steps: None,
            epochs: None,
            micro_batch: 4,
            grad_accum: 4,
            lr: 2e-4,
            schedule: Schedule::Cosine,
            warmup: 0.03,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 42,
            checkpoint_every: 100,
            keep_checkpoints: 3,
            eval_every: 100,
            eval_batches: 0,
            eval_generate: 0,
            eval_max_new_tokens: 128,
            activation_checkpointing: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    pub dir: String,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            dir: "runs/loam".into(),
        }
    }
}

fn default_dtype() -> String {
    "bf16".into()
}
fn default_device() -> String {
    "auto".into()
}

const SECTIONS: &[&str] = &["model", "lora", "data", "train", "output", "dpo", "orpo"];
const MODEL_KEYS: &[&str] = &[
    "path",
    "hub_id",
    "dtype",
    "device",
    "quantize",
    "quantize_skip",
];
const LORA_KEYS: &[&str] = &[
    "r",
    "alpha",
    "dropout",
    "targets",
    "rslora",
    "dora",
    "init",
    "from",
    "trainable_tokens",
];
const TRAIN_KEYS: &[&str] = &[
    "objective",
    "steps",
    "epochs",
    "micro_batch",
    "grad_accum",
    "lr",
    "schedule",
    "warmup",
    "weight_decay",
    "max_grad_norm",
    "seed",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_every",
    "eval_batches",
    "eval_generate",
    "eval_max_new_tokens",
    "activation_checkpointing",
];
const OUTPUT_KEYS: &[&str] = &["dir"];
const DPO_KEYS: &[&str] = &["beta", "loss", "label_smoothing", "precompute_reference"];
const ORPO_KEYS: &[&str] = &["beta"];

impl Recipe {
    /// Reads `path`, applies `--set key=value` overrides, validates.
    pub fn load(path: &Path, sets: &[String]) -> Result<Recipe> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read recipe {}", path.display()))?;
        Self::parse(&text, sets).with_context(|| format!("in recipe {}", path.display()))
    }

    pub fn parse(text: &str, sets: &[String]) -> Result<Recipe> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("not valid TOML: {e}"))?;
        for set in sets {
            apply_set(&mut value, set)?;
        }
        check_keys(&value, "recipe", SECTIONS).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (section, keys) in [
            ("model", MODEL_KEYS),
            ("lora", LORA_KEYS),
            ("train", TRAIN_KEYS),
            ("output", OUTPUT_KEYS),
            ("dpo", DPO_KEYS),
            ("orpo", ORPO_KEYS),
        ] {
            if let Some(table) = value.get(section) {
                let table = table
                    .as_table()
                    .with_context(|| format!("`{section}` must be a table ([{section}])"))?;
                check_keys(table, section, keys).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        let data = value.get("data").context(
            "the recipe has no [data] section (it needs at least one [[data.train]] source)",
        )?;
        check_data_keys(data, "data").map_err(|e| anyhow::anyhow!("{e}"))?;
        let recipe: Recipe =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!("{}", explain_serde_error(&e.to_string()))
                })?;
        recipe.data.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        recipe.validate()?;
        Ok(recipe)
    }

    fn validate(&self) -> Result<()> {
        let (l, t) = (&self.lora, &self.train);
        if l.r <= 0 {
            bail!(
                "lora.r must be a positive rank, got {} (typical: 8 to 64)",
                l.r
            );
        }
        if l.alpha <= 0.0 {
            bail!(
                "lora.alpha must be positive, got {} (typical: 2 × r)",
                l.alpha
            );
        }
        if !(0.0..1.0).contains(&l.dropout) {
            bail!("lora.dropout must be in [0, 1), got {}", l.dropout);
        }
        if self.data.train.is_empty() {
            bail!("the recipe has no [[data.train]] source");
        }
        match (t.steps, t.epochs) {
            (Some(0), _) => bail!("train.steps must be at least 1"),
            (None, None) => bail!("set train.steps (optimizer steps) or train.epochs"),
            (Some(_), Some(_)) => bail!("set only one of train.steps and train.epochs"),
            (None, Some(e)) if e <= 0.0 => bail!("train.epochs must be positive, got {e}"),
            _ => {}
        }
        if t.micro_batch == 0 || t.grad_accum == 0 {
            bail!("train.micro_batch and train.grad_accum must be at least 1");
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            bail!("train.lr must be a positive number, got {}", t.lr);
        }
        if t.warmup < 0.0 {
            bail!("train.warmup must be >= 0 (a fraction of the steps below 1, a number of steps from 1)");
        }
        crate::runtime::parse_dtype(&self.model.dtype).context("key model.dtype")?;
        if let Some(id) = &self.model.hub_id {
            crate::export::card::identity::check_hub_id(id, "model.hub_id")?;
        }
        if l.init == LoraInit::Pissa && self.model.quantize != Quantize::None {
            bail!(
                "lora.init = \"pissa\" rewrites the base weights, which model.quantize makes \
                 4-bit; use model.quantize = \"none\" with PiSSA, or lora.init = \"default\""
            );
        }
        self.validate_objective()
    }

    /// The data fits the objective, and the objective's section its values.
    fn validate_objective(&self) -> Result<()> {
        let pairs = self.data.is_preference();
        match self.train.objective {
            Objective::Sft if pairs => bail!(
                "the data holds preference pairs (format = \"preference\"), which train.objective = \"sft\" cannot train on; set train.objective = \"dpo\" or \"orpo\""
            ),
            Objective::Sft => return Ok(()),
            objective if !pairs => bail!(
                "train.objective = \"{}\" trains on preference pairs, but data.train[0] has format \"{}\"; use format = \"preference\" sources (columns prompt, chosen, rejected)",
                if objective == Objective::Dpo { "dpo" } else { "orpo" },
                self.data.train[0].format.name()
            ),
            _ => {}
        }
        let dpo = self.dpo.clone().unwrap_or_default();
        if !(dpo.beta > 0.0 && dpo.beta.is_finite()) {
            bail!(
                "dpo.beta must be a positive number, got {} (TRL's default: 0.1)",
                dpo.beta
            );
        }
        if !(0.0..0.5).contains(&dpo.label_smoothing) {
            bail!(
                "dpo.label_smoothing must be in [0, 0.5), got {} (the probability that a preference is flipped)",
                dpo.label_smoothing
            );
        }
        if dpo.label_smoothing > 0.0 && matches!(dpo.loss, DpoLoss::Ipo | DpoLoss::Hinge) {
            bail!(
                "dpo.label_smoothing applies to loss = \"sigmoid\" or \"robust\", not \"{}\"; set it to 0",
                if dpo.loss == DpoLoss::Ipo { "ipo" } else { "hinge" }
            );
        }
        let orpo = self.orpo.clone().unwrap_or_default();
        if !(orpo.beta > 0.0 && orpo.beta.is_finite()) {
            bail!(
                "orpo.beta must be a positive number, got {} (TRL's default: 0.1)",
                orpo.beta
            );
        }
        Ok(())
    }
}

/// `a.b.c=value` (and `data.train[0].path=value`): value parsed as TOML (numbers, booleans,
/// arrays, quoted strings), else taken as a bare string.
fn apply_set(root: &mut toml::Table, set: &str) -> Result<()> {
    let (key, raw) = set
        .split_once('=')
        .with_context(|| format!("--set `{set}` must look like key=value, e.g. train.lr=1e-4"))?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, path) = parts.split_last().context("--set needs a key")?;
    let mut table = root;
    for part in path {
        let (name, index) =
            split_index(part).with_context(|| format!("--set {key}: bad index in `{part}`"))?;
        let entry = table
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let entry = match index {
            None => entry,
            Some(i) => entry
                .as_array_mut()
                .and_then(|a| a.get_mut(i))
                .with_context(|| format!("--set {key}: the recipe has no `{name}[{i}]`"))?,
        };
        table = entry
            .as_table_mut()
            .with_context(|| format!("--set {key}: `{part}` is not a table"))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

/// `train[0]` → ("train", Some(0)); `train` → ("train", None).
fn split_index(part: &str) -> Option<(&str, Option<usize>)> {
    match part.split_once('[') {
        None => Some((part, None)),
        Some((name, rest)) => Some((name, Some(rest.strip_suffix(']')?.parse().ok()?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [model]
        path = "m"
        [[data.train]]
        path = "d.parquet"
        format = "text"
        [train]
        steps = 10
    "#;

    fn err(text: &str, sets: &[&str]) -> String {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        format!("{:#}", Recipe::parse(text, &sets).unwrap_err())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let r = Recipe::parse(MINIMAL, &[]).unwrap();
        assert_eq!(
            (
                r.lora.r,
                r.lora.alpha,
                r.train.micro_batch,
                r.train.grad_accum
            ),
            (16, 32.0, 4, 4)
        );
        assert_eq!(r.model.dtype, "bf16");
        assert_eq!(r.model.quantize, Quantize::None);
        let q = Recipe::parse(MINIMAL, &["model.quantize=nf4".into()]).unwrap();
        assert_eq!(q.model.quantize, Quantize::Nf4);
    }

    #[test]
    fn set_overrides_any_key() {
        let sets = [
            "train.lr=1e-4",
            "lora.targets=\"all-linear\"",
            "output.dir=runs/x",
            "data.train[0].path=other.parquet",
        ];
        let r = Recipe::parse(MINIMAL, &sets.map(String::from)).unwrap();
        assert_eq!(r.data.train[0].path, "other.parquet");
        assert_eq!(r.train.lr, 1e-4);
        assert_eq!(r.lora.targets, Targets::One("all-linear".into()));
        assert_eq!(r.output.dir, "runs/x");
    }

    #[test]
    fn unknown_keys_name_themselves_and_the_nearest_valid_key() {
        let e = err(MINIMAL, &["train.lerning_rate=1"]);
        assert!(e.contains("lerning_rate"), "{e}");
        let e = err(MINIMAL, &["train.setps=3"]);
        assert!(e.contains("setps") && e.contains("steps"), "{e}");
        let e = err(&MINIMAL.replace("[model]", "[modle]\n[model]"), &[]);
        assert!(e.contains("modle") && e.contains("model"), "{e}");
    }

    #[test]
    fn bad_values_are_clear() {
        assert!(err(MINIMAL, &["lora.r=0"]).contains("lora.r"));
        assert!(err(MINIMAL, &["train.micro_batch=\"four\""]).contains("micro_batch"));
        assert!(err(MINIMAL, &["model.dtype=f8"]).contains("f8"));
        let e = err(MINIMAL, &["model.quantize=int8"]);
        assert!(e.contains("int8") && e.contains("nf4"), "{e}");
        assert!(err(&MINIMAL.replace("steps = 10", ""), &[]).contains("train.steps"));
        let e = err(MINIMAL, &["model.hub_id=\"SmolLM2-135M\""]);
        assert!(e.contains("model.hub_id") && e.contains("org/name"), "{e}");
        let ok = Recipe::parse(MINIMAL, &["model.hub_id=\"org/Model-1B\"".into()]).unwrap();
        assert_eq!(ok.model.hub_id.as_deref(), Some("org/Model-1B"));
    }

    const PAIRS: &str = r#"
        [model]
        path = "m"
        [[data.train]]
        path = "pairs.parquet"
        format = "preference"
        [train]
        steps = 10
        objective = "dpo"
    "#;

    #[test]
    fn preference_objectives_read_their_sections_and_need_pairs() {
        let r = Recipe::parse(PAIRS, &[]).unwrap();
        assert_eq!(r.train.objective, Objective::Dpo);
        assert!(r.dpo.is_none(), "defaults are not written back");
        let dpo = r.dpo.unwrap_or_default();
        assert_eq!(
            (dpo.beta, dpo.loss, dpo.label_smoothing),
            (0.1, DpoLoss::Sigmoid, 0.0)
        );
        let r = Recipe::parse(PAIRS, &["dpo.loss=\"ipo\"".into(), "dpo.beta=0.5".into()]).unwrap();
        assert_eq!(
            r.dpo.as_ref().map(|d| (d.loss, d.beta)),
            Some((DpoLoss::Ipo, 0.5))
        );
        let r = Recipe::parse(
            PAIRS,
            &["train.objective=\"orpo\"".into(), "orpo.beta=0.2".into()],
        )
        .unwrap();
        assert_eq!(r.orpo.map(|o| o.beta), Some(0.2));

        assert!(err(PAIRS, &["train.objective=\"sft\""]).contains("preference pairs"));
        let text = PAIRS.replace("\"preference\"", "\"text\"");
        assert!(err(&text, &[]).contains("format \"text\""));
        assert!(err(PAIRS, &["dpo.beta=-1"]).contains("dpo.beta"));
        assert!(err(PAIRS, &["dpo.label_smoothing=0.5"]).contains("dpo.label_smoothing"));
        let e = err(PAIRS, &["dpo.loss=\"hinge\"", "dpo.label_smoothing=0.1"]);
        assert!(
            e.contains("dpo.label_smoothing") && e.contains("hinge"),
            "{e}"
        );
        assert!(err(PAIRS, &["dpo.loss=\"kto\""]).contains("kto"));
        let e = err(PAIRS, &["dpo.betta=1"]);
        assert!(e.contains("dpo.betta") && e.contains("beta"), "{e}");
        assert!(err(PAIRS, &["train.objective=\"orpo\"", "orpo.beta=0"]).contains("orpo.beta"));
    }

    #[test]
    fn shipped_recipes_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Recipe::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 3, "recipes/ should hold the three use-case recipes");
    }
}

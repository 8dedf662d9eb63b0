//! The model card (`README.md`) of a merged model: YAML front matter the Hugging Face Hub
//! reads (base_model, license, language, datasets, tags, and the held-out results as a
//! `model-index`), then what was merged and, when the adapter came from `loam train`, how it
//! was trained, what it did to the held-out loss, bits per byte, chrF++ and BLEU, and the
//! training plot.
//!
//! A `loam train` run directory holds `adapter/`, `recipe.toml`, `metrics.jsonl` and
//! `checkpoints/step-N/state.json`; the card uses whichever of them exist beside the adapter.

use crate::adapter::{AdapterConfig, Targets};
use crate::model::quant::Quantize;
use crate::recipe::Recipe;
use crate::train::held_out::HeldOutScores;
use crate::train::plot::{self, Curves};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use tch::Kind;

pub struct CardInput<'a> {
    /// The output directory being written.
    pub out: &'a Path,
    pub model_dir: &'a Path,
    /// `--model` as the user typed it.
    pub model_arg: &'a str,
    pub adapter_dir: &'a Path,
    pub adapter: &'a AdapterConfig,
    pub dtype: Kind,
    /// The base is 4-bit and the adapter was merged onto its dequantized weights.
    pub onto_dequantized: bool,
}

/// What the training run beside the adapter left, if anything.
#[derive(Default)]
struct Run {
    recipe: Option<Recipe>,
    losses: Vec<(f64, f64)>,
    eval_before: Option<f64>,
    eval_after: Option<f64>,
    /// All the held-out eval measured before the first step and at the last eval.
    held_out_before: Option<HeldOutScores>,
    held_out_after: Option<HeldOutScores>,
    curves: Curves,
}

/// Writes `README.md` (and `training_loss.svg` when there is a loss curve) into `input.out`.
pub fn write(input: &CardInput) -> Result<()> {
    let run = read_run(input.adapter_dir);
    let base_readme =
        std::fs::read_to_string(input.model_dir.join("README.md")).unwrap_or_default();
    let trained_on_4bit = trained_on_4bit(input.adapter, &run);
    // A QLoRA adapter merged onto the 16-bit model: that model is the base of the result.
    let base_model = input
        .adapter
        .base_model_name_or_path
        .clone()
        .filter(|s| !s.is_empty() && (trained_on_4bit.is_none() || input.onto_dequantized))
        .unwrap_or_else(|| input.model_arg.to_string());
    let cfg = input.adapter;

    let mut yaml = String::from("---\n");
    writeln!(yaml, "base_model: {}", quote(&base_model))?;
    if let Some(license) = front_matter(&base_readme, "license").first() {
        writeln!(yaml, "license: {}", quote(license))?;
    }
    yaml_list(
        &mut yaml,
        "language",
        &front_matter(&base_readme, "language"),
    )?;
    let datasets: Vec<String> = run
        .recipe
        .iter()
        .flat_map(|r| r.data.train.iter().map(|s| s.path.clone()))
        .collect();
    yaml_list(&mut yaml, "datasets", &datasets)?;
    writeln!(yaml, "library_name: transformers")?;
    writeln!(yaml, "pipeline_tag: text-generation")?;
    let mut tags = vec!["loam", "lora", "merged"];
    if cfg.use_dora {
        tags.push("dora");
    }
    if cfg.use_rslora {
        tags.push("rslora");
    }
    if trained_on_4bit.is_some() || input.onto_dequantized {
        tags.push("qlora");
    }
    yaml_list(
        &mut yaml,
        "tags",
        &tags.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )?;
    let title = input
        .out
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".tmp").to_string())
        .unwrap_or_default();
    if let (Some(after), Some(recipe)) = (&run.held_out_after, &run.recipe) {
        model_index(&mut yaml, &title, &eval_dataset(recipe), after)?;
    }
    yaml.push_str("---\n\n");

    let mut md = yaml;
    writeln!(md, "# {title}\n")?;
    writeln!(
        md,
        "`{base_model}` with a LoRA adapter merged into its weights by [loam](https://example.invalid/loam) \
         (`loam merge`), saved in {}. It loads like its base model: \
         `AutoModelForCausalLM.from_pretrained(\"<this dir>\")`.\n",
        crate::export::merge::torch_dtype_name(input.dtype)
    )?;
    if input.onto_dequantized {
        writeln!(
            md,
            "Merged onto the **dequantized 4-bit weights** of `{}` (bitsandbytes 4-bit, decoded \
             to f32, the adapter added): a 16-bit model that keeps the 4-bit rounding of its base. \
             It was not quantized again.\n",
            input.model_arg
        )?;
    } else if let Some(quantized) = &trained_on_4bit {
        writeln!(
            md,
            "The adapter was trained on a 4-bit base (QLoRA: {quantized}) and is merged here onto \
             the original 16-bit weights of `{}`.\n",
            input.model_arg
        )?;
    }
    writeln!(md, "## Adapter\n")?;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(
        md,
        "| method | {} |",
        if cfg.use_dora { "DoRA" } else { "LoRA" }
    )?;
    writeln!(md, "| r | {} |", cfg.r)?;
    writeln!(md, "| alpha | {} |", cfg.lora_alpha)?;
    writeln!(
        md,
        "| scaling | {} |",
        if cfg.use_rslora {
            "alpha / √r (rsLoRA)"
        } else {
            "alpha / r"
        }
    )?;
    let targets = match &cfg.target_modules {
        Targets::One(t) => t.clone(),
        Targets::List(list) => list.join(", "),
    };
    writeln!(md, "| target modules | {targets} |")?;
    writeln!(md, "| dropout | {} |\n", cfg.lora_dropout)?;

    if let Some(recipe) = &run.recipe {
        let t = &recipe.train;
        writeln!(md, "## Training\n")?;
        writeln!(md, "| | |\n|---|---|")?;
        if let Some(steps) = t.steps {
            writeln!(md, "| steps | {steps} |")?;
        }
        if let Some(epochs) = t.epochs {
            writeln!(md, "| epochs | {epochs} |")?;
        }
        writeln!(
            md,
            "| micro batch × grad accum | {} × {} |",
            t.micro_batch, t.grad_accum
        )?;
        writeln!(md, "| sequence length | {} |", recipe.data.seq_len)?;
        writeln!(
            md,
            "| learning rate | {} ({:?}, warmup {}) |",
            t.lr, t.schedule, t.warmup
        )?;
        writeln!(md, "| weight decay | {} |", t.weight_decay)?;
        writeln!(md, "| max grad norm | {} |", t.max_grad_norm)?;
        writeln!(md, "| compute dtype | {} |", recipe.model.dtype)?;
        writeln!(md, "| seed | {} |", t.seed)?;
        writeln!(md, "| data | {} |\n", datasets.join(", "))?;
    }
    if !run.losses.is_empty() || run.eval_after.is_some() {
        writeln!(md, "## Results\n")?;
        if let Some((step, loss)) = run.losses.last() {
            writeln!(md, "- training loss at step {step}: {loss:.4}")?;
        }
        match (run.eval_before, run.eval_after) {
            (Some(b), Some(a)) => writeln!(md, "- eval loss: {b:.4} → {a:.4}")?,
            (None, Some(a)) => writeln!(md, "- eval loss: {a:.4}")?,
            _ => {}
        }
        if let Some(after) = &run.held_out_after {
            held_out_lines(&mut md, run.held_out_before.as_ref(), after)?;
        }
        if run.losses.len() >= 2 {
            std::fs::write(input.out.join("training_loss.svg"), plot::svg(&run.curves)?)?;
            writeln!(md, "\n![training loss](training_loss.svg)")?;
        }
        md.push('\n');
    }
    std::fs::write(input.out.join("README.md"), md)
        .with_context(|| format!("cannot write {}", input.out.join("README.md").display()))
}

/// The 4-bit base the adapter was trained on, described, if it was: the run's recipe
/// quantized its model at load or named a 4-bit model, or the adapter's
/// `base_model_name_or_path` is a 4-bit model found here.
fn trained_on_4bit(adapter: &AdapterConfig, run: &Run) -> Option<String> {
    let is_4bit = |path: &str| {
        crate::hub::resolve_model(path)
            .ok()
            .and_then(|dir| crate::model::ModelSpec::from_model_dir(&dir).ok())
            .is_some_and(|spec| spec.quantization.is_some_and(|q| q.pre_quantized))
    };
    if let Some(recipe) = &run.recipe {
        let m = &recipe.model;
        if m.quantize != Quantize::None {
            let name = serde_json::to_value(m.quantize).ok()?.as_str()?.to_string();
            return Some(format!("`{}` quantized to {name} at load", m.path));
        }
        if is_4bit(&m.path) {
            return Some(format!("`{}`", m.path));
        }
    }
    let base = adapter.base_model_name_or_path.as_deref()?;
    is_4bit(base).then(|| format!("`{base}`"))
}

/// Reads the `loam train` run around `adapter_dir` (`<run>/adapter`); missing parts are skipped.
fn read_run(adapter_dir: &Path) -> Run {
    let Some(run_dir) = adapter_dir
        .canonicalize()
        .ok()
        .and_then(|d| d.parent().map(Path::to_path_buf))
    else {
        return Run::default();
    };
    let recipe_path = run_dir.join("recipe.toml");
    let recipe = recipe_path
        .exists()
        .then(|| Recipe::load(&recipe_path, &[]).ok())
        .flatten();
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let losses = metrics
        .iter()
        .filter_map(|m| Some((m["step"].as_f64()?, m["loss"].as_f64()?)))
        .collect();
    let eval_after = metrics.iter().rev().find_map(|m| m["eval_loss"].as_f64());
    let state = crate::train::checkpoint::latest(&run_dir)
        .ok()
        .flatten()
        .and_then(|c| std::fs::read_to_string(c.join("state.json")).ok())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    let eval_before = state
        .as_ref()
        .and_then(|v| v["state"]["eval_before"].as_f64());
    let held_out_before: Option<HeldOutScores> =
        state.and_then(|v| serde_json::from_value(v["state"]["held_out_before"].clone()).ok());
    let held_out_after = metrics.iter().rev().find_map(|m| {
        Some(HeldOutScores {
            loss: m["eval_loss"].as_f64()?,
            bits_per_byte: m["eval_bits_per_byte"].as_f64().unwrap_or(f64::NAN),
            chrf: m["eval_chrf"].as_f64(),
            bleu: m["eval_bleu"].as_f64(),
        })
    });
    let mut curves = Curves::from_metrics(&metrics);
    if let Some(b) = &held_out_before {
        curves.evals.insert(0, plot::EvalPoint::before_training(b));
    }
    Run {
        recipe,
        losses,
        eval_before,
        eval_after,
        held_out_before,
        held_out_after,
        curves,
    }
}

/// A top-level key of a README's YAML front matter: `key: value` or a `- item` list below it.
fn front_matter(readme: &str, key: &str) -> Vec<String> {
    let mut lines = readme.lines();
    if lines.next().map(str::trim) != Some("---") {
        return Vec::new();
    }
    let body: Vec<&str> = lines.take_while(|l| l.trim() != "---").collect();
    let unquote = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
    let Some(i) = body.iter().position(|l| l.starts_with(&format!("{key}:"))) else {
        return Vec::new();
    };
    let value = body[i][key.len() + 1..].trim();
    if !value.is_empty() {
        let value = value.trim_start_matches('[').trim_end_matches(']');
        return value
            .split(',')
            .map(unquote)
            .filter(|s| !s.is_empty())
            .collect();
    }
    body[i + 1..]
        .iter()
        .map_while(|l| l.trim_start().strip_prefix("- "))
        .map(unquote)
        .collect()
}

fn yaml_list(yaml: &mut String, key: &str, items: &[String]) -> std::fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(yaml, "{key}:")?;
    for item in items {
        writeln!(yaml, "- {}", quote(item))?;
    }
    Ok(())
}

/// A YAML scalar: a JSON string is valid YAML and escapes everything that needs it.
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The held-out results before → after, as the card's text.
fn held_out_lines(
    md: &mut String,
    before: Option<&HeldOutScores>,
    after: &HeldOutScores,
) -> std::fmt::Result {
    let rows = [
        (
            "bits per byte",
            before.map(|b| b.bits_per_byte).filter(|b| b.is_finite()),
            Some(after.bits_per_byte).filter(|b| b.is_finite()),
            4,
        ),
        ("chrF++", before.and_then(|b| b.chrf), after.chrf, 2),
        ("BLEU", before.and_then(|b| b.bleu), after.bleu, 2),
    ];
    for (name, b, a, digits) in rows {
        match (b, a) {
            (_, Some(a)) if !a.is_finite() => {}
            (Some(b), Some(a)) => writeln!(md, "- held-out {name}: {b:.digits$} → {a:.digits$}")?,
            (None, Some(a)) => writeln!(md, "- held-out {name}: {a:.digits$}")?,
            _ => {}
        }
    }
    Ok(())
}

/// The eval data as the card names it: the `[[data.eval]]` paths, or the train sources'
/// held-out fraction.
fn eval_dataset(recipe: &Recipe) -> String {
    let d = &recipe.data;
    if d.eval.is_empty() {
        let train: Vec<&str> = d.train.iter().map(|s| s.path.as_str()).collect();
        format!("{} (held-out {})", train.join(", "), d.eval_fraction)
    } else {
        d.eval
            .iter()
            .map(|s| s.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The held-out results after training as the Hub's `model-index` (what `huggingface_hub`
/// reads as the card's `eval_results`).
fn model_index(
    yaml: &mut String,
    name: &str,
    dataset: &str,
    after: &HeldOutScores,
) -> std::fmt::Result {
    writeln!(yaml, "model-index:")?;
    writeln!(yaml, "- name: {}", quote(name))?;
    writeln!(yaml, "  results:")?;
    writeln!(yaml, "  - task:")?;
    writeln!(yaml, "      type: text-generation")?;
    writeln!(yaml, "      name: Text Generation")?;
    writeln!(yaml, "    dataset:")?;
    writeln!(yaml, "      type: {}", quote(dataset))?;
    writeln!(yaml, "      name: {}", quote(dataset))?;
    writeln!(yaml, "      split: held-out")?;
    writeln!(yaml, "    metrics:")?;
    let metrics = [
        (
            "loss",
            "held-out loss (nats per trained token)",
            Some(after.loss),
        ),
        (
            "bits_per_byte",
            "held-out bits per byte",
            Some(after.bits_per_byte),
        ),
        ("chrf", "held-out chrF++", after.chrf),
        ("bleu", "held-out BLEU", after.bleu),
    ];
    for (kind, pretty, value) in metrics {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            writeln!(yaml, "    - type: {kind}")?;
            writeln!(yaml, "      value: {}", (v * 1e4).round() / 1e4)?;
            writeln!(yaml, "      name: {}", quote(pretty))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_reads_scalars_inline_lists_and_block_lists() {
        let readme = "---\nlicense: apache-2.0\nlanguage:\n- en\n- cy\ntags: [a, \"b\"]\n---\n# x\nlicense: no\n";
        assert_eq!(front_matter(readme, "license"), ["apache-2.0"]);
        assert_eq!(front_matter(readme, "language"), ["en", "cy"]);
        assert_eq!(front_matter(readme, "tags"), ["a", "b"]);
        assert!(front_matter(readme, "datasets").is_empty());
        assert!(front_matter("# no front matter\nlicense: mit\n", "license").is_empty());
    }
}

//! The model cards (`README.md`) of what a training run produces: the PEFT adapter
//! (`library_name: peft`, `base_model_relation: adapter`) and the merged model
//! (`base_model_relation: finetune`). YAML front matter the Hugging Face Hub reads —
//! `base_model` (a Hub id, never a local path), the base's `license`, the data's `language`,
//! `datasets` where they are Hub ids, tags, and every held-out metric the run measured as a
//! `model-index` — then what was trained, on what, how, and with what result.
//!
//! A `loam train` run directory holds `adapter/`, `recipe.toml`, `metrics.jsonl`,
//! `data_provenance.json` and `checkpoints/step-N/state.json`; the card uses whichever of
//! them exist beside the adapter.

use super::front_matter::{quote, Yaml};
use super::identity::{Identity, RELATION};
use crate::adapter::{AdapterConfig, Targets};
use crate::model::quant::Quantize;
use crate::recipe::Recipe;
use crate::train::held_out::HeldOutScores;
use crate::train::plot::{self, Curves};
use anyhow::{Context, Result};
use loam_data::provenance::Provenance;
use std::fmt::Write as _;
use std::path::Path;
use tch::Kind;

/// The file beside `recipe.toml` in a run directory that records where the training data
/// came from (from the Parquet files' metadata).
pub const PROVENANCE_FILE: &str = "data_provenance.json";

/// Which card.
pub enum Card {
    /// The PEFT adapter directory `loam train` writes.
    Adapter,
    /// A merged model in `dtype`; `onto_dequantized`: merged onto a 4-bit base's decoded weights.
    Merged { dtype: Kind, onto_dequantized: bool },
}

pub struct CardInput<'a> {
    /// The output directory being written.
    pub out: &'a Path,
    /// The base model the adapter was trained on (or merged onto).
    pub base: &'a Identity,
    pub adapter_dir: &'a Path,
    pub adapter: &'a AdapterConfig,
    pub card: Card,
    /// Held-out scores measured after training by `loam eval --json` (`loam merge
    /// --eval-results`), over what the run's last eval measured.
    pub eval_results: Option<HeldOutScores>,
}

/// The held-out scores in a `loam eval --json` report.
pub fn read_eval_results(path: &Path) -> Result<HeldOutScores> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .with_context(|| format!("{}: not the JSON `loam eval --json` prints", path.display()))?;
    let Some(loss) = v["loss"].as_f64() else {
        anyhow::bail!(
            "{}: no `loss`; pass the JSON that `loam eval --json` printed for this adapter",
            path.display()
        );
    };
    Ok(HeldOutScores {
        loss,
        bits_per_byte: v["bits_per_byte"].as_f64().unwrap_or(f64::NAN),
        chrf: v["chrf"].as_f64(),
        bleu: v["bleu"].as_f64(),
    })
}

/// What the training run beside the adapter left, if anything.
#[derive(Default)]
struct Run {
    recipe: Option<Recipe>,
    provenance: Option<Provenance>,
    losses: Vec<(f64, f64)>,
    eval_before: Option<f64>,
    eval_after: Option<f64>,
    /// All the held-out eval measured before the first step and at the last eval.
    held_out_before: Option<HeldOutScores>,
    held_out_after: Option<HeldOutScores>,
    curves: Curves,
}

/// The name a fine-tune of `base` on data in `languages` goes by: `SmolLM2 135M Instruct
/// cy-lora` (the GGUF's `general.name`, the card's title).
pub fn finetune_label(languages: &[String]) -> String {
    let own: Vec<&str> = languages
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "en")
        .collect();
    if own.is_empty() {
        "lora".to_string()
    } else {
        format!("{}-lora", own.join("-"))
    }
}

/// Writes `README.md` (and `training_loss.svg` when there is a loss curve) into `input.out`.
pub fn write(input: &CardInput) -> Result<()> {
    let mut run = read_run(input.adapter_dir);
    if let Some(scores) = &input.eval_results {
        run.eval_after = Some(scores.loss);
        run.held_out_after = Some(*scores);
    }
    let cfg = input.adapter;
    let base = input.base;
    let merged = matches!(input.card, Card::Merged { .. });
    let trained_on_4bit = trained_on_4bit(cfg, &run);
    let languages = match &run.provenance {
        Some(p) if !p.languages.is_empty() => p.languages.clone(),
        _ => base.languages.clone(),
    };
    let finetune = finetune_label(&languages);
    let name = format!("{} {finetune}", base.name);

    let base_id = base.hub_id_or_ancestor();
    let relation = if merged { "finetune" } else { "adapter" };
    let mut yaml = lineage(base, relation, &languages, &name, &finetune);
    let datasets: Vec<String> = run
        .provenance
        .iter()
        .filter_map(|p| p.hub_id.clone())
        .collect();
    yaml.list("datasets", &datasets);
    yaml.scalar("library_name", if merged { "transformers" } else { "peft" });
    yaml.scalar("pipeline_tag", "text-generation");
    let mut tags = vec!["loam", "lora"];
    if merged {
        tags.push("merged");
    }
    if cfg.use_dora {
        tags.push("dora");
    }
    if cfg.use_rslora {
        tags.push("rslora");
    }
    if trained_on_4bit.is_some()
        || matches!(
            input.card,
            Card::Merged {
                onto_dequantized: true,
                ..
            }
        )
    {
        tags.push("qlora");
    }
    yaml.list("tags", &tags);
    if let Some(after) = &run.held_out_after {
        yaml.raw(&model_index(&name, &eval_dataset(&run), after));
    }

    let mut md = yaml.finish();
    let base_named = match base_id {
        Some(id) => format!("[{id}](https://huggingface.co/{id})"),
        None => format!("{} (its Hub id was not given)", base.name),
    };
    writeln!(md, "# {name}\n")?;
    match input.card {
        Card::Merged {
            dtype,
            onto_dequantized,
        } => {
            writeln!(
                md,
                "{base_named} with a LoRA adapter merged into its weights by loam (`loam merge`), \
                 saved in {}. It loads like its base model, with \
                 `AutoModelForCausalLM.from_pretrained` on this repository.\n",
                crate::export::merge::torch_dtype_name(dtype)
            )?;
            if onto_dequantized {
                writeln!(
                    md,
                    "Merged onto the **dequantized 4-bit weights** of its base (bitsandbytes 4-bit, \
                     decoded to f32, the adapter added): a 16-bit model that keeps the 4-bit \
                     rounding of its base. It was not quantized again.\n"
                )?;
            } else if let Some(quantized) = &trained_on_4bit {
                writeln!(
                    md,
                    "The adapter was trained on a 4-bit base (QLoRA: {quantized}) and is merged \
                     here onto the original 16-bit weights.\n"
                )?;
            }
        }
        Card::Adapter => {
            writeln!(
                md,
                "A LoRA adapter for {base_named}, trained by loam (`loam train`) and saved as \
                 PEFT saves one: load it with `PeftModel.from_pretrained(base, <this repository>)` \
                 on top of its base model, or merge it with `loam merge`.\n"
            )?;
            if let Some(quantized) = &trained_on_4bit {
                writeln!(md, "Trained on a 4-bit base (QLoRA: {quantized}).\n")?;
            }
        }
    }
    if let Some(p) = &run.provenance {
        data_section(&mut md, p)?;
    }
    adapter_section(&mut md, cfg)?;
    if let Some(recipe) = &run.recipe {
        training_section(&mut md, recipe)?;
    }
    if !run.losses.is_empty() || run.eval_after.is_some() {
        writeln!(md, "## Results\n")?;
        if let Some((step, loss)) = run.losses.last() {
            writeln!(md, "- training loss at step {step}: {loss:.4}")?;
        }
        match (run.eval_before, run.eval_after) {
            (Some(b), Some(a)) => writeln!(md, "- held-out loss: {b:.4} → {a:.4}")?,
            (None, Some(a)) => writeln!(md, "- held-out loss: {a:.4}")?,
            _ => {}
        }
        if let Some(after) = &run.held_out_after {
            held_out_lines(&mut md, run.held_out_before.as_ref(), after)?;
        }
        writeln!(md, "\nHeld out: {}; never trained on.", eval_dataset(&run))?;
        if run.losses.len() >= 2 {
            std::fs::write(input.out.join("training_loss.svg"), plot::svg(&run.curves)?)?;
            writeln!(md, "\n![training loss](training_loss.svg)")?;
        }
        md.push('\n');
    }
    if base.license.is_some() {
        writeln!(
            md,
            "## Licence\n\nThe weights carry the licence of the base model ({}).\n",
            base.license.as_deref().unwrap_or_default()
        )?;
    }
    std::fs::write(input.out.join("README.md"), md)
        .with_context(|| format!("cannot write {}", input.out.join("README.md").display()))
}

/// The README.md of a model directory loam derived from `base` without training it (an
/// extended vocabulary): it names the base (`base_model_relation: finetune`, the Hub's
/// closest relation), keeps its licence and languages, and says what was done in `body`.
pub fn write_derived(out: &Path, base: &Identity, label: &str, body: &str) -> Result<()> {
    let name = format!("{} {label}", base.name);
    let mut yaml = lineage(base, "finetune", &base.languages, &name, label);
    yaml.scalar("library_name", "transformers");
    yaml.list("tags", &["loam", label]);
    let md = format!("{}# {name}\n\n{body}\n", yaml.finish());
    let path = out.join("README.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))
}

/// The front matter every card of a model made from `base` starts with: the base's Hub id
/// and how this model relates to it (both left out when the id is unknown: never a local
/// path), the base's licence, the languages, and the names GGUF's `general.*` reuse.
fn lineage(
    base: &Identity,
    relation: &str,
    languages: &[String],
    name: &str,
    finetune: &str,
) -> Yaml {
    let base_id = base.hub_id_or_ancestor();
    let mut yaml = Yaml::default();
    yaml.maybe("base_model", base_id);
    if base_id.is_some() {
        yaml.scalar(RELATION, relation);
    }
    yaml.maybe("license", base.license.as_deref());
    yaml.list("language", languages);
    yaml.scalar("model_name", name);
    yaml.maybe("basename", base.basename.as_deref());
    yaml.scalar("finetune", finetune);
    yaml
}

fn data_section(md: &mut String, p: &Provenance) -> std::fmt::Result {
    writeln!(md, "## Data\n\n{}.\n", p.description.trim_end_matches('.'))?;
    if !p.licenses.is_empty() {
        writeln!(md, "Licences of the sources: {}.\n", p.licenses.join(", "))?;
    }
    if !p.sources.is_empty() {
        writeln!(
            md,
            "| source | package | licence | rows |\n|---|---|---|---|"
        )?;
        for s in &p.sources {
            writeln!(
                md,
                "| {} | {} | {} | {} |",
                s.name,
                s.package.as_deref().unwrap_or("—"),
                s.license.as_deref().unwrap_or("—"),
                s.rows
            )?;
        }
        md.push('\n');
    }
    Ok(())
}

fn adapter_section(md: &mut String, cfg: &AdapterConfig) -> std::fmt::Result {
    writeln!(md, "## Adapter\n")?;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(
        md,
        "| method | {} |",
        if cfg.use_dora { "DoRA" } else { "LoRA" }
    )?;
    writeln!(md, "| r | {} |", cfg.r)?;
    writeln!(md, "| alpha | {} |", cfg.lora_alpha)?;
    let scaling = if cfg.use_rslora {
        "alpha / √r (rsLoRA)"
    } else {
        "alpha / r"
    };
    writeln!(md, "| scaling | {scaling} |")?;
    let targets = match &cfg.target_modules {
        Targets::One(t) => t.clone(),
        Targets::List(list) => list.join(", "),
    };
    writeln!(md, "| target modules | {targets} |")?;
    writeln!(md, "| dropout | {} |\n", cfg.lora_dropout)
}

fn training_section(md: &mut String, recipe: &Recipe) -> std::fmt::Result {
    let t = &recipe.train;
    writeln!(md, "## Training\n")?;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(md, "| objective | {:?} |", t.objective)?;
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
    let files: Vec<String> = recipe
        .data
        .train
        .iter()
        .map(|s| file_name(&s.path))
        .collect();
    writeln!(md, "| data | {} |\n", files.join(", "))
}

/// A data path as a card may name it: its file name (a card never holds a local path).
fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
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
            return Some(format!("quantized to {name} at load"));
        }
        if is_4bit(&m.path) {
            return Some("a bitsandbytes 4-bit checkpoint".to_string());
        }
    }
    let base = adapter.base_model_name_or_path.as_deref()?;
    is_4bit(base).then(|| "a bitsandbytes 4-bit checkpoint".to_string())
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
    let provenance = std::fs::read_to_string(run_dir.join(PROVENANCE_FILE))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
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
        provenance,
        losses,
        eval_before,
        eval_after,
        held_out_before,
        held_out_after,
        curves,
    }
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

/// The held-out data as the card names it (never a path): its Hub id, the data's own
/// description, or the eval files' names.
fn eval_dataset(run: &Run) -> String {
    if let Some(id) = run.provenance.as_ref().and_then(|p| p.hub_id.clone()) {
        return id;
    }
    let Some(recipe) = &run.recipe else {
        return "the held-out split".to_string();
    };
    let d = &recipe.data;
    if d.eval.is_empty() {
        let train: Vec<String> = d.train.iter().map(|s| file_name(&s.path)).collect();
        format!("{} of {} (by hash)", d.eval_fraction, train.join(", "))
    } else {
        d.eval
            .iter()
            .map(|s| file_name(&s.path))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The held-out results after training as the Hub's `model-index` (what `huggingface_hub`
/// reads as the card's `eval_results`).
fn model_index(name: &str, dataset: &str, after: &HeldOutScores) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "model-index:");
    let _ = writeln!(y, "- name: {}", quote(name));
    let _ = writeln!(y, "  results:");
    let _ = writeln!(y, "  - task:");
    let _ = writeln!(y, "      type: text-generation");
    let _ = writeln!(y, "      name: Text Generation");
    let _ = writeln!(y, "    dataset:");
    let _ = writeln!(y, "      type: {}", quote(dataset));
    let _ = writeln!(y, "      name: {}", quote(dataset));
    let _ = writeln!(y, "      split: held-out");
    let _ = writeln!(y, "    metrics:");
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
            let _ = writeln!(y, "    - type: {kind}");
            let _ = writeln!(y, "      value: {}", (v * 1e4).round() / 1e4);
            let _ = writeln!(y, "      name: {}", quote(pretty));
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finetune_label_names_the_languages_other_than_english() {
        assert_eq!(finetune_label(&["en".into(), "cy".into()]), "cy-lora");
        assert_eq!(finetune_label(&["en".into()]), "lora");
        assert_eq!(finetune_label(&[]), "lora");
    }
}

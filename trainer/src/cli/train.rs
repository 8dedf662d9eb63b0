//! `loam train RECIPE.toml [--set key=value]... [--resume] [--out DIR]`

use crate::recipe::Recipe;
use crate::train;
use crate::train::held_out::HeldOutScores;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args)]
pub struct TrainArgs {
    /// The recipe (TOML): model, lora, data, train, output.
    recipe: PathBuf,
    /// Override any recipe key, e.g. --set train.lr=1e-4 --set lora.r=32.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Continue from the latest checkpoint in the output directory.
    #[arg(long)]
    resume: bool,
    /// Checkpoint and stop after N steps of this invocation (the schedule still spans
    /// train.steps); continue later with --resume.
    #[arg(long, value_name = "N")]
    stop_after: Option<u64>,
    /// Output directory (overrides output.dir).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut sets = args.sets;
    if let Some(out) = &args.out {
        sets.push(format!("output.dir={:?}", out.display().to_string()));
    }
    let recipe = Recipe::load(&args.recipe, &sets)?;
    // A preference loss is not a next-token NLL: no perplexity for it.
    let perplexity = recipe.train.objective == crate::recipe::Objective::Sft;
    // Ctrl-C: finish the current step, write a checkpoint, exit. A second Ctrl-C kills.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (checkpoint follows); Ctrl-C again to kill");
    });
    let s = train::run(
        recipe,
        train::RunControl {
            resume: args.resume,
            stop,
            stop_after: args.stop_after,
        },
    )?;
    // Only rank 0 of a data-parallel run reports and writes the summary.
    if !s.finished || !s.writer {
        return Ok(());
    }
    let evals = match (s.eval_loss_before, s.eval_loss_after) {
        (Some(b), Some(a)) if !perplexity => format!("eval loss {b:.4} → {a:.4}\n"),
        (Some(b), Some(a)) => format!(
            "eval loss {b:.4} → {a:.4}  (perplexity {:.2} → {:.2})\n{}",
            b.exp(),
            a.exp(),
            held_out_lines(s.eval_before, s.eval_after)
        ),
        _ => String::new(),
    };
    let tokens_per_s = s.tokens as f64 / s.wall_s.max(1e-9);
    eprintln!(
        "\ndone: {} steps, {} trained tokens in {:.1}s ({tokens_per_s:.0} tokens/s), peak memory {}\n{evals}adapter: {}\nmetrics: {}",
        s.steps,
        s.tokens,
        s.wall_s,
        crate::runtime::peak_rss_human(),
        s.out_dir.join("adapter").display(),
        s.out_dir.join("metrics.jsonl").display(),
    );
    // The same, for scripts: summary.json beside the adapter.
    let mut json = serde_json::to_value(&s)?;
    json["tokens_per_s"] = tokens_per_s.into();
    json["peak_rss_bytes"] = crate::runtime::peak_rss_bytes().into();
    json["adapter"] = s.out_dir.join("adapter").display().to_string().into();
    std::fs::write(
        s.out_dir.join("summary.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}

/// Bits per byte, and chrF++ / BLEU when the evals generated, before → after.
fn held_out_lines(before: Option<HeldOutScores>, after: Option<HeldOutScores>) -> String {
    let (Some(b), Some(a)) = (before, after) else {
        return String::new();
    };
    let mut lines = String::new();
    if b.bits_per_byte.is_finite() && a.bits_per_byte.is_finite() {
        lines = format!(
            "eval bits/byte {:.4} → {:.4}\n",
            b.bits_per_byte, a.bits_per_byte
        );
    }
    for (name, b, a) in [("chrF++", b.chrf, a.chrf), ("BLEU", b.bleu, a.bleu)] {
        if let (Some(b), Some(a)) = (b, a) {
            lines.push_str(&format!("eval {name} {b:.2} → {a:.2}\n"));
        }
    }
    lines
}

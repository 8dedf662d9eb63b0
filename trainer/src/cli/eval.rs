//! `loam eval`: loss, perplexity and bits per byte of a model on a Parquet dataset, and with
//! `--generate` chrF++ / BLEU / exact match of its answers to the rows' prompts.

use crate::eval::generation::{self, GenerationOptions, Task};
use crate::eval::{self, EvalExample};
use crate::export::card::identity::Identity;
use crate::export::card::model as card;
use crate::train::held_out::HeldOutScores;
use anyhow::{bail, Context, Result};
use clap::Args;
use loam_data::source::Source;
use loam_data::{Format, TrainOn};
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: super::ModelArgs,
    #[command(flatten)]
    source: super::SourceArgs,
    /// Which tokens carry loss, as in training: all | assistant | last_assistant | completion.
    #[arg(long, default_value = "assistant", value_parser = parse_train_on)]
    train_on: TrainOn,
    /// Rows longer than this many tokens are truncated.
    #[arg(long, default_value_t = 1024)]
    seq_len: usize,
    /// Print one JSON object on stdout: {"loss", "perplexity", "tokens", "rows",
    /// "bits_per_byte", "bytes", "bits_per_char", "chars"} (with --generate also "chrf",
    /// "bleu", "exact_match", "looping", "stopped", "generated").
    #[arg(long)]
    json: bool,
    /// Also answer each row's prompt (chat: the turns before the last assistant turn;
    /// prompt_completion: the prompt; alpaca: instruction + input) and score the answers
    /// against the reference with chrF++, BLEU and exact match.
    #[arg(long)]
    generate: bool,
    /// --generate: new tokens per answer at most.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// --generate: write one JSON line per row (prompt, reference, prediction, chrf) here.
    #[arg(long, value_name = "FILE.jsonl")]
    predictions: Option<PathBuf>,
    /// --generate: prompts answered together.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[command(flatten)]
    sampling: super::generate::SamplingArgs,
    /// With --adapter: record these held-out results (loss, bits per byte, and with
    /// --generate chrF++ and BLEU) in the adapter's model card (README.md `model-index`), so
    /// the adapter published from it shows what was measured.
    #[arg(long)]
    card: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.predictions.is_some() && !args.generate {
        bail!("--predictions writes the answers of --generate; add --generate");
    }
    if args.card && args.model.adapter.is_none() {
        bail!("--card records the results in an adapter's model card; add --adapter DIR");
    }
    let sampling = args.sampling.sampling()?;
    let (lm, dir) = args.model.load()?;
    let source_config = args.source.config()?;
    if source_config.format == Format::Preference {
        bail!(
            "--format preference: pairs are scored by training with train.objective = \"dpo\" or \"orpo\" (held-out pairs in [[data.eval]] or data.eval_fraction report the loss and rewards); loam eval scores single sequences"
        );
    }
    let source = Source::open(0, &source_config)?;

    let encoder = args
        .model
        .encoder(&dir, args.train_on, source_config.add_eos)?;
    let opts = encoder.options();
    let mut tasks = Vec::new();
    let examples = source.rows().map(|row| -> Result<EvalExample> {
        let row = row?;
        let sample = row.sample?;
        let at = || format!("at {}", row.loc);
        if args.generate {
            tasks.push(Task::of(&encoder, &sample).with_context(at)?);
        }
        eval::encode_for_eval(&encoder, &sample, &opts, args.seq_len).with_context(at)
    });
    let mut result = eval::evaluate_rows(&lm, examples, args.seq_len, Some(source.num_rows()))?;
    if args.generate {
        let gen = GenerationOptions {
            max_new_tokens: args.max_new_tokens,
            sampling,
            batch_size: args.batch_size,
        };
        let predictions = generation::predict(&lm, &encoder, &tasks, &gen)?;
        if let Some(path) = &args.predictions {
            generation::write_predictions(path, &predictions)?;
        }
        result.generation = Some(generation::score(&predictions));
    }
    if let (true, Some(adapter_dir)) = (args.card, &args.model.adapter) {
        let base = Identity::of_adapter_base(
            &dir,
            &args.model.model,
            adapter_dir,
            None,
            "base_model_name_or_path",
        )?;
        card::write(&card::CardInput {
            out: adapter_dir,
            base: &base,
            adapter_dir,
            adapter: &crate::adapter::read_config(adapter_dir)?,
            card: card::Card::Adapter,
            eval_results: Some(HeldOutScores::from(&result)),
        })?;
        tracing::info!(
            "recorded the results in {}",
            adapter_dir.join("README.md").display()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "loss {:.4}  perplexity {:.3}  bits/byte {:.4}  over {} predicted tokens ({} bytes of text) in {} rows ({})",
            result.loss,
            result.perplexity,
            result.bits_per_byte,
            result.tokens,
            result.bytes,
            result.rows,
            source_config.path
        );
        if let Some(g) = &result.generation {
            println!(
                "chrF++ {:.2}  BLEU {:.2}  exact match {:.1}%  looping {:.1}%  stopped {:.1}%  over {} generated answers",
                g.chrf,
                g.bleu,
                100.0 * g.exact_match,
                100.0 * g.looping,
                100.0 * g.stopped,
                g.generated
            );
        }
    }
    Ok(())
}

/// `all | assistant | last_assistant | completion`, spelled as in recipes.
pub(crate) fn parse_train_on(s: &str) -> Result<TrainOn, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("`{s}` is not one of all, assistant, last_assistant, completion"))
}

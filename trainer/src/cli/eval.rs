//! `loam eval`: loss and perplexity of a model on a Parquet dataset.

use crate::eval;
use anyhow::{Context, Result};
use clap::Args;
use loam_data::encode::Encoder;
use loam_data::source::Source;
use loam_data::{Example, Tokenizer, TrainOn};

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
    /// Print one JSON object on stdout: {"loss", "perplexity", "tokens", "rows"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let (lm, dir) = args.model.load()?;
    let tokenizer = Tokenizer::from_model_dir(&dir)?;
    let source_config = args.source.config()?;
    let source = Source::open(0, &source_config)?;

    let encoder = Encoder::new(tokenizer, None, args.train_on, source_config.add_eos)?;
    let examples = source.rows().map(|row| -> Result<Example> {
        let row = row?;
        let sample = row.sample?;
        encoder
            .encode(&sample)
            .with_context(|| format!("at {}", row.loc))
    });
    let result = eval::evaluate(&lm, examples, args.seq_len, Some(source.num_rows()))?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "loss {:.4}  perplexity {:.3}  over {} predicted tokens in {} rows ({})",
            result.loss, result.perplexity, result.tokens, result.rows, source_config.path
        );
    }
    Ok(())
}

/// `all | assistant | last_assistant | completion`, spelled as in recipes.
pub(crate) fn parse_train_on(s: &str) -> Result<TrainOn, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("`{s}` is not one of all, assistant, last_assistant, completion"))
}

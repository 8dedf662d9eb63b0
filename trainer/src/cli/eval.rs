//! `loam eval`: loss and perplexity of a model on a Parquet dataset.

use crate::{eval, hub, model, runtime};
use anyhow::{Context, Result};
use clap::Args;
use loam_data::source::Source;
use loam_data::{Example, Format, Sample, SourceConfig, Tokenizer};

#[derive(Args)]
pub struct EvalArgs {
    /// Model directory (Hugging Face layout) or a hub id in the local Hugging Face cache.
    #[arg(long)]
    model: String,
    /// Parquet file, directory of *.parquet, or glob of shards.
    #[arg(long)]
    data: String,
    /// Row format: text | alpaca | chat | prompt_completion.
    #[arg(long, default_value = "text")]
    format: String,
    /// The main column (default: `text` for text, `messages` for chat).
    #[arg(long)]
    column: Option<String>,
    /// Rows longer than this many tokens are truncated.
    #[arg(long, default_value_t = 1024)]
    seq_len: usize,
    /// Print one JSON object on stdout: {"loss", "perplexity", "tokens", "rows"}.
    #[arg(long)]
    json: bool,
    /// Compute dtype: f32 | bf16 | f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// auto | cpu | cuda | cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let kind = runtime::parse_dtype(&args.dtype)?;
    let device = runtime::parse_device(&args.device)?;
    let dir = hub::resolve_model(&args.model)?;
    let lm = model::load(&dir, kind, device)?;
    let tokenizer = Tokenizer::from_model_dir(&dir)?;
    let mut source_config = SourceConfig::new(&args.data, Format::parse(&args.format)?);
    source_config.column = args.column.clone();
    let source = Source::open(0, &source_config)?;

    let examples = source.rows().map(|row| -> Result<Example> {
        let row = row?;
        let sample = row.sample.with_context(|| format!("at {}", row.loc))?;
        match sample {
            Sample::Text { text } => {
                let input_ids = tokenizer.try_encode_text(&text, source_config.add_eos)?;
                let labels = input_ids.iter().map(|&id| id as i64).collect();
                Ok(Example { input_ids, labels })
            }
            other => anyhow::bail!("{}: eval of {other:?} rows is not wired yet", row.loc),
        }
    });
    let result = eval::evaluate(&lm, examples, args.seq_len, Some(source.num_rows()))?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "loss {:.4}  perplexity {:.3}  over {} predicted tokens in {} rows ({})",
            result.loss, result.perplexity, result.tokens, result.rows, args.data
        );
    }
    Ok(())
}

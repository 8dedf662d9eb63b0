//! `loam vocab extend`: new tokens for a language, learned on a corpus.

use crate::export::card::identity::Identity;
use crate::hub;
use crate::vocab::extend::{self, ExtendOptions};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum VocabCommand {
    /// Learn N new tokens on a corpus and write the model with them: extended tokenizer
    /// (new BPE merges after the base's), resized embeddings, a fertility report.
    Extend(ExtendArgs),
}

#[derive(Args)]
pub struct ExtendArgs {
    /// Base model directory (Hugging Face layout) or a hub id in the local Hugging Face cache.
    #[arg(long)]
    model: String,
    /// The text to learn from (of chat, alpaca and prompt/completion rows: every text field).
    #[command(flatten)]
    source: super::SourceArgs,
    /// How many tokens to add.
    #[arg(long)]
    new_tokens: usize,
    /// Output directory: a complete model directory.
    #[arg(long)]
    out: PathBuf,
    /// Share of the rows held out to measure the new tokens on (never learned from).
    #[arg(long, default_value_t = 0.05)]
    held_out: f64,
    /// A pair of tokens must occur this often in the corpus to become a new token.
    #[arg(long, default_value_t = 2)]
    min_count: u64,
    /// Print the report as one JSON object on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// The base model's Hugging Face repo id (`org/name`), for the new directory's README.md
    /// (and so the cards of what is trained from it). Default: the Hugging Face cache folder
    /// --model is in, or --model's README.md.
    #[arg(long, value_name = "ORG/NAME")]
    base_model_id: Option<String>,
}

pub fn run(command: VocabCommand) -> Result<()> {
    let VocabCommand::Extend(args) = command;
    let started = Instant::now();
    let opts = ExtendOptions {
        data: args.source.config()?,
        new_tokens: args.new_tokens,
        held_out: args.held_out,
        min_count: args.min_count,
        force: args.force,
    };
    let model_dir = hub::resolve_model(&args.model)?;
    let base = Identity::of_base(
        &model_dir,
        &args.model,
        args.base_model_id.as_deref(),
        "--base-model-id",
    )?;
    let report = extend::extend(&model_dir, &args.model, &base, &args.out, &opts)?;
    base.warn_if_unlinked("--base-model-id");
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.summary(&args.out, 20));
    }
    tracing::info!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

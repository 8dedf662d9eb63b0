//! `loam merge`: bake a PEFT adapter into its base model and write a Hugging Face model dir.

use crate::export::card::identity::Identity;
use crate::export::card::model as card;
use crate::export::merge;
use crate::{hub, runtime};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct MergeArgs {
    /// Base model directory (Hugging Face layout) or a hub id in the local Hugging Face cache.
    #[arg(long)]
    model: String,
    /// The PEFT LoRA adapter directory to merge (e.g. `<run>/adapter` from `loam train`).
    #[arg(long)]
    adapter: PathBuf,
    /// Output directory: a complete model directory transformers loads.
    #[arg(long)]
    out: PathBuf,
    /// Output dtype: f32 | bf16 | f16 (default: the base checkpoint's). Merging is in f32.
    #[arg(long)]
    dtype: Option<String>,
    /// Largest safetensors shard, e.g. 5GB, 500MB, 2GiB.
    #[arg(long, default_value = "5GB")]
    shard_size: String,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// --model is a 4-bit (bitsandbytes) model: merge onto its dequantized weights. Without
    /// it a 4-bit --model is refused: merge a QLoRA adapter onto the original 16-bit model.
    #[arg(long)]
    onto_dequantized: bool,
    /// The base model's Hugging Face repo id (`org/name`) for the model card's `base_model`.
    /// Default: the adapter's `base_model_name_or_path` when it is one, the Hugging Face
    /// cache folder --model is in, or --model's README.md.
    #[arg(long, value_name = "ORG/NAME")]
    base_model_id: Option<String>,
    /// `loam eval --json` output for this adapter on the held-out data (with --generate:
    /// chrF++ and BLEU): the model card's results, over what training's last eval measured.
    #[arg(long, value_name = "EVAL.json")]
    eval_results: Option<PathBuf>,
}

pub fn run(args: MergeArgs) -> Result<()> {
    let started = Instant::now();
    // Merging is copies and one small matmul per layer: libtorch's OpenMP workers only spin
    // (measured on SmolLM2-135M, 2 cores: 2-3 s with one thread, 8-9 s with two).
    tch::set_num_threads(1);
    let opts = merge::MergeOptions {
        dtype: args
            .dtype
            .as_deref()
            .map(runtime::parse_dtype)
            .transpose()?,
        shard_size: merge::parse_size(&args.shard_size)?,
        force: args.force,
        onto_dequantized: args.onto_dequantized,
    };
    let model_dir = hub::resolve_model(&args.model)?;
    let base = Identity::of_adapter_base(
        &model_dir,
        &args.model,
        &args.adapter,
        args.base_model_id.as_deref(),
        "--base-model-id",
    )?;
    let eval_results = args
        .eval_results
        .as_deref()
        .map(card::read_eval_results)
        .transpose()?;
    let s = merge::merge(
        &model_dir,
        &base,
        eval_results,
        &args.adapter,
        &args.out,
        &opts,
    )?;
    base.warn_if_unlinked("--base-model-id");
    eprintln!(
        "merged {} of {} tensors into {} ({}, {:.1} MB in {} shard{}) in {:.1}s, peak memory {}",
        s.merged,
        s.tensors,
        args.out.display(),
        runtime::dtype_name(s.dtype),
        s.total_bytes as f64 / 1e6,
        s.shards,
        if s.shards == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        runtime::peak_rss_human(),
    );
    Ok(())
}

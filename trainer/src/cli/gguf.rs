//! `loam gguf export | import | export-adapter`: to and from llama.cpp's GGUF.

use crate::export::card::identity::{self, Identity};
use crate::{gguf, hub};
use anyhow::Result;
use clap::{Args, Subcommand};
use loam_gguf::GgmlType;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct GgufArgs {
    #[command(subcommand)]
    command: GgufCommand,
}

#[derive(Subcommand)]
enum GgufCommand {
    /// Write a model directory as a GGUF file for llama.cpp, with an Ollama Modelfile beside it.
    Export(ExportArgs),
    /// Turn a GGUF file (llama or qwen2) into a Hugging Face model directory in f32.
    Import(ImportArgs),
    /// Write a PEFT LoRA adapter as llama.cpp's LoRA GGUF (`llama-cli --lora`, Ollama's ADAPTER).
    ExportAdapter(ExportAdapterArgs),
}

#[derive(Args)]
struct ExportAdapterArgs {
    /// The PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: PathBuf,
    /// The base model it was trained on (a directory, or a hub id in the local cache).
    #[arg(long)]
    model: String,
    /// The LoRA GGUF file to write.
    #[arg(long)]
    out: PathBuf,
    /// The base model's GGUF (from `loam gguf export`): also write an Ollama Modelfile beside
    /// the adapter, `FROM` this file with an `ADAPTER` line.
    #[arg(long)]
    base_gguf: Option<PathBuf>,
    /// Replace an existing output file (and Modelfile).
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// Model directory (Hugging Face layout, e.g. from `loam merge`) or a hub id in the local cache.
    #[arg(long)]
    model: String,
    /// The GGUF file to write.
    #[arg(long)]
    out: PathBuf,
    /// Tensor type of the weight matrices: f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 (norms and
    /// biases stay f32).
    #[arg(long = "type", default_value = "f16")]
    ty: String,
    /// Replace an existing output file (and Modelfile).
    #[arg(long)]
    force: bool,
    /// The Hugging Face repo id (`org/name`) of the model this one was trained from, for
    /// `general.base_model.*`. Default: what the model's README.md says (`loam merge` writes it).
    #[arg(long, value_name = "ORG/NAME")]
    base_model_id: Option<String>,
}

#[derive(Args)]
struct ImportArgs {
    /// The GGUF file to read.
    file: PathBuf,
    /// The model directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
    /// The model's Hugging Face repo id (`org/name`), kept in the directory's README.md so
    /// that the cards of what is trained from it name their base. Default: a Hub URL among
    /// the GGUF's `general.*` keys.
    #[arg(long, value_name = "ORG/NAME")]
    hub_id: Option<String>,
    /// The chat template, in place of the GGUF's own or for a base model that has none: a
    /// built-in one by name (chatml, gemma, llama3, phi3), a .jinja file, or inline Jinja.
    /// Generation then stops on its end-of-turn token too.
    #[arg(long, value_name = "NAME|FILE.jinja")]
    chat_template: Option<String>,
}

pub fn run(args: GgufArgs) -> Result<()> {
    match args.command {
        GgufCommand::Export(a) => {
            let ty: GgmlType =
                a.ty.parse()
                    .map_err(|e| anyhow::anyhow!("--type {}: {e}", a.ty))?;
            let dir = hub::resolve_model(&a.model)?;
            if let Some(id) = &a.base_model_id {
                identity::check_hub_id(id, "--base-model-id")?;
            }
            let model = Identity::of(&dir, &a.model, None);
            let start = Instant::now();
            let done = gguf::export(
                &dir,
                &model,
                a.base_model_id.as_deref(),
                &a.out,
                ty,
                a.force,
            )?;
            tracing::info!(
                "wrote {} ({} tensors, {ty}) and {} in {:.1}s",
                done.gguf.display(),
                done.tensors,
                done.modelfile.display(),
                start.elapsed().as_secs_f64()
            );
        }
        GgufCommand::ExportAdapter(a) => {
            let dir = hub::resolve_model(&a.model)?;
            let done =
                gguf::export_adapter(&a.adapter, &dir, &a.out, a.base_gguf.as_deref(), a.force)?;
            tracing::info!(
                "wrote {} ({} adapted linears, adapter.lora.alpha {}){}",
                done.gguf.display(),
                done.modules,
                done.alpha,
                done.modelfile
                    .map_or(String::new(), |m| format!(" and {}", m.display()))
            );
        }
        GgufCommand::Import(a) => {
            let start = Instant::now();
            if let Some(id) = &a.hub_id {
                identity::check_hub_id(id, "--hub-id")?;
            }
            let template = a
                .chat_template
                .as_deref()
                .map(|t| loam_data::template::setting_source("--chat-template", t))
                .transpose()?;
            gguf::import(
                &a.file,
                &a.out,
                a.hub_id.as_deref(),
                template.as_ref(),
                a.force,
            )?;
            tracing::info!(
                "wrote {} in {:.1}s",
                a.out.display(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

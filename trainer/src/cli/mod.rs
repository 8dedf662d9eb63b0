//! The `loam` command line. Each subcommand parses its flags here and calls the library.

mod data;
mod eval;
mod generate;
mod gguf;
mod merge;
mod train;
mod vocab;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `loam --version`: the version, and which collective backends were built in.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ndata parallel (c10d): ",
    env!("LOAM_C10D_BACKENDS")
);

#[derive(Parser)]
#[command(
    name = "loam",
    version = VERSION,
    about = "LoRA fine-tuning for open language models: train, eval, merge, export"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a LoRA adapter from a recipe.
    Train(train::TrainArgs),
    /// Loss and perplexity of a model on a Parquet dataset.
    Eval(eval::EvalArgs),
    /// Answer prompts with a model (and an adapter, unmerged), streaming the text.
    Generate(generate::GenerateArgs),
    /// Merge a LoRA adapter into its base model: a complete Hugging Face model directory.
    Merge(merge::MergeArgs),
    /// Look at a recipe's data as training sees it.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Export a model to llama.cpp's GGUF, or import a GGUF as a model directory.
    Gguf(gguf::GgufArgs),
    /// A bigger vocabulary for a language: new tokens learned on a corpus.
    #[command(subcommand)]
    Vocab(vocab::VocabCommand),
}

pub fn run() -> Result<()> {
    init_logging();
    crate::runtime::install_panic_hook();
    match Cli::parse().command {
        Command::Train(args) => {
            crate::runtime::keep_freed_memory();
            train::run(args)
        }
        Command::Eval(args) => {
            crate::runtime::keep_freed_memory();
            eval::run(args)
        }
        Command::Generate(args) => generate::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Gguf(args) => gguf::run(args),
        Command::Data(command) => data::run(command),
        Command::Vocab(command) => vocab::run(command),
    }
}

/// The model a command runs: where it is, an adapter on top, dtype and device.
#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Model directory (Hugging Face layout) or a hub id in the local Hugging Face cache.
    #[arg(long)]
    model: String,
    /// A PEFT LoRA adapter directory to apply (not merged) on top of the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Compute dtype: f32 | bf16 | f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// auto | cpu | cuda | cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Quantize the linears to 4 bits at load: none | nf4 | fp4 (a bitsandbytes 4-bit
    /// model is 4-bit anyway).
    #[arg(long, default_value = "none", value_parser = crate::model::quant::Quantize::parse)]
    quantize: crate::model::quant::Quantize,
    /// The chat template, in place of the model's own (or for a model that has none): a
    /// built-in one by name (chatml, gemma, llama3, phi3), a .jinja file, or inline Jinja.
    #[arg(long, value_name = "NAME|FILE.jinja")]
    chat_template: Option<String>,
}

impl ModelArgs {
    /// The model (with its adapter attached), and its resolved directory.
    pub(crate) fn load(&self) -> Result<(crate::model::CausalLm, PathBuf)> {
        let kind = crate::runtime::parse_dtype(&self.dtype)?;
        let device = crate::runtime::parse_device(&self.device)?;
        let dir = crate::hub::resolve_model(&self.model)?;
        let mut lm = crate::model::load_with(&dir, kind, device, self.quantize, &[])?;
        if let Some(adapter_dir) = &self.adapter {
            crate::adapter::load(&mut lm, adapter_dir)?;
            // these commands never train: trained token rows go into the weights once
            lm.fold_trainable_tokens();
        }
        Ok((lm, dir))
    }

    /// The encoder for the model in `dir`: its tokenizer, and the chat template
    /// `--chat-template` names, else the one the adapter was trained with (`loam train` saves
    /// it beside the adapter when the recipe set one), else the model's own.
    pub(crate) fn encoder(
        &self,
        dir: &std::path::Path,
        train_on: loam_data::TrainOn,
        add_eos: bool,
    ) -> Result<loam_data::encode::Encoder> {
        use loam_data::template::{install, setting_source};
        let tokenizer = loam_data::Tokenizer::from_model_dir(dir)?;
        let source = match (&self.chat_template, &self.adapter) {
            (Some(t), _) => Some(setting_source("--chat-template", t)?),
            (None, Some(adapter)) => install::trained_with(adapter)?,
            (None, None) => None,
        };
        let template = source
            .map(|s| loam_data::ChatTemplate::new(&s, tokenizer.special_tokens()))
            .transpose()?;
        loam_data::encode::Encoder::new(tokenizer, template, train_on, add_eos)
    }
}

/// The rows a command reads: a Parquet source and its format.
#[derive(Args)]
pub(crate) struct SourceArgs {
    /// Parquet file, directory of *.parquet, or glob of shards.
    #[arg(long)]
    data: String,
    /// Row format: text | alpaca | chat | prompt_completion.
    #[arg(long, default_value = "text")]
    format: String,
    /// The main column (default: `text` for text, `messages` for chat).
    #[arg(long)]
    column: Option<String>,
}

impl SourceArgs {
    pub(crate) fn config(&self) -> Result<loam_data::SourceConfig> {
        let format = loam_data::Format::parse(&self.format)?;
        let mut config = loam_data::SourceConfig::new(&self.data, format);
        config.column = self.column.clone();
        Ok(config)
    }
}

/// `RUST_LOG` filters; by default loam's own info messages and everyone's warnings, on stderr.
fn init_logging() {
    // In a data-parallel run the ranks other than 0 log warnings only.
    let rank = crate::dist::World::from_env().map_or(0, |w| w.rank);
    let default = if rank == 0 {
        "warn,loam=info,loam_data=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

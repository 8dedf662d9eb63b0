//! `loam data preview RECIPE` and `loam data stats RECIPE`: look at the data exactly as
//! training will see it, before spending compute on it.

use crate::hub;
use crate::recipe::Recipe;
use anyhow::Result;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use loam_data::encode::Encoder;
use loam_data::preview::{render_marked, trained_tokens, Marks};
use loam_data::source::Source;
use loam_data::stream::{BatchStream, Split};
use loam_data::Tokenizer;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Print the first rendered samples of each train source, trained spans marked.
    Preview(PreviewArgs),
    /// Rows, tokens, trained tokens, truncated / dropped / skipped rows, padding waste.
    Stats(StatsArgs),
}

#[derive(Args)]
pub struct PreviewArgs {
    recipe: PathBuf,
    /// Samples per source.
    #[arg(long, short, default_value_t = 3)]
    n: usize,
    /// Override recipe keys, as for `loam train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(Args)]
pub struct StatsArgs {
    recipe: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Preview(args) => preview(args),
        DataCommand::Stats(args) => stats(args),
    }
}

/// The recipe and the encoder training would use (the model's tokenizer and template).
fn setup(recipe: &Path, sets: &[String]) -> Result<(Recipe, Encoder)> {
    let recipe = Recipe::load(recipe, sets)?;
    let model_dir = hub::resolve_model(&recipe.model.path)?;
    let encoder = Encoder::new(
        Tokenizer::from_model_dir(&model_dir)?,
        None,
        recipe.data.train_on,
        true,
    )?;
    Ok((recipe, encoder))
}

fn preview(args: PreviewArgs) -> Result<()> {
    let (recipe, encoder) = setup(&args.recipe, &args.sets)?;
    let marks = if std::io::stdout().is_terminal() {
        Marks::Color
    } else {
        Marks::Brackets
    };
    let legend = match marks {
        Marks::Color => "trained tokens in green",
        Marks::Brackets => "trained tokens inside [[ ]]",
    };
    let train_on = serde_json::to_value(recipe.data.train_on)?;
    println!("train_on = {train_on}; {legend}");
    for (index, source_config) in recipe.data.train.iter().enumerate() {
        let source = Source::open(index, source_config)?;
        println!(
            "\n=== source {index}: {} ({} rows, format {})",
            source_config.path,
            source.num_rows(),
            source_config.format.name()
        );
        for row in source.rows().take(args.n) {
            let row = row?;
            let sample = row.sample?;
            let options = loam_data::stream::EncodeOptions {
                add_eos: source_config.add_eos,
                train_on: recipe.data.train_on,
            };
            let example = encoder.encode_with(&sample, &options)?;
            println!(
                "\n--- {}: {} tokens, {} trained{}",
                row.loc,
                example.input_ids.len(),
                trained_tokens(&example),
                if example.input_ids.len() > recipe.data.seq_len {
                    format!(" (longer than seq_len {})", recipe.data.seq_len)
                } else {
                    String::new()
                }
            );
            println!("{}", render_marked(&example, encoder.tokenizer(), marks)?);
        }
    }
    Ok(())
}

fn stats(args: StatsArgs) -> Result<()> {
    let (recipe, encoder) = setup(&args.recipe, &args.sets)?;
    let stream = BatchStream::new(&recipe.data, Split::Train, recipe.train.seed, 0, 1, encoder)?;
    let bar = ProgressBar::new(stream.total_rows());
    bar.set_style(
        ProgressStyle::with_template("stats {bar:30} {pos}/{len} rows  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let stats = stream.epoch_stats(recipe.train.micro_batch, |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    println!(
        "one epoch of the train split (seq_len {}, packing {}):",
        recipe.data.seq_len, recipe.data.packing
    );
    println!("{}", stats.summary());
    Ok(())
}

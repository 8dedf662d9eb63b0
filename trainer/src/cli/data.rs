//! `loam data preview RECIPE` and `loam data stats RECIPE`: look at the data exactly as
//! training will see it, before spending compute on it. `loam data gettext`: build a
//! translation dataset from the gettext catalogs installed for a language.

use crate::hub;
use crate::recipe::Recipe;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use loam_data::encode::Encoder;
use loam_data::gettext;
use loam_data::preview::{render_marked, trained_tokens, Marks};
use loam_data::source::Source;
use loam_data::stream::{BatchStream, Split};
use loam_data::Tokenizer;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Print the first rendered samples of each train source, trained spans marked.
    Preview(PreviewArgs),
    /// Rows, tokens, trained tokens, truncated / dropped / skipped rows, padding waste.
    Stats(StatsArgs),
    /// Build a translation chat dataset (English → a language) from the gettext catalogs
    /// (.mo) installed for that language: OUT/train.parquet, OUT/dev.parquet, OUT/eval.parquet.
    Gettext(GettextArgs),
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

#[derive(Args)]
pub struct GettextArgs {
    /// The language: its locale directory name (cy, eu, ga, pt_BR, sr@latin). Regional
    /// variants are not mixed in: `pt` reads pt/, not pt_BR/.
    #[arg(long, default_value = "cy")]
    lang: String,
    /// Output directory: train.parquet, dev.parquet, eval.parquet, summary.json and the
    /// dataset card README.md.
    #[arg(long)]
    out: PathBuf,
    /// Where to look for LANG/LC_MESSAGES/*.mo (repeatable). Default: /usr/share/locale,
    /// /usr/share/locale-langpack and /usr/local/share/locale, unless .mo files are given.
    #[arg(long = "locale-dir", value_name = "DIR")]
    locale_dirs: Vec<PathBuf>,
    /// .mo files to read (any problem with one is an error; with none, the locale
    /// directories are searched).
    #[arg(value_name = "CATALOG.mo")]
    catalogs: Vec<PathBuf>,
    /// The language's name in the prompt ("Translate into NAME:"). Default: from the code.
    #[arg(long)]
    language_name: Option<String>,
    /// Share of distinct English messages held out in eval.parquet (by a hash of the message).
    #[arg(long, default_value_t = 0.05)]
    eval_fraction: f64,
    /// Share set aside in dev.parquet, the development split to tune a recipe on (never on
    /// eval.parquet, which a model's card reports); 0: none.
    #[arg(long, default_value_t = 0.05)]
    dev_fraction: f64,
    /// Which messages are held out, and the row order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Leave out messages longer than this many characters (either side).
    #[arg(long, default_value_t = 1000)]
    max_chars: usize,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Preview(args) => preview(args),
        DataCommand::Stats(args) => stats(args),
        DataCommand::Gettext(args) => gettext(args),
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
            let shown = match loam_data::preference::sides(&example) {
                Some([chosen, rejected]) => vec![(" chosen", chosen), (" rejected", rejected)],
                None => vec![("", example)],
            };
            for (side, example) in shown {
                println!(
                    "\n--- {}{side}: {} tokens, {} trained{}",
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

fn gettext(args: GettextArgs) -> Result<()> {
    let started = Instant::now();
    let out = &args.out;
    if out.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace it",
            out.display()
        );
    }
    let data = gettext::build(&gettext::Options {
        lang: args.lang,
        language_name: args.language_name,
        locale_dirs: args.locale_dirs,
        catalogs: args.catalogs,
        eval_fraction: args.eval_fraction,
        dev_fraction: args.dev_fraction,
        seed: args.seed,
        max_chars: args.max_chars,
    })?;
    // Written under a temporary name and renamed: OUT is complete or absent.
    let tmp = PathBuf::from(format!("{}.tmp", out.display()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = (|| -> Result<()> {
        let provenance = data.provenance();
        let mut splits = vec![("train.parquet", &data.train), ("eval.parquet", &data.eval)];
        if args.dev_fraction > 0.0 {
            splits.push(("dev.parquet", &data.dev));
        }
        for (file, rows) in splits {
            gettext::write_parquet(&tmp.join(file), rows, &data.language, &provenance)?;
        }
        crate::export::card::dataset::write(&tmp, &data, &provenance)?;
        let summary = serde_json::to_string_pretty(&data.summary)?;
        std::fs::write(tmp.join("summary.json"), summary + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    crate::fsutil::replace_dir(&tmp, out)?;
    println!("{}", data.summary.report());
    println!(
        "wrote {} (train, dev, eval .parquet and the card README.md) in {:.2} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

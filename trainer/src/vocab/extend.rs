//! `loam vocab extend`: the base model and a corpus in, a complete model directory out, with
//! N new tokens learned on the corpus.
//!
//! 1. read the corpus once: each learn row's pre-tokens as base ids (counted), and the base
//!    tokenizer's fertility on both parts;
//! 2. learn the merges (`loam_data::vocab::learn_merges`);
//! 3. write `OUT.tmp`: the extended `tokenizer.json`, `config.json` with the new `vocab_size`,
//!    the weights with resized embedding / output head (`resize`), the other tokenizer and
//!    generation files;
//! 4. read the corpus again for the extended tokenizer's fertility, write the report, rename
//!    `OUT.tmp` to `OUT`.

use super::report::{self, PartReport, Report};
use super::resize;
use crate::export::card::identity::Identity;
use crate::export::shards;
use crate::fsutil;
use crate::model::ModelSpec;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use loam_data::vocab::corpus::Chunk;
use loam_data::vocab::{self, CorpusReader, Fertility, WordCounts};
use loam_data::{SourceConfig, Tokenizer};
use std::path::Path;

/// Files copied from the base as they are (the slow-tokenizer files `vocab.json`,
/// `merges.txt`, `added_tokens.json` and `tokenizer.model` are not: they would describe the
/// old vocabulary).
const SIDE_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];
const STALE_FILES: &[&str] = &[
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "tokenizer.model",
];

/// Rows read and encoded at once.
const CHUNK_ROWS: usize = 1024;
/// Weight names whose rows are tokens.
const TOKEN_ROWS: &[&str] = &["model.embed_tokens.weight", "lm_head.weight"];

pub struct ExtendOptions {
    pub data: SourceConfig,
    pub new_tokens: usize,
    /// Share of the rows held out (measured, never learned from).
    pub held_out: f64,
    /// A pair must occur this often to become a token.
    pub min_count: u64,
    pub force: bool,
}

/// Extends the model in `model_dir` (resolved; `model_arg` as the user named it,
/// `base_identity` what its README.md names it) into `out`.
pub fn extend(
    model_dir: &Path,
    model_arg: &str,
    base_identity: &Identity,
    out: &Path,
    opts: &ExtendOptions,
) -> Result<Report> {
    if out.exists() && !opts.force {
        bail!(
            "{} already exists; pass --force to replace it",
            out.display()
        );
    }
    if opts.new_tokens == 0 {
        bail!("--new-tokens must be at least 1");
    }
    let spec = ModelSpec::from_model_dir(model_dir)?;
    let tokenizer_file = model_dir.join("tokenizer.json");
    let base = Tokenizer::from_model_dir(model_dir)?;
    vocab::check_supported(base.inner(), &tokenizer_file)?;
    let corpus = CorpusReader::open(&opts.data, opts.held_out)?;

    // 1. the corpus as the base tokenizer segments it
    let mut words = WordCounts::default();
    let (mut learn_before, mut held_before) = (Fertility::default(), Fertility::default());
    read_corpus(&corpus, "base tokenizer", |chunk| {
        words.add_texts(&base, &chunk.learn)?;
        learn_before.add(&base, &chunk.learn)?;
        held_before.add(&base, &chunk.held_out)
    })?;
    if learn_before.texts == 0 {
        bail!(
            "{}: no text to learn from (every row is empty or held out); give more rows or a \
             smaller --held-out",
            opts.data.path
        );
    }

    // 2. the merges
    let ext = vocab::learn_merges(&base, words, opts.new_tokens, opts.min_count);
    if ext.tokens.is_empty() {
        bail!(
            "{}: no pair of base tokens occurs {} times or more, so there is nothing to merge; \
             use a larger corpus",
            opts.data.path,
            opts.min_count
        );
    }
    if ext.tokens.len() < opts.new_tokens {
        tracing::warn!(
            "only {} of the {} new tokens asked for: no other pair of tokens occurs {} times or \
             more in the corpus",
            ext.tokens.len(),
            opts.new_tokens,
            opts.min_count
        );
    }
    let tokenizer_size = i64::from(ext.vocab_len());
    if i64::from(ext.first_id) > spec.vocab_size {
        bail!(
            "{}: the tokenizer has {} ids but the model only {} embedding rows (vocab_size)",
            tokenizer_file.display(),
            ext.first_id,
            spec.vocab_size
        );
    }
    let vocab_size = resize::padded_vocab_size(spec.vocab_size, tokenizer_size);

    // 3. the model directory
    fsutil::build_dir(out, |tmp| {
        let extended = vocab::extended_tokenizer(&tokenizer_file, &ext)?;
        vocab::tokenizer_json::save(&extended, &tmp.join("tokenizer.json"))?;
        fsutil::copy_present(model_dir, tmp, SIDE_FILES)?;
        for name in STALE_FILES.iter().filter(|n| model_dir.join(n).exists()) {
            tracing::warn!(
                "{name} of the base is not copied: tokenizer.json holds the extended vocabulary"
            );
        }
        shards::write_config(model_dir, tmp, |config| {
            config.insert("vocab_size".into(), vocab_size.into());
        })?;
        write_weights(model_dir, tmp, vocab_size, &ext)?;

        // 4. fertility after
        let extended = Tokenizer::from_model_dir(tmp)?;
        let (mut learn_after, mut held_after) = (Fertility::default(), Fertility::default());
        read_corpus(&corpus, "extended tokenizer", |chunk| {
            learn_after.add(&extended, &chunk.learn)?;
            held_after.add(&extended, &chunk.held_out)
        })?;
        let report = Report {
            base_model: model_arg.to_string(),
            data: opts.data.path.clone(),
            new_tokens_asked: opts.new_tokens,
            first_new_id: ext.first_id,
            tokenizer_size: ext.vocab_len(),
            vocab_size_before: spec.vocab_size,
            vocab_size,
            tie_word_embeddings: spec.tie_word_embeddings,
            new_token_ids: ext.tokens.iter().map(|t| t.id).collect(),
            new_tokens: report::token_entries(&ext),
            learn: PartReport::new(&learn_before, &learn_after),
            held_out: PartReport::new(&held_before, &held_after),
        };
        report.write(tmp)?;
        let body = format!(
            "Its tokenizer extended by `loam vocab extend` with {} new tokens learned from `{}` \
             (rows {}..{} of the vocabulary, each initialised to the mean of the rows of the base \
             tokens it replaces). Not trained yet: train the new rows with \
             `lora.trainable_tokens = \"new\"`.",
            ext.tokens.len(),
            Path::new(&opts.data.path).file_name().map_or_else(
                || opts.data.path.clone(),
                |n| n.to_string_lossy().into_owned()
            ),
            ext.first_id,
            ext.vocab_len(),
        );
        crate::export::card::model::write_derived(tmp, base_identity, "extended-vocab", &body)?;
        Ok(report)
    })
}

/// One pass over the corpus, `each` called per chunk of rows, with a progress bar.
fn read_corpus(
    corpus: &CorpusReader,
    what: &str,
    mut each: impl FnMut(&Chunk) -> Result<()>,
) -> Result<()> {
    let bar = ProgressBar::new(corpus.num_rows());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} rows  {{per_sec}}  eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    corpus.for_each_chunk(CHUNK_ROWS, |chunk| {
        each(chunk)?;
        bar.inc(chunk.rows as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// The base checkpoint with its token rows resized, in its own dtype and sharding.
fn write_weights(
    model_dir: &Path,
    out: &Path,
    vocab_size: i64,
    ext: &vocab::Extension,
) -> Result<()> {
    let mut entries = shards::list_tensors(model_dir)?;
    let dtype = shards::saved_dtype(&entries);
    let shard_size = largest_shard(model_dir);
    for e in entries
        .iter_mut()
        .filter(|e| TOKEN_ROWS.contains(&e.name.as_str()))
    {
        e.shape[0] = vocab_size;
    }
    shards::write_tensors(model_dir, &entries, dtype, shard_size, out, |e, base| {
        Ok(if TOKEN_ROWS.contains(&e.name.as_str()) {
            resize::resized_rows(&base, vocab_size, ext)
        } else {
            base
        })
    })?;
    Ok(())
}

/// One file stays one file; a sharded base is written in shards of transformers' default
/// 5 GB.
fn largest_shard(model_dir: &Path) -> u64 {
    if model_dir.join("model.safetensors.index.json").exists() {
        5_000_000_000
    } else {
        u64::MAX
    }
}

//! The corpus new tokens are learned from: the text of every row of a Parquet source, read a
//! chunk of rows at a time (memory stays flat), each row in the learn part or the held-out
//! part. Rows are held out by the same hash of file name and row index as `data.eval_fraction`
//! ([`crate::stream::is_held_out`]), so a held-out row is never learned from.

use anyhow::Result;

use crate::source::Source;
use crate::stream::is_held_out;
use crate::{Sample, SourceConfig};

/// Which part of the corpus a row is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpusPart {
    /// New tokens are learned from these rows.
    Learn,
    /// Only measured: how the new tokens do on text they were not learned from.
    HeldOut,
}

/// Up to `rows` rows' texts, by part.
#[derive(Debug, Default)]
pub struct Chunk {
    pub rows: usize,
    pub learn: Vec<String>,
    pub held_out: Vec<String>,
}

impl Chunk {
    pub fn part(&self, part: CorpusPart) -> &[String] {
        match part {
            CorpusPart::Learn => &self.learn,
            CorpusPart::HeldOut => &self.held_out,
        }
    }
}

/// A Parquet source read as text.
pub struct CorpusReader {
    source: Source,
    held_out_fraction: f64,
}

impl CorpusReader {
    pub fn open(config: &SourceConfig, held_out_fraction: f64) -> Result<CorpusReader> {
        if !(0.0..1.0).contains(&held_out_fraction) {
            anyhow::bail!("the held-out fraction must be in [0, 1), got {held_out_fraction}");
        }
        Ok(CorpusReader {
            source: Source::open(0, config)?,
            held_out_fraction,
        })
    }

    pub fn num_rows(&self) -> u64 {
        self.source.num_rows()
    }

    /// Calls `each` with every `rows_per_chunk` rows, in file order. A row that cannot be read
    /// is an error naming its file, row and column.
    pub fn for_each_chunk(
        &self,
        rows_per_chunk: usize,
        mut each: impl FnMut(&Chunk) -> Result<()>,
    ) -> Result<()> {
        let mut chunk = Chunk::default();
        for row in self.source.rows() {
            let row = row?;
            let sample = row.sample?;
            let texts = match is_held_out(&row.loc, self.held_out_fraction) {
                true => &mut chunk.held_out,
                false => &mut chunk.learn,
            };
            texts.extend(texts_of(sample).into_iter().filter(|t| !t.is_empty()));
            chunk.rows += 1;
            if chunk.rows >= rows_per_chunk {
                each(&chunk)?;
                chunk = Chunk::default();
            }
        }
        if chunk.rows > 0 {
            each(&chunk)?;
        }
        Ok(())
    }
}

/// The running text of a sample: a text row's text, each message of a chat, a prompt and its
/// completion. Each is segmented on its own (no template markup is learned).
fn texts_of(sample: Sample) -> Vec<String> {
    match sample {
        Sample::Text { text } => vec![text],
        Sample::Chat { messages } => messages.into_iter().map(|m| m.content).collect(),
        Sample::PromptCompletion { prompt, completion } => vec![prompt, completion],
        Sample::Preference {
            prompt,
            chosen,
            rejected,
        } => [prompt, chosen, rejected]
            .iter()
            .flat_map(|t| t.texts())
            .map(String::from)
            .collect(),
    }
}

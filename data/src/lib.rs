//! loam-data: everything from Parquet bytes to token batches. No libtorch.
//!
//! The flow, one module per stage:
//! `source` (Parquet row groups) → `format` (rows → [`Sample`]) → `template` (chat template)
//! → `tokenize` ([`Sample`] → [`Example`]; `fast_bpe` is its fast path for byte-level BPE)
//! → `stream` (mix, shuffle, epochs) → `pack` ([`Batch`]).
//!
//! What the trainer and the CLI call:
//! - [`DataConfig`] / [`SourceConfig`]: the recipe's `[data]` table. [`DataConfig::from_toml`]
//!   checks keys ([`config::check_data_keys`]) and values; [`suggest`],
//!   [`config::check_keys`] and [`config::explain_serde_error`] give "did you mean" hints for
//!   the rest of the recipe.
//! - [`source::eval_samples`]`(&SourceConfig, OnError)`: every row of a source in file order
//!   as `(Location, Sample)`, for `loam eval` and `loam data preview`;
//!   [`source::Source::open`] + `rows()` for the raw rows (bad rows included as `Err`).
//! - [`stream::BatchStream::new`]`(&DataConfig, Split, seed, rank, world, encoder)`, then
//!   `next_batch(micro_batch)`, `cursor()` / `restore(Cursor)`, `stats()`; and
//!   `BatchStream::{has_eval, eval_examples, count_batches}`. The encoder is any
//!   `Fn(&Sample, &EncodeOptions) -> anyhow::Result<Example>` ([`stream::Encode`]).
//! - [`eval_split::eval_rows`]`(&DataConfig)`: the eval split row by row with each row's
//!   sample (for held-out generation); [`trained_text`]: the bytes and characters behind a
//!   row's trained tokens (`Encoder::trained_text_size`, the denominator of bits per byte).
//! - [`stats::DataStats`]: what `loam data stats` prints.
//! - [`vocab`]: new BPE merges learned on a corpus on top of a tokenizer's own
//!   (`loam vocab extend`), the extended `tokenizer.json`, and tokens per byte / word.
//! - [`gettext::build`] + [`gettext::write_parquet`]: a translation chat dataset from the
//!   gettext catalogs (`.mo`) installed for a language (`loam data gettext`), with its
//!   [`provenance::Provenance`] (catalogs, Debian packages, licences) in the files' metadata.
//!
//! Every error is a [`DataError`] whose message names the file, row group / row and column
//! (or the recipe key) and what to do.

/// A conversation turn, OpenAI style.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One row of a dataset after its format was applied, before tokenization.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// Raw text for continued pre-training: every token is trained.
    Text { text: String },
    /// A chat; the template renders it, `train_on` decides which turns are trained.
    Chat { messages: Vec<Message> },
    /// A prompt and its completion (alpaca rows become this too).
    PromptCompletion { prompt: String, completion: String },
    /// A preference pair: one prompt, the completion preferred and the one rejected
    /// (DPO / ORPO). All three plain text, or all three messages (TRL's conventions).
    Preference {
        prompt: PairText,
        chosen: PairText,
        rejected: PairText,
    },
}

/// The prompt or a completion of a preference pair.
#[derive(Debug, Clone, PartialEq)]
pub enum PairText {
    /// A string: the completion continues the prompt's text.
    Plain(String),
    /// Messages, rendered with the chat template: the prompt's turns, or the assistant's reply.
    Messages(Vec<Message>),
}

impl PairText {
    /// The running text: the string, or each message's content.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            PairText::Plain(text) => vec![text],
            PairText::Messages(messages) => messages.iter().map(|m| m.content.as_str()).collect(),
        }
    }
}

/// Label value of a position that is not trained (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// One tokenized row: `labels[i]` is the target *at* position i (`input_ids[i]` or
/// [`IGNORE_INDEX`]); the trainer shifts by one, as transformers does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Example {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    /// A preference pair: `input_ids[..n]` is the prompt + chosen sequence and
    /// `input_ids[n..]` the prompt + rejected one. Pairs are never packed.
    pub rejected_start: Option<usize>,
}

/// A micro-batch of `rows × seq_len` tokens, row-major.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub rows: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    /// Unshifted, like [`Example::labels`]; padding is [`IGNORE_INDEX`].
    pub labels: Vec<i64>,
    /// Restart at 0 at each document inside a packed row.
    pub position_ids: Vec<i64>,
    /// Document index within its row (0, 1, …); padding gets -1. Attention stays inside a document.
    pub doc_ids: Vec<i64>,
}

/// Which tokens of a sample carry loss (recipe key `data.train_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainOn {
    /// Every token.
    All,
    /// Every assistant turn's content and its end-of-turn token.
    #[default]
    Assistant,
    /// Only the last assistant turn.
    LastAssistant,
    /// The completion of a prompt/completion (or alpaca) sample.
    Completion,
}

pub mod template;
pub mod tokenize;
pub use template::ChatTemplate;
pub use tokenize::Tokenizer;

pub mod config;
pub mod encode;
pub mod error;
pub mod eval_split;
mod fast_bpe;
pub mod format;
pub mod gettext;
pub mod pack;
pub mod preference;
pub mod preview;
pub mod provenance;
pub mod source;
pub mod stats;
pub mod stream;
#[cfg(test)]
mod testutil;
pub mod trained_text;
pub mod vocab;

pub use config::{suggest, DataConfig, Format, OnError, Overlong, SourceConfig};
pub use error::{DataError, Location};
pub use stats::DataStats;
pub use stream::{BatchStream, Cursor, EncodeOptions, Split};
pub use trained_text::TextSize;

//! Counts for `loam data stats` and the training log: rows, tokens, trained tokens, what was
//! truncated / dropped / split / skipped, and how much of each batch is padding.

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// How many skip reasons are kept verbatim (the rest are only counted).
const KEPT_REASONS: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStats {
    /// Rows read from Parquet (including held-out and skipped ones).
    pub rows_read: u64,
    /// Rows of train sources held out for eval (`eval_fraction`), not trained on.
    pub held_out: u64,
    /// Bad rows skipped under `on_error = "skip"`.
    pub skipped: u64,
    /// The first few skip messages (file, row, column, reason).
    pub skip_reasons: Vec<String>,
    /// Rows that became examples.
    pub examples: u64,
    /// Of those, preference pairs (each two sequences: chosen and rejected).
    #[serde(default)]
    pub pairs: u64,
    /// Tokens of those examples, before over-long handling.
    pub tokens: u64,
    /// Examples longer than `seq_len`, by what was done with them.
    pub truncated: u64,
    pub dropped: u64,
    pub split: u64,
    /// Tokens cut off by truncation or lost by dropping.
    pub tokens_lost: u64,
    /// Batches and sequences (batch rows) produced.
    pub batches: u64,
    pub sequences: u64,
    /// Documents placed in sequences (a split example counts once per piece).
    pub documents: u64,
    /// Token slots in batches (`rows × seq_len`), of which padding.
    pub slots: u64,
    pub padding: u64,
    /// Positions whose label is trained (the loss-bearing tokens the trainer sees).
    pub trained_tokens: u64,
}

impl DataStats {
    /// Count a skipped row, keeping its message if it is among the first few.
    pub fn skip(&mut self, error: &DataError) {
        self.skipped += 1;
        if self.skip_reasons.len() < KEPT_REASONS {
            self.skip_reasons.push(error.to_string());
        }
    }

    /// Fraction of batch slots that are padding.
    pub fn padding_waste(&self) -> f64 {
        if self.slots == 0 {
            0.0
        } else {
            self.padding as f64 / self.slots as f64
        }
    }

    /// A short human summary, one fact per line.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "rows read        {}\nexamples         {}\ntokens           {}\ntrained tokens   {}\nheld out (eval)  {}\nskipped          {}\ntruncated        {}\ndropped          {}\nsplit            {}\ntokens lost      {}\nsequences        {} ({} documents)\npadding waste    {:.1}% ({} of {} slots)",
            self.rows_read,
            self.examples,
            self.tokens,
            self.trained_tokens,
            self.held_out,
            self.skipped,
            self.truncated,
            self.dropped,
            self.split,
            self.tokens_lost,
            self.sequences,
            self.documents,
            100.0 * self.padding_waste(),
            self.padding,
            self.slots
        );
        if self.pairs > 0 {
            s.push_str(&format!(
                "\npairs            {} (of the examples; each is a chosen and a rejected sequence)",
                self.pairs
            ));
        }
        for r in &self.skip_reasons {
            s.push_str("\nskipped: ");
            s.push_str(r);
        }
        s
    }
}

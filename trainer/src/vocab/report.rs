//! What `loam vocab extend` did, printed and saved as `vocab_extension.json` in the new model
//! directory: the new tokens and the tokenizer's fertility on the corpus before and after.
//! (Not `vocab.json`: that is the name of GPT-2's tokenizer vocabulary, which Hugging Face
//! tools would read as one.) `lora.trainable_tokens = "new"` reads the new ids from it.

use anyhow::{Context, Result};
use loam_data::vocab::{Extension, Fertility};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const REPORT_FILE: &str = "vocab_extension.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The base model as given, and the corpus.
    pub base_model: String,
    pub data: String,
    pub new_tokens_asked: usize,
    /// Token ids of the base tokenizer are below this; the new ones follow.
    pub first_new_id: u32,
    /// Token ids of the extended tokenizer are below this.
    pub tokenizer_size: u32,
    /// `vocab_size` (embedding rows) before and after; rows from `tokenizer_size` on are padding.
    pub vocab_size_before: i64,
    pub vocab_size: i64,
    pub tie_word_embeddings: bool,
    pub new_token_ids: Vec<u32>,
    pub new_tokens: Vec<TokenEntry>,
    /// Fertility on the rows learned from, and on the held-out rows.
    pub learn: PartReport,
    pub held_out: PartReport,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenEntry {
    pub id: u32,
    /// The vocabulary entry (byte-level form) and the text it stands for.
    pub token: String,
    pub text: String,
    /// The base tokens it replaces; its embedding row starts as their mean.
    pub parts: Vec<u32>,
    /// How often its merge applied in the learn part.
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartReport {
    pub texts: u64,
    pub bytes: u64,
    pub words: u64,
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub tokens_per_byte_before: f64,
    pub tokens_per_byte_after: f64,
    pub tokens_per_word_before: f64,
    pub tokens_per_word_after: f64,
}

impl PartReport {
    pub fn new(before: &Fertility, after: &Fertility) -> PartReport {
        PartReport {
            texts: before.texts,
            bytes: before.bytes,
            words: before.words,
            tokens_before: before.tokens,
            tokens_after: after.tokens,
            tokens_per_byte_before: before.tokens_per_byte(),
            tokens_per_byte_after: after.tokens_per_byte(),
            tokens_per_word_before: before.tokens_per_word(),
            tokens_per_word_after: after.tokens_per_word(),
        }
    }

    /// "tokens/byte 0.412 → 0.281 (−31.8%), tokens/word 2.91 → 1.98".
    fn line(&self) -> String {
        if self.texts == 0 {
            return "no texts".into();
        }
        let change = 100.0 * (self.tokens_after as f64 / self.tokens_before.max(1) as f64 - 1.0);
        format!(
            "{} texts, {} bytes: tokens {} → {} ({change:+.1}%), tokens/byte {:.4} → {:.4}, \
             tokens/word {:.3} → {:.3}",
            self.texts,
            self.bytes,
            self.tokens_before,
            self.tokens_after,
            self.tokens_per_byte_before,
            self.tokens_per_byte_after,
            self.tokens_per_word_before,
            self.tokens_per_word_after,
        )
    }
}

pub fn token_entries(ext: &Extension) -> Vec<TokenEntry> {
    ext.tokens
        .iter()
        .map(|t| TokenEntry {
            id: t.id,
            token: t.token.clone(),
            text: t.text(),
            parts: t.parts.clone(),
            count: t.count,
        })
        .collect()
}

impl Report {
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(REPORT_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The human summary `loam vocab extend` prints.
    pub fn summary(&self, out: &Path, shown: usize) -> String {
        let mut s = format!(
            "{} new tokens (ids {}..{}) for {}; vocab_size {} → {}{}\n",
            self.new_tokens.len(),
            self.first_new_id,
            self.tokenizer_size,
            self.base_model,
            self.vocab_size_before,
            self.vocab_size,
            if self.vocab_size > i64::from(self.tokenizer_size) {
                format!(
                    " ({} padding rows)",
                    self.vocab_size - i64::from(self.tokenizer_size)
                )
            } else {
                String::new()
            },
        );
        s += &format!("  learned on: {}\n", self.learn.line());
        s += &format!("  held out:   {}\n", self.held_out.line());
        // tokens holding part of a character (common early on in non-Latin scripts) print as
        // U+FFFD: show the whole-character ones
        s += "  new tokens (first whole-character ones):";
        let whole = self
            .new_tokens
            .iter()
            .filter(|t| !t.text.contains('\u{fffd}'));
        for t in whole.take(shown) {
            s += &format!(" {:?}", t.text);
        }
        s += &format!(
            "\nwrote {} (report: {})",
            out.display(),
            out.join(REPORT_FILE).display()
        );
        s
    }
}

/// The new token ids recorded in `model_dir`'s report.
pub fn new_token_ids(model_dir: &Path) -> Result<Vec<i64>> {
    let path = model_dir.join(REPORT_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let ids = report["new_token_ids"]
        .as_array()
        .with_context(|| format!("{} has no `new_token_ids` list", path.display()))?;
    ids.iter()
        .map(|v| {
            v.as_i64()
                .with_context(|| format!("{}: `new_token_ids` holds {v}", path.display()))
        })
        .collect()
}

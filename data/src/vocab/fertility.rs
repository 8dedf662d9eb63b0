//! How many tokens a tokenizer spends on a text: tokens per byte (UTF-8) and per word
//! (whitespace-separated), the usual measures of a tokenizer's fit to a language
//! ("fertility"). Texts are encoded as `tokenizer(text, add_special_tokens=False)`.

use anyhow::Result;
use serde::Serialize;

use crate::Tokenizer;

/// Totals over some texts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Fertility {
    pub texts: u64,
    pub bytes: u64,
    pub words: u64,
    pub tokens: u64,
}

impl Fertility {
    /// Adds `texts`, encoded by `tokenizer`.
    pub fn add(&mut self, tokenizer: &Tokenizer, texts: &[String]) -> Result<()> {
        for text in texts {
            self.texts += 1;
            self.bytes += text.len() as u64;
            self.words += text.split_whitespace().count() as u64;
            self.tokens += tokenizer.encode(text, false)?.len() as u64;
        }
        Ok(())
    }

    pub fn tokens_per_byte(&self) -> f64 {
        self.tokens as f64 / self.bytes.max(1) as f64
    }

    pub fn tokens_per_word(&self) -> f64 {
        self.tokens as f64 / self.words.max(1) as f64
    }
}

//! The corpus as the base tokenizer cuts it. BPE never merges across pre-tokens (the pieces
//! the pre-tokenizer splits text into: a word with its leading space, a digit, a run of
//! punctuation), so learning new merges only needs each distinct pre-token, as its base token
//! ids, and how often it occurs.
//!
//! The pieces come from the tokenizer itself (`Encoding::get_word_ids`: the pre-token each
//! token came from), so its normalizer, added tokens and pre-tokenizer all apply exactly as
//! when it encodes. Added tokens (`<|im_end|>`, …) are never part of a new token.

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, Result};

use crate::Tokenizer;

/// Distinct pre-tokens (as base token ids) and their counts.
#[derive(Debug, Default, Clone)]
pub struct WordCounts {
    counts: HashMap<Vec<u32>, u64>,
    /// Tokens of the counted texts in all, added tokens and single-token words included.
    pub tokens: u64,
}

impl WordCounts {
    /// Counts the pre-tokens of `texts` (encoded in parallel, without special tokens added).
    pub fn add_texts(&mut self, tokenizer: &Tokenizer, texts: &[String]) -> Result<()> {
        let inner = tokenizer.inner();
        let added: HashSet<u32> = inner.get_added_tokens_decoder().into_keys().collect();
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = inner
            .encode_batch(inputs, false)
            .map_err(|e| anyhow!("the tokenizer cannot encode the corpus: {e}"))?;
        for enc in encodings {
            self.tokens += enc.get_ids().len() as u64;
            let (ids, words) = (enc.get_ids(), enc.get_word_ids());
            let mut start = 0;
            while start < ids.len() {
                let mut end = start + 1;
                while end < ids.len() && words[end].is_some() && words[end] == words[start] {
                    end += 1;
                }
                let word = &ids[start..end];
                if word.len() > 1 && !word.iter().any(|id| added.contains(id)) {
                    *self.counts.entry(word.to_vec()).or_default() += 1;
                }
                start = end;
            }
        }
        Ok(())
    }

    /// Distinct words of two or more base tokens (the only ones a merge can apply to).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The words and their counts, in a fixed order (so learning is deterministic).
    pub fn into_sorted(self) -> Vec<(Vec<u32>, u64)> {
        let mut words: Vec<_> = self.counts.into_iter().collect();
        words.sort_unstable();
        words
    }
}

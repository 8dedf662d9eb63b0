//! Learning merges on top of the base segmentation: classic BPE training, started from each
//! pre-token's base tokens instead of its bytes. Every round merges the most frequent adjacent
//! pair (ties: the smallest pair of ids, so the result is deterministic) in every word, and the
//! merged pair becomes a new token with the next id after the base vocabulary.
//!
//! Pair counts are kept up to date incrementally (only the words holding the merged pair are
//! recounted), with a max-heap whose stale entries are skipped when popped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::words::WordCounts;
use crate::Tokenizer;

/// One learned token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewToken {
    pub id: u32,
    /// The vocabulary entry (byte-level characters, `Ġ` for a space): `left` + `right`.
    pub token: String,
    /// The merge that makes it: two ids, base or new.
    pub left: u32,
    pub right: u32,
    /// The base tokens it replaces, in order.
    pub parts: Vec<u32>,
    /// How often the merge applied in the learn part when it was chosen.
    pub count: u64,
}

impl NewToken {
    /// The text the token stands for (a token holding part of a character shows U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&byte_level_bytes(&self.token)).into_owned()
    }
}

/// The new tokens, in merge order; ids `first_id`, `first_id + 1`, ….
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Extension {
    pub first_id: u32,
    pub tokens: Vec<NewToken>,
}

impl Extension {
    /// Every id of the base vocabulary is below this; the extended one ends at
    /// `first_id + tokens.len()`.
    pub fn vocab_len(&self) -> u32 {
        self.first_id + self.tokens.len() as u32
    }

    /// `ids` with every new token replaced by the base tokens it stands for: for any text,
    /// the extended tokenizer's ids expanded this way are the base tokenizer's ids.
    pub fn expand(&self, ids: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            match id.checked_sub(self.first_id) {
                Some(k) if (k as usize) < self.tokens.len() => {
                    out.extend_from_slice(&self.tokens[k as usize].parts)
                }
                _ => out.push(id),
            }
        }
        out
    }
}

type Pair = (u32, u32);

/// Learns up to `new_tokens` merges from `words`, segmented by `base`. Stops early when no
/// pair occurs `min_count` times or more. A pair whose merged string is already a token of
/// the vocabulary is skipped: it would add a merge but no token.
pub fn learn_merges(
    base: &Tokenizer,
    words: WordCounts,
    new_tokens: usize,
    min_count: u64,
) -> Extension {
    let vocab = base.inner().get_vocab(true);
    let first_id = vocab.values().max().map_or(0, |m| m + 1);
    let mut strings = vec![String::new(); first_id as usize];
    for (token, &id) in &vocab {
        strings[id as usize] = token.clone();
    }
    let mut existing: HashSet<String> = vocab.into_keys().collect();
    let mut learner = Learner::new(words.into_sorted());
    let mut tokens: Vec<NewToken> = Vec::new();
    let parts_of = |id: u32, tokens: &[NewToken]| match id.checked_sub(first_id) {
        Some(k) => tokens[k as usize].parts.clone(),
        None => vec![id],
    };
    while tokens.len() < new_tokens {
        let Some((pair, count)) = learner.best() else {
            break;
        };
        if count < min_count as i64 {
            break;
        }
        let string = |id: u32| match id.checked_sub(first_id) {
            Some(k) => tokens[k as usize].token.as_str(),
            None => strings[id as usize].as_str(),
        };
        let token = format!("{}{}", string(pair.0), string(pair.1));
        if !existing.insert(token.clone()) {
            learner.ban(pair);
            continue;
        }
        let id = first_id + tokens.len() as u32;
        let mut parts = parts_of(pair.0, &tokens);
        parts.extend(parts_of(pair.1, &tokens));
        learner.merge(pair, id);
        tokens.push(NewToken {
            id,
            token,
            left: pair.0,
            right: pair.1,
            parts,
            count: count as u64,
        });
    }
    Extension { first_id, tokens }
}

/// The words being merged, their pair counts and where each pair occurs.
struct Learner {
    words: Vec<Vec<u32>>,
    counts: Vec<i64>,
    pair_counts: HashMap<Pair, i64>,
    /// Words that held the pair when it was counted (some may no longer).
    pair_words: HashMap<Pair, Vec<usize>>,
    heap: BinaryHeap<(i64, Reverse<Pair>)>,
    banned: HashSet<Pair>,
}

impl Learner {
    fn new(words: Vec<(Vec<u32>, u64)>) -> Learner {
        let (words, counts): (Vec<Vec<u32>>, Vec<i64>) =
            words.into_iter().map(|(w, c)| (w, c as i64)).unzip();
        let mut learner = Learner {
            words,
            counts,
            pair_counts: HashMap::new(),
            pair_words: HashMap::new(),
            heap: BinaryHeap::new(),
            banned: HashSet::new(),
        };
        for w in 0..learner.words.len() {
            learner.count_word(w, 1);
        }
        let heap = learner
            .pair_counts
            .iter()
            .map(|(&p, &c)| (c, Reverse(p)))
            .collect();
        learner.heap = heap;
        learner
    }

    /// Adds (`sign` 1) or removes (-1) the pairs of word `w`; returns the pairs touched.
    fn count_word(&mut self, w: usize, sign: i64) -> Vec<Pair> {
        let word = &self.words[w];
        let mut touched = Vec::with_capacity(word.len());
        for pair in word.windows(2).map(|p| (p[0], p[1])) {
            *self.pair_counts.entry(pair).or_default() += sign * self.counts[w];
            if sign > 0 {
                let at = self.pair_words.entry(pair).or_default();
                if at.last() != Some(&w) {
                    at.push(w);
                }
            }
            touched.push(pair);
        }
        touched
    }

    /// The most frequent pair not banned, with its count.
    fn best(&mut self) -> Option<(Pair, i64)> {
        while let Some((count, Reverse(pair))) = self.heap.pop() {
            if self.banned.contains(&pair) || self.pair_counts.get(&pair) != Some(&count) {
                continue; // stale: a fresher entry was pushed when the count changed
            }
            // left in the heap: this pair stays the best until merged or banned
            self.heap.push((count, Reverse(pair)));
            return Some((pair, count));
        }
        None
    }

    fn ban(&mut self, pair: Pair) {
        self.banned.insert(pair);
    }

    /// Replaces every occurrence of `pair` (left to right) by `id` in the words holding it.
    fn merge(&mut self, pair: Pair, id: u32) {
        let holders = self.pair_words.remove(&pair).unwrap_or_default();
        let mut touched = HashSet::new();
        for w in holders {
            if !self.words[w].windows(2).any(|p| (p[0], p[1]) == pair) {
                continue;
            }
            touched.extend(self.count_word(w, -1));
            let word = &self.words[w];
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && (word[i], word[i + 1]) == pair {
                    merged.push(id);
                    i += 2;
                } else {
                    merged.push(word[i]);
                    i += 1;
                }
            }
            self.words[w] = merged;
            touched.extend(self.count_word(w, 1));
        }
        self.pair_counts.remove(&pair);
        for p in touched {
            match self.pair_counts.get(&p) {
                Some(&c) if c > 0 => self.heap.push((c, Reverse(p))),
                Some(_) => {
                    self.pair_counts.remove(&p);
                }
                None => {}
            }
        }
    }

    /// Tokens of all words after the merges so far (each word times its count).
    #[cfg(test)]
    fn tokens(&self) -> i64 {
        self.words
            .iter()
            .zip(&self.counts)
            .map(|(w, c)| w.len() as i64 * c)
            .sum()
    }
}

/// The bytes a byte-level token stands for (GPT-2's printable stand-ins mapped back).
pub fn byte_level_bytes(token: &str) -> Vec<u8> {
    let chars = crate::fast_bpe::byte_chars();
    token
        .chars()
        .filter_map(|c| chars.iter().position(|&b| b == c).map(|b| b as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learner(words: &[(&[u32], u64)]) -> Learner {
        Learner::new(words.iter().map(|(w, c)| (w.to_vec(), *c)).collect())
    }

    #[test]
    fn merges_the_most_frequent_pair_and_recounts() {
        // 1 2 3 ×5, 2 3 ×3, 1 2 ×1: (2,3) occurs 8 times, (1,2) 6.
        let mut l = learner(&[(&[1, 2, 3], 5), (&[2, 3], 3), (&[1, 2], 1)]);
        assert_eq!(l.best(), Some(((2, 3), 8)));
        l.merge((2, 3), 10);
        assert_eq!(l.words, vec![vec![1, 10], vec![10], vec![1, 2]]);
        // (1,2) is left only in the last word; (1,10) in the first.
        assert_eq!(l.best(), Some(((1, 10), 5)));
        assert_eq!(l.pair_counts.get(&(1, 2)), Some(&1));
        assert_eq!(l.tokens(), 5 * 2 + 3 + 2);
    }

    #[test]
    fn overlapping_runs_merge_left_to_right_as_bpe_encoders_do() {
        let mut l = learner(&[(&[7, 7, 7], 1), (&[7, 7, 7, 7], 1)]);
        assert_eq!(l.best(), Some(((7, 7), 5)));
        l.merge((7, 7), 9);
        assert_eq!(l.words, vec![vec![9, 7], vec![9, 9]]);
        assert_eq!(
            l.best(),
            Some(((9, 7), 1)),
            "a tie goes to the smaller pair"
        );
    }

    #[test]
    fn ties_go_to_the_smallest_pair_and_banned_pairs_are_skipped() {
        let mut l = learner(&[(&[5, 6], 2), (&[3, 4], 2)]);
        assert_eq!(l.best(), Some(((3, 4), 2)));
        l.ban((3, 4));
        assert_eq!(l.best(), Some(((5, 6), 2)));
    }

    #[test]
    fn byte_level_tokens_map_back_to_bytes() {
        assert_eq!(byte_level_bytes("Ġcath"), b" cath");
        assert_eq!(byte_level_bytes("áĪ°"), "ሰ".as_bytes());
    }
}

//! chrF++ as sacrebleu 2.x computes it (`sacrebleu.metrics.CHRF(word_order=2)`, the metric of
//! FLORES-200 and NLLB's model cards): character 1- to 6-grams of the text with its whitespace
//! removed, and word 1- and 2-grams after splitting one punctuation mark off each word's end
//! (or, failing that, its start); per order the precision and recall of the matched n-grams;
//! β = 2, averaged over the orders both sides have n-grams of ("effective order", sacrebleu's
//! default, no ε smoothing). The corpus score sums every segment's counts before computing
//! the F-score, as sacrebleu's `corpus_score` does. Scores are 0–100.

use super::pystr;
use std::collections::HashMap;
use std::hash::Hash;

pub const CHAR_ORDER: usize = 6;
pub const WORD_ORDER: usize = 2;
const ORDERS: usize = CHAR_ORDER + WORD_ORDER;
const BETA: f64 = 2.0;

/// `string.punctuation`, which chrF++ splits off words.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Per order (6 character orders, then 2 word orders): hypothesis n-grams, reference
/// n-grams, and matched n-grams. Sums over segments give the corpus statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChrfStats {
    counts: [[u64; 3]; ORDERS],
}

impl ChrfStats {
    /// The statistics of one hypothesis against its reference.
    pub fn segment(hypothesis: &str, reference: &str) -> ChrfStats {
        let mut counts = [[0; 3]; ORDERS];
        let (hyp_chars, ref_chars) = (
            without_whitespace(hypothesis),
            without_whitespace(reference),
        );
        for n in 1..=CHAR_ORDER {
            counts[n - 1] = match_counts(&ngrams(&hyp_chars, n), &ngrams(&ref_chars, n));
        }
        let (hyp_words, ref_words) = (words(hypothesis), words(reference));
        for n in 1..=WORD_ORDER {
            counts[CHAR_ORDER + n - 1] =
                match_counts(&word_ngrams(&hyp_words, n), &word_ngrams(&ref_words, n));
        }
        ChrfStats { counts }
    }

    pub fn add(&mut self, other: &ChrfStats) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
    }

    /// The F-score (0–100) of these counts: sacrebleu's `_compute_f_score` with
    /// `eps_smoothing = False`.
    pub fn score(&self) -> f64 {
        let factor = BETA * BETA;
        let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0, 0.0, 0);
        for &[n_hyp, n_ref, n_match] in &self.counts {
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += n_match as f64 / n_hyp as f64;
                avg_rec += n_match as f64 / n_ref as f64;
                effective_order += 1;
            }
        }
        if effective_order == 0 {
            return 0.0;
        }
        avg_prec /= effective_order as f64;
        avg_rec /= effective_order as f64;
        if avg_prec + avg_rec == 0.0 {
            return 0.0;
        }
        let score = (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
        100.0 * score
    }
}

/// chrF++ of one hypothesis (`CHRF(word_order=2).sentence_score(hyp, [ref])`).
pub fn sentence_chrf(hypothesis: &str, reference: &str) -> f64 {
    ChrfStats::segment(hypothesis, reference).score()
}

/// Corpus chrF++ over (hypothesis, reference) pairs (`corpus_score(hyps, [refs])`).
pub fn corpus_chrf<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let mut total = ChrfStats::default();
    for (hypothesis, reference) in pairs {
        total.add(&ChrfStats::segment(hypothesis, reference));
    }
    total.score()
}

/// `''.join(line.split())` as code points: character n-grams ignore whitespace.
fn without_whitespace(line: &str) -> Vec<char> {
    pystr::split(line).flat_map(str::chars).collect()
}

/// sacrebleu's `_remove_punctuation`: a word longer than one character loses a last
/// punctuation mark to a word of its own, or else a first one.
fn words(line: &str) -> Vec<&str> {
    let is_punct = |c: char| PUNCTUATION.contains(c);
    let mut out = Vec::new();
    for w in pystr::split(line) {
        let mut chars = w.chars();
        let (first, last) = (chars.next(), chars.next_back());
        match (first, last) {
            (Some(_), Some(last)) if is_punct(last) => {
                let cut = w.len() - last.len_utf8();
                out.extend([&w[..cut], &w[cut..]]);
            }
            (Some(first), Some(_)) if is_punct(first) => {
                let cut = first.len_utf8();
                out.extend([&w[..cut], &w[cut..]]);
            }
            _ => out.push(w),
        }
    }
    out
}

fn ngrams<T: Eq + Hash>(items: &[T], n: usize) -> HashMap<&[T], u64> {
    let mut counts = HashMap::new();
    for gram in items.windows(n) {
        *counts.entry(gram).or_default() += 1;
    }
    counts
}

/// Word n-grams are the words joined by one space, as sacrebleu keys them: `"a b"` as a
/// bigram and as the words `"a"`, `"b"` are told apart only by their order.
fn word_ngrams(words: &[&str], n: usize) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for gram in words.windows(n) {
        *counts.entry(gram.join(" ")).or_default() += 1;
    }
    counts
}

/// `[hyp count, ref count, matches]` (sacrebleu's `_get_match_statistics`: hypothesis
/// n-grams count only when the reference has n-grams of this order at all).
fn match_counts<K: Eq + Hash>(hyp: &HashMap<K, u64>, reference: &HashMap<K, u64>) -> [u64; 3] {
    let mut matched = 0;
    let mut hyp_count = 0;
    for (gram, &count) in hyp {
        hyp_count += count;
        if let Some(&r) = reference.get(gram) {
            matched += count.min(r);
        }
    }
    let ref_count = reference.values().sum();
    [
        if reference.is_empty() { 0 } else { hyp_count },
        ref_count,
        matched,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_text_scores_100_and_disjoint_text_0() {
        assert!((sentence_chrf("Bore da, Siân!", "Bore da, Siân!") - 100.0).abs() < 1e-12);
        assert_eq!(sentence_chrf("xyz", "abc"), 0.0);
        assert_eq!(sentence_chrf("", "abc"), 0.0);
        assert_eq!(sentence_chrf("", ""), 0.0);
    }

    #[test]
    fn words_split_one_punctuation_mark_off_an_end() {
        assert_eq!(
            words("(hi) there, a . ..! 'x"),
            ["(hi", ")", "there", ",", "a", ".", "..", "!", "'", "x"]
        );
    }

    #[test]
    fn a_hand_computed_segment() {
        // "ab" vs "abc": char 1-grams 2/2 matched of 3 in the reference, 2-grams 1 of 1 / 2,
        // 3-grams none in the hypothesis; words "ab" vs "abc": 0 of 1.
        let s = ChrfStats::segment("ab", "abc");
        assert_eq!(s.counts[0], [2, 3, 2]);
        assert_eq!(s.counts[1], [1, 2, 1]);
        assert_eq!(s.counts[2], [0, 1, 0]);
        assert_eq!(s.counts[CHAR_ORDER], [1, 1, 0]);
        assert_eq!(s.counts[CHAR_ORDER + 1], [0, 0, 0]);
        // effective orders: char 1, 2 and word 1 → P = (1 + 1 + 0) / 3, R = (2/3 + 1/2 + 0) / 3
        let (p, r) = (2.0 / 3.0, (2.0 / 3.0 + 0.5) / 3.0);
        let want = 100.0 * 5.0 * p * r / (4.0 * p + r);
        assert!((s.score() - want).abs() < 1e-12);
    }
}

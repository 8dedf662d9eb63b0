//! Corpus BLEU as sacrebleu 2.x computes it by default (`sacrebleu.metrics.BLEU()`): each
//! segment right-stripped and tokenized with mteval-v13a's rules (`13a`), word 1- to 4-gram
//! matches clipped by the reference's counts and summed over the corpus, the geometric mean
//! of the four precisions with the `exp` smoothing (NIST: an order with no match counts as
//! 1 / (2^k · total) for its k-th such order), times the brevity penalty. 0–100.

use super::pystr;
use std::collections::HashMap;

const MAX_ORDER: usize = 4;

/// Sufficient statistics of BLEU: lengths in tokens, and matched / total n-grams per order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BleuStats {
    pub hyp_len: u64,
    pub ref_len: u64,
    pub correct: [u64; MAX_ORDER],
    pub total: [u64; MAX_ORDER],
}

impl BleuStats {
    pub fn segment(hypothesis: &str, reference: &str) -> BleuStats {
        let (hyp, reference) = (preprocess(hypothesis), preprocess(reference));
        let (hyp_tokens, ref_tokens): (Vec<&str>, Vec<&str>) = (
            pystr::split(&hyp).collect(),
            pystr::split(&reference).collect(),
        );
        let ref_grams = all_ngrams(&ref_tokens);
        let mut stats = BleuStats {
            hyp_len: hyp_tokens.len() as u64,
            ref_len: ref_tokens.len() as u64,
            ..BleuStats::default()
        };
        for (gram, count) in all_ngrams(&hyp_tokens) {
            let n = gram.len() - 1;
            stats.total[n] += count;
            if let Some(&r) = ref_grams.get(gram) {
                stats.correct[n] += count.min(r);
            }
        }
        stats
    }

    pub fn add(&mut self, other: &BleuStats) {
        self.hyp_len += other.hyp_len;
        self.ref_len += other.ref_len;
        for n in 0..MAX_ORDER {
            self.correct[n] += other.correct[n];
            self.total[n] += other.total[n];
        }
    }

    /// sacrebleu's `compute_bleu` with `smooth_method = "exp"`, `effective_order = False`.
    pub fn score(&self) -> f64 {
        if self.correct.iter().all(|&c| c == 0) {
            return 0.0;
        }
        let (sys, reference) = (self.hyp_len as f64, self.ref_len as f64);
        let brevity = if self.hyp_len >= self.ref_len {
            1.0
        } else if self.hyp_len > 0 {
            (1.0 - reference / sys).exp()
        } else {
            0.0
        };
        let mut precisions = [0.0; MAX_ORDER];
        let mut smooth = 1.0;
        for ((p, &correct), &total) in precisions.iter_mut().zip(&self.correct).zip(&self.total) {
            if total == 0 {
                break;
            }
            *p = if correct == 0 {
                smooth *= 2.0;
                100.0 / (smooth * total as f64)
            } else {
                100.0 * correct as f64 / total as f64
            };
        }
        // sacrebleu's `my_log`: log 0 is floored to -9999999999.
        let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
        let mean = precisions.iter().map(|&p| log(p)).sum::<f64>() / MAX_ORDER as f64;
        brevity * mean.exp()
    }
}

/// Corpus BLEU over (hypothesis, reference) pairs (`BLEU().corpus_score(hyps, [refs])`).
pub fn corpus_bleu<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let mut total = BleuStats::default();
    for (hypothesis, reference) in pairs {
        total.add(&BleuStats::segment(hypothesis, reference));
    }
    total.score()
}

/// `BLEU._preprocess_segment`: `tokenizer_13a(sent.rstrip())`.
fn preprocess(segment: &str) -> String {
    tokenize_13a(pystr::rstrip(segment))
}

/// sacrebleu's `Tokenizer13a`: mteval-v13a's language-independent part, then its
/// punctuation rules (`TokenizerRegexp`), then single spaces.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        for (entity, c) in [
            ("&quot;", "\""),
            ("&amp;", "&"),
            ("&lt;", "<"),
            ("&gt;", ">"),
        ] {
            line = line.replace(entity, c);
        }
    }
    let chars: Vec<char> = format!(" {line} ").chars().collect();
    // `([\{-\~\[-\` -\&\(-\+\:-\@\/])` → ` \1 `: ASCII symbols other than ' , - . get spaces.
    let spaced: Vec<char> = chars
        .iter()
        .flat_map(|&c| {
            if is_symbol(c) {
                vec![' ', c, ' ']
            } else {
                vec![c]
            }
        })
        .collect();
    let is_digit = |c: char| c.is_ascii_digit();
    let is_dot_comma = |c: char| c == '.' || c == ',';
    // `([^0-9])([\.,])` → `\1 \2 `: period and comma unless preceded by a digit
    let step = substitute(
        &spaced,
        |a, b| !is_digit(a) && is_dot_comma(b),
        |a, b| vec![a, ' ', b, ' '],
    );
    // `([\.,])([^0-9])` → ` \1 \2`: period and comma unless followed by a digit
    let step = substitute(
        &step,
        |a, b| is_dot_comma(a) && !is_digit(b),
        |a, b| vec![' ', a, ' ', b],
    );
    // `([0-9])(-)` → `\1 \2 `: a dash after a digit
    let step = substitute(
        &step,
        |a, b| is_digit(a) && b == '-',
        |a, b| vec![a, ' ', b, ' '],
    );
    let text: String = step.into_iter().collect();
    pystr::split(&text).collect::<Vec<_>>().join(" ")
}

fn is_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// `re.sub` of a two-character pattern: matches are found left to right and never overlap.
fn substitute(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            out.extend(replace(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Every 1- to 4-gram of `tokens` with its count.
fn all_ngrams<'a, 't>(tokens: &'t [&'a str]) -> HashMap<&'t [&'a str], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_default() += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_13a_splits_punctuation_as_mteval() {
        // Checked with sacrebleu 2.6.0's Tokenizer13a.
        assert_eq!(tokenize_13a("Hello, world!"), "Hello , world !");
        assert_eq!(
            tokenize_13a("3.14 and 1,000 but x.y"),
            "3.14 and 1,000 but x . y"
        );
        assert_eq!(tokenize_13a("it's 5-6 &amp; \"q\""), "it's 5 - 6 & \" q \"");
        assert_eq!(tokenize_13a("a..b"), "a . . b");
    }

    #[test]
    fn identical_text_scores_100() {
        let s = "Mae hen wlad fy nhadau yn annwyl i mi.";
        assert!((corpus_bleu([(s, s)]) - 100.0).abs() < 1e-9);
        assert_eq!(corpus_bleu([("", s)]), 0.0);
    }
}

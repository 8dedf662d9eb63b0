//! New tokens for a language: BPE merges learned on a corpus *as the base tokenizer segments
//! it*, appended after the tokenizer's own merges (`loam vocab extend`).
//!
//! Why appending keeps the base tokenization: a BPE encoder applies the lowest-ranked merge
//! it can at every step, so all the base merges run before any new one, and the new merges
//! only join whole base tokens. A text in which no adjacent pair of base tokens is a new
//! merge encodes exactly as before; every base token keeps its id; and a new token always
//! stands for the same run of base tokens (its [`NewToken::parts`]).
//!
//! - [`corpus`]: the text of a Parquet source's rows (any format), split learn / held out.
//! - [`words`]: the corpus as the base tokenizer cuts it: pre-tokens as base ids, counted.
//! - [`learn`]: the merges, most frequent adjacent pair first (classic BPE training).
//! - [`tokenizer_json`]: the extended `tokenizer.json`.
//! - [`fertility`]: tokens per byte and per word, before and after.

pub mod corpus;
pub mod fertility;
pub mod learn;
pub mod tokenizer_json;
pub mod words;

pub use corpus::{CorpusPart, CorpusReader};
pub use fertility::Fertility;
pub use learn::{learn_merges, Extension, NewToken};
pub use tokenizer_json::{check_supported, extended_tokenizer};
pub use words::WordCounts;

/// A multilingual corpus built from word lists (Welsh, Amharic, Tigrinya, Yoruba with tone
/// marks, Chinese, English), `rows` sentences long; shared by the tests here and in `loam`.
pub fn sample_corpus(rows: usize) -> Vec<String> {
    const WORDS: &[&[&str]] = &[
        &[
            "mae",
            "hen",
            "wlad",
            "fy",
            "nhadau",
            "yn",
            "annwyl",
            "i",
            "mi",
            "cymraeg",
            "bore",
            "da",
            "diolch",
            "yn",
            "fawr",
            "croeso",
            "llyfrgell",
            "ysgol",
        ],
        &[
            "ሰላም",
            "ዓለም",
            "ቋንቋ",
            "የሰው",
            "ልጅ",
            "ትልቁ",
            "ሀብት",
            "ነው",
            "አዲስ",
            "ቃላት",
            "እንማራለን",
            "ኢትዮጵያ",
        ],
        &[
            "ሰላም",
            "ትግርኛ",
            "ቋንቋ",
            "ኣብ",
            "ኤርትራ",
            "ዝዝረብ",
            "እዩ",
            "ብዙሓት",
            "ሰባት",
        ],
        &[
            "ẹ",
            "káàárọ̀",
            "ọmọ",
            "ilé",
            "ìwé",
            "yorùbá",
            "èdè",
            "àwọn",
            "ènìyàn",
            "ṣé",
            "dáadáa",
            "ni",
        ],
        &[
            "机器", "学习", "正在", "改变", "我们", "工作", "开源", "模型", "语言",
        ],
        &[
            "the", "language", "of", "our", "people", "is", "alive", "and", "well",
        ],
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    (0..rows)
        .map(|_| {
            let lang = WORDS[next(WORDS.len())];
            let len = 4 + next(10);
            let words: Vec<&str> = (0..len).map(|_| lang[next(lang.len())]).collect();
            let sep = if lang[0] == "机器" { "" } else { " " };
            format!("{}{}", words.join(sep), [".", "!", "?", "。", "።"][next(5)])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::fixtures::tokenizer;
    use crate::Tokenizer;

    /// Learns `n` tokens for `name`'s tokenizer on the sample corpus; returns the base and
    /// extended tokenizers, the extension and the learner's own token count of the corpus.
    fn extend(name: &str, n: usize, corpus: &[String]) -> (Tokenizer, Tokenizer, Extension) {
        let base = tokenizer(name);
        let mut words = WordCounts::default();
        words.add_texts(&base, corpus).unwrap();
        let ext = learn_merges(&base, words, n, 2);
        let file = base.dir().unwrap().join("tokenizer.json");
        let inner = extended_tokenizer(&file, &ext).unwrap();
        let config = serde_json::json!({"eos_token": base.special_token("eos_token")});
        let extended = Tokenizer::from_parts(inner, &config, None, None, None).unwrap();
        (base, extended, ext)
    }

    fn probe_texts(corpus: &[String]) -> Vec<String> {
        let mut texts: Vec<String> = corpus.to_vec();
        texts.extend(sample_corpus(300).into_iter().skip(200)); // unseen sentences
        texts.extend(
            [
                "Hello, world! def f(x): return x ** 2",
                "   spaces  and\ttabs\n\nnewlines",
                "<|im_start|>user\nmae hen wlad<|im_end|>",
                "12345 ሰላም123ዓለም 🙂 émigré",
                "",
            ]
            .map(String::from),
        );
        texts
    }

    #[test]
    fn extended_tokenizers_keep_the_base_segmentation_underneath() {
        let corpus = sample_corpus(200);
        for name in ["chatml", "llama3", "qwen25"] {
            let (base, extended, ext) = extend(name, 60, &corpus);
            assert_eq!(ext.tokens.len(), 60, "{name}");
            assert_eq!(extended.vocab_size() as u32, ext.vocab_len(), "{name}");
            // every base token keeps its id
            let base_vocab = base.inner().get_vocab(true);
            let ext_vocab = extended.inner().get_vocab(true);
            for (token, id) in &base_vocab {
                assert_eq!(ext_vocab.get(token), Some(id), "{name}: {token:?}");
            }
            let slow = extended.clone().without_fast_path();
            let mut used_new = 0;
            for text in probe_texts(&corpus) {
                let want = base.encode(&text, false).unwrap();
                let got = extended.encode(&text, false).unwrap();
                assert_eq!(slow.encode(&text, false).unwrap(), got, "{name}: fast path");
                assert_eq!(ext.expand(&got), want, "{name}: {text:?}");
                if got.iter().all(|&id| id < ext.first_id) {
                    assert_eq!(got, want, "{name}: no new token, so nothing changed");
                }
                used_new += got.iter().filter(|&&id| id >= ext.first_id).count();
            }
            assert!(used_new > 100, "{name}: new tokens used {used_new} times");
        }
    }

    /// The learner's segmentation of the corpus is what the extended tokenizer encodes: the
    /// merge counts it chose by are real.
    #[test]
    fn learning_and_encoding_agree_on_every_merge() {
        let corpus = sample_corpus(150);
        let (base, extended, ext) = extend("chatml", 40, &corpus);
        let mut before = Fertility::default();
        let mut after = Fertility::default();
        before.add(&base, &corpus).unwrap();
        after.add(&extended, &corpus).unwrap();
        let saved: u64 = ext.tokens.iter().map(|t| t.count).sum();
        assert_eq!(before.tokens - after.tokens, saved);
        assert!(after.tokens_per_byte() < 0.8 * before.tokens_per_byte());
        // counts fall (ties aside) as BPE training picks the most frequent pair first
        for t in &ext.tokens {
            assert!(t.count >= 2);
            assert!(t.parts.len() >= 2);
            // the base BPE on the token's bytes (its text may hold part of a character)
            let pieces = tokenizers::Model::tokenize(base.inner().get_model(), &t.token).unwrap();
            let ids: Vec<u32> = pieces.iter().map(|p| p.id).collect();
            assert_eq!(ids, t.parts, "{:?}: parts = the base segmentation", t.token);
        }
    }

    #[test]
    fn a_corpus_too_small_stops_early() {
        let corpus = vec!["ሰላም ሰላም".to_string()];
        let (_, _, ext) = extend("chatml", 1000, &corpus);
        assert!(
            !ext.tokens.is_empty() && ext.tokens.len() < 10,
            "{}",
            ext.tokens.len()
        );
        assert!(ext.tokens.iter().all(|t| t.count >= 2));
    }
}

//! A fast path for byte-level BPE tokenizers (GPT-2, SmolLM2, StarCoder and their kin): the
//! same ids and offsets as the `tokenizers` crate, several times faster, because it allocates
//! nothing per token.
//!
//! `tokenizers` builds a `NormalizedString` (an alignment pair per byte) for every piece of
//! text, a `String` for every token and an `Encoding` that the post-processor copies; on chat
//! data most of its time goes to `malloc`. Here the text is cut into added tokens (the same
//! Aho-Corasick, leftmost-longest), digits and the GPT-2 pattern by hand, and each piece's bytes
//! are merged by rank, with a cache of pieces seen before.
//!
//! Only the exact shape it reproduces takes this path ([`FastBpe::new`] says why not otherwise,
//! and the `tokenizers` crate does the work): a BPE model without dropout, unknown token, byte
//! fallback, prefixes or suffixes; no normalizer; the pre-tokenizer `ByteLevel(add_prefix_space
//! = false, use_regex = true)`, optionally after `Digits(individual_digits = true)`; added tokens
//! without lstrip / rstrip / single_word / normalized; no truncation or padding; and a
//! post-processor that adds nothing (or none). Which characters are letters, numbers and
//! whitespace is asked of Oniguruma, the regex engine `tokenizers` runs the pattern with, so
//! the Unicode tables are the same. The tests compare both paths on the fixtures and on
//! generated text.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value as Json;
use tokenizers::{ModelWrapper, PostProcessor, PostProcessorWrapper};

/// Pieces up to this many bytes are cached (as `tokenizers` caches words under 256 chars).
const CACHE_MAX_PIECE: usize = 256;
/// Pieces cached per shard (64 Ki pieces in all, a few MB); a full shard takes no more, as
/// `tokenizers`' cache does.
const CACHE_SHARD_CAPACITY: usize = 4096;
const CACHE_SHARDS: usize = 16;
/// A byte whose byte-level character is not in the vocabulary.
const NO_ID: u32 = u32::MAX;

/// FxHash (rustc's): fast for the short keys here; no hostile input to defend against.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(last) ^ rest.len() as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// A piece's tokens: (id, bytes covered).
type Tokens = Box<[(u32, u32)]>;

/// What the GPT-2 pattern sees in a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Space = 1,
    Letter = 2,
    Number = 3,
    Other = 4,
}

/// Characters classified by Oniguruma (`\s`, `\p{L}`, `\p{N}`), looked up once each.
struct Classes {
    regex: onig::Regex,
    /// Classes of U+0000..U+2FFFF, 0 until first asked.
    table: Box<[AtomicU8]>,
}

const CLASS_TABLE: usize = 0x30000;

impl Classes {
    fn new() -> Result<Classes, String> {
        let regex = onig::Regex::new(r"\A(?:(\s)|(\p{L})|(\p{N}))").map_err(|e| e.to_string())?;
        let table = (0..CLASS_TABLE).map(|_| AtomicU8::new(0)).collect();
        Ok(Classes { regex, table })
    }

    fn ask_oniguruma(&self, c: char) -> Class {
        let mut buf = [0u8; 4];
        let s = c.encode_utf8(&mut buf);
        match self.regex.captures(s) {
            Some(caps) if caps.at(1).is_some() => Class::Space,
            Some(caps) if caps.at(2).is_some() => Class::Letter,
            Some(caps) if caps.at(3).is_some() => Class::Number,
            _ => Class::Other,
        }
    }

    #[inline]
    fn of(&self, c: char) -> Class {
        let Some(slot) = self.table.get(c as usize) else {
            return self.ask_oniguruma(c);
        };
        match slot.load(Ordering::Relaxed) {
            1 => Class::Space,
            2 => Class::Letter,
            3 => Class::Number,
            4 => Class::Other,
            _ => {
                let class = self.ask_oniguruma(c);
                slot.store(class as u8, Ordering::Relaxed);
                class
            }
        }
    }
}

/// Pieces seen before and their tokens, in shards so that encoding threads rarely meet.
struct Cache {
    shards: Vec<Mutex<FxMap<Box<[u8]>, Tokens>>>,
}

impl Cache {
    fn new() -> Cache {
        Cache {
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(FxMap::default()))
                .collect(),
        }
    }

    fn shard(&self, piece: &[u8]) -> &Mutex<FxMap<Box<[u8]>, Tokens>> {
        // Seeded apart from the maps' own hash, whose high and low bits they use.
        let mut h = Fx(0x243f_6a88_85a3_08d3);
        h.write(piece);
        &self.shards[(h.finish() >> 60) as usize % CACHE_SHARDS]
    }
}

/// A byte-level BPE tokenizer that encodes exactly as its `tokenizers` original.
pub struct FastBpe {
    /// Added tokens, matched leftmost-longest in the raw text, and their ids.
    added: Option<(AhoCorasick, Vec<u32>)>,
    /// `Digits(individual_digits = true)` runs before the byte-level pattern.
    split_digits: bool,
    /// Whether the post-processor adds nothing with `add_special_tokens = true` either.
    plain_with_special_tokens: bool,
    /// The vocabulary id of each byte's byte-level character ([`NO_ID`] for the few a
    /// vocabulary may lack: `tokenizers` drops those bytes and shifts the offsets after them,
    /// so a text holding one goes the slow way).
    byte_ids: [u32; 256],
    /// (left id << 32 | right id) → (rank, merged id).
    merges: FxMap<u64, (u32, u32)>,
    classes: Classes,
    cache: Cache,
}

impl std::fmt::Debug for FastBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastBpe")
            .field("split_digits", &self.split_digits)
            .field("merges", &self.merges.len())
            .finish_non_exhaustive()
    }
}

/// GPT-2's map from bytes to the printable characters byte-level vocabularies are written in.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(b)
        } else {
            extra += 1;
            255 + extra
        };
        out[b as usize] = char::from_u32(code).expect("below U+0200");
    }
    out
}

impl FastBpe {
    /// The fast encoder of `tokenizer`, or why its configuration is not one this module
    /// reproduces exactly.
    pub fn new(tokenizer: &tokenizers::Tokenizer) -> Result<FastBpe, String> {
        let not = |what: &str| Err(format!("not a plain byte-level BPE: {what}"));
        if tokenizer.get_normalizer().is_some() {
            return not("has a normalizer");
        }
        if tokenizer.get_truncation().is_some() || tokenizer.get_padding().is_some() {
            return not("truncates or pads");
        }
        if tokenizer.get_encode_special_tokens() {
            return not("encodes special tokens as text");
        }
        let pre_tokenizer = tokenizer
            .get_pre_tokenizer()
            .and_then(|p| serde_json::to_value(p).ok())
            .unwrap_or_default();
        let Some(split_digits) = supported_pre_tokenizer(&pre_tokenizer) else {
            return not(&format!("pre-tokenizer {pre_tokenizer}"));
        };
        let plain_with_special_tokens = match tokenizer.get_post_processor() {
            None => true,
            Some(PostProcessorWrapper::Template(t)) => t.added_tokens(false) == 0,
            Some(_) => return not("post-processor other than a template"),
        };
        let ModelWrapper::BPE(bpe) = tokenizer.get_model() else {
            return not("model is not BPE");
        };
        let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
        if bpe.dropout.is_some_and(|d| d > 0.0)
            || bpe.unk_token.is_some()
            || bpe.byte_fallback
            || bpe.ignore_merges
            || !empty(&bpe.continuing_subword_prefix)
            || !empty(&bpe.end_of_word_suffix)
        {
            return not("BPE with dropout, unk_token, byte_fallback, ignore_merges or affixes");
        }
        let vocab = tokenizers::Model::get_vocab(bpe);
        let id = |token: &str| {
            vocab.get(token).copied().ok_or_else(|| {
                format!("not a plain byte-level BPE: {token:?} is not in the vocabulary")
            })
        };
        let mut byte_ids = [NO_ID; 256];
        for (b, c) in byte_chars().iter().enumerate() {
            byte_ids[b] = id(c.encode_utf8(&mut [0; 4])).unwrap_or(NO_ID);
        }
        // The merges in rank order, as the model serializes them.
        let model = serde_json::to_value(bpe).map_err(|e| e.to_string())?;
        let pairs = model["merges"].as_array().cloned().unwrap_or_default();
        let mut merges = FxMap::default();
        for (rank, pair) in pairs.iter().enumerate() {
            let (a, b) = match pair {
                Json::Array(ab) => match ab.as_slice() {
                    [Json::String(a), Json::String(b)] => (a.as_str(), b.as_str()),
                    _ => return not(&format!("merge {pair}")),
                },
                Json::String(s) => match s.split_once(' ') {
                    Some(ab) => ab,
                    None => return not(&format!("merge {pair}")),
                },
                _ => return not(&format!("merge {pair}")),
            };
            let key = (u64::from(id(a)?) << 32) | u64::from(id(b)?);
            merges.insert(key, (rank as u32, id(&format!("{a}{b}"))?));
        }
        let mut contents = Vec::new();
        let mut ids = Vec::new();
        for (id, token) in tokenizer.get_added_tokens_decoder() {
            if token.normalized || token.lstrip || token.rstrip || token.single_word {
                return not(&format!(
                    "added token {:?} is normalized, strips or is single_word",
                    token.content
                ));
            }
            contents.push(token.content);
            ids.push(id);
        }
        let added = if contents.is_empty() {
            None
        } else {
            let automaton = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&contents)
                .map_err(|e| e.to_string())?;
            Some((automaton, ids))
        };
        Ok(FastBpe {
            added,
            split_digits,
            plain_with_special_tokens,
            byte_ids,
            merges,
            classes: Classes::new()?,
            cache: Cache::new(),
        })
    }

    /// Whether this path gives `encode(text, add_special_tokens)`'s result.
    pub fn handles(&self, add_special_tokens: bool) -> bool {
        !add_special_tokens || self.plain_with_special_tokens
    }

    /// Appends the ids of `text` and each token's byte range in it (a token holding part of
    /// a character covers the whole character, as in `tokenizers`). `false` when the text
    /// holds a byte the vocabulary lacks: then the caller encodes it with `tokenizers`.
    #[must_use]
    pub fn encode(
        &self,
        text: &str,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) -> bool {
        ids.reserve(text.len() / 3);
        offsets.reserve(text.len() / 3);
        let mut out = Out {
            text,
            ids,
            offsets,
            lacks_a_byte: false,
        };
        let mut at = 0;
        if let Some((automaton, added_ids)) = &self.added {
            for m in automaton.find_iter(text) {
                self.encode_segment(&mut out, at, m.start());
                out.push(added_ids[m.pattern().as_usize()], m.start(), m.end());
                at = m.end();
            }
        }
        self.encode_segment(&mut out, at, text.len());
        !out.lacks_a_byte
    }

    /// Text free of added tokens: digits apart (when configured), then the GPT-2 pattern.
    fn encode_segment(&self, out: &mut Out, start: usize, end: usize) {
        let text = out.text;
        let mut piece = |s: usize, e: usize| self.encode_piece(out, s, e);
        if !self.split_digits {
            return self.split_pattern(text, start, end, &mut piece);
        }
        let mut from = start;
        for (i, c) in text[start..end].char_indices() {
            if c.is_numeric() {
                let i = start + i;
                self.split_pattern(text, from, i, &mut piece);
                piece(i, i + c.len_utf8());
                from = i + c.len_utf8();
            }
        }
        self.split_pattern(text, from, end, &mut piece);
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, matched
    /// from each position in turn as Oniguruma does, on `text[start..end]` alone: `piece` gets
    /// the byte range of each match.
    fn split_pattern(
        &self,
        text: &str,
        start: usize,
        end: usize,
        piece: &mut impl FnMut(usize, usize),
    ) {
        let class_at = |i: usize| -> Option<(char, Class)> {
            let c = text[i..end].chars().next()?;
            Some((c, self.classes.of(c)))
        };
        // The end of the run of `class` characters from `i`.
        let run_end = |mut i: usize, class: Class| -> usize {
            while let Some((c, k)) = class_at(i) {
                if k != class {
                    break;
                }
                i += c.len_utf8();
            }
            i
        };
        let mut i = start;
        while i < end {
            let (c, class) = class_at(i).expect("i < end");
            let next = i + c.len_utf8();
            if c == '\'' {
                let rest = &text.as_bytes()[next..end];
                let n = match rest {
                    [b's' | b't' | b'm' | b'd', ..] => 1,
                    [b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..] => 2,
                    _ => 0,
                };
                if n > 0 {
                    piece(i, next + n);
                    i = next + n;
                    continue;
                }
            }
            if c == ' ' {
                if let Some((_, k)) = class_at(next).filter(|(_, k)| *k != Class::Space) {
                    let e = run_end(next, k);
                    piece(i, e);
                    i = e;
                    continue;
                }
            }
            let e = match class {
                Class::Space => {
                    let e = run_end(i, Class::Space);
                    if e == end {
                        e
                    } else {
                        // `\s+(?!\S)` leaves the last space to the word that follows; a
                        // single space before a word is `\s+`.
                        let last = text[i..e].chars().next_back().expect("non-empty run");
                        let before_last = e - last.len_utf8();
                        if before_last > i {
                            before_last
                        } else {
                            e
                        }
                    }
                }
                k => run_end(next, k),
            };
            piece(i, e);
            i = e;
        }
    }

    /// BPE over the bytes of `text[start..end]`.
    fn encode_piece(&self, out: &mut Out, start: usize, end: usize) {
        let bytes = &out.text.as_bytes()[start..end];
        if bytes.is_empty() {
            return;
        }
        if bytes.len() == 1 {
            match self.byte_ids[bytes[0] as usize] {
                NO_ID => out.lacks_a_byte = true,
                id => out.push(id, start, end),
            }
            return;
        }
        let cacheable = bytes.len() <= CACHE_MAX_PIECE;
        if cacheable {
            let shard = self.cache.shard(bytes).lock().expect("cache lock");
            if let Some(tokens) = shard.get(bytes) {
                out.push_tokens(tokens, start);
                return;
            }
        }
        if bytes.iter().any(|&b| self.byte_ids[b as usize] == NO_ID) {
            out.lacks_a_byte = true;
            return;
        }
        let tokens = self.merge(bytes);
        out.push_tokens(&tokens, start);
        if cacheable {
            let mut shard = self.cache.shard(bytes).lock().expect("cache lock");
            if shard.len() < CACHE_SHARD_CAPACITY {
                shard.insert(bytes.into(), tokens);
            }
        }
    }

    /// Merges adjacent symbols lowest rank first, the leftmost of equal ranks first: the order
    /// `tokenizers`' `Word::merge_all` pops them from its heap.
    fn merge(&self, bytes: &[u8]) -> Tokens {
        let mut symbols: Vec<(u32, u32)> = bytes
            .iter()
            .map(|&b| (self.byte_ids[b as usize], 1))
            .collect();
        let rank = |a: (u32, u32), b: (u32, u32)| {
            self.merges
                .get(&((u64::from(a.0) << 32) | u64::from(b.0)))
                .copied()
        };
        // ranks[i]: the merge of symbols i and i + 1, if any.
        let mut ranks: Vec<Option<(u32, u32)>> =
            symbols.windows(2).map(|w| rank(w[0], w[1])).collect();
        loop {
            let best = ranks
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.map(|(rank, id)| (rank, i, id)))
                .min();
            let Some((_, i, id)) = best else {
                break;
            };
            symbols[i] = (id, symbols[i].1 + symbols[i + 1].1);
            symbols.remove(i + 1);
            ranks.remove(i);
            if i + 1 < symbols.len() {
                ranks[i] = rank(symbols[i], symbols[i + 1]);
            }
            if i > 0 {
                ranks[i - 1] = rank(symbols[i - 1], symbols[i]);
            }
        }
        symbols.into_boxed_slice()
    }
}

/// Where encoded tokens go.
struct Out<'a> {
    text: &'a str,
    ids: &'a mut Vec<u32>,
    offsets: &'a mut Vec<(usize, usize)>,
    /// A byte without a vocabulary id was met.
    lacks_a_byte: bool,
}

impl Out<'_> {
    fn push(&mut self, id: u32, start: usize, end: usize) {
        self.ids.push(id);
        self.offsets.push((start, end));
    }

    /// A piece's tokens from byte `start`, each widened to whole characters.
    fn push_tokens(&mut self, tokens: &[(u32, u32)], start: usize) {
        let mut at = start;
        for &(id, len) in tokens {
            let end = at + len as usize;
            let mut s = at;
            while !self.text.is_char_boundary(s) {
                s -= 1;
            }
            let mut e = end;
            while !self.text.is_char_boundary(e) {
                e += 1;
            }
            self.push(id, s, e);
            at = end;
        }
    }
}

/// `Some(split_digits)` for the pre-tokenizers this module reproduces.
fn supported_pre_tokenizer(json: &Json) -> Option<bool> {
    let field = |j: &Json, key: &str| j.get(key).cloned().unwrap_or(Json::Null);
    let byte_level = |j: &Json| {
        field(j, "type") == "ByteLevel"
            && field(j, "add_prefix_space") == false
            && field(j, "use_regex") == true
    };
    let digits = |j: &Json| field(j, "type") == "Digits" && field(j, "individual_digits") == true;
    match field(json, "type").as_str()? {
        "ByteLevel" => byte_level(json).then_some(false),
        "Sequence" => match field(json, "pretokenizers").as_array()?.as_slice() {
            [only] => byte_level(only).then_some(false),
            [first, last] => (digits(first) && byte_level(last)).then_some(true),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::tokenize::fixtures::{json, tokenizer};

    /// Fragments that exercise every branch of the pattern and of the merges: contractions,
    /// runs of each class, whitespace before words and at the end, digits of other scripts,
    /// combining marks, letters the tokenizer splits mid-character, added tokens and near
    /// misses, and control bytes the vocabulary lacks.
    const FRAGMENTS: &[&str] = &[
        "'s",
        "'t",
        "'re",
        "'ve",
        "'m",
        "'ll",
        "'d",
        "'S",
        "'x",
        "''",
        "'",
        " '",
        "don't",
        "a",
        "Hello",
        " world",
        "  ",
        " ",
        "   ",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        " \n ",
        "\u{a0}",
        "\u{3000}",
        "\u{85}",
        "\u{2028}",
        "\u{200b}",
        "\u{feff}",
        "é",
        "e\u{301}",
        "Straße",
        "ﬁ",
        "12",
        "7",
        "٣٤",
        "Ⅻ",
        "½",
        "²",
        "你好",
        "。",
        "ሰላም",
        "🙂",
        "👩\u{200d}💻",
        "🇬🇧",
        "1\u{fe0f}\u{20e3}",
        "नमस्ते",
        "مرحبا",
        "สวัสดี",
        "안녕",
        "ǅ",
        "ʰ",
        "\u{e000}",
        "\u{10fffd}",
        "!!",
        "...",
        "?!",
        "-->",
        "$",
        "(x)",
        "<|im_start|>",
        "<|im_end|>",
        "<|im_start",
        "|>",
        "<",
        "<|endoftext|>",
        "\u{0}",
        "\u{4}",
        "\u{7f}",
        "\u{fffd}",
        "Bore da",
        "habari",
        "ninapenda",
        "mae'r",
        "rydw i'n",
    ];

    fn random_text(rng: &mut ChaCha8Rng) -> String {
        let n = rng.gen_range(1..=12);
        (0..n)
            .map(|_| FRAGMENTS[rng.gen_range(0..FRAGMENTS.len())])
            .collect()
    }

    fn texts() -> Vec<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut texts: Vec<String> = (0..4000).map(|_| random_text(&mut rng)).collect();
        let expected = json("expected_text.json");
        for rows in expected["texts"].as_object().unwrap().values() {
            for row in rows.as_array().unwrap() {
                texts.push(row["text"].as_str().unwrap().to_string());
            }
        }
        for case in json("expected_chat.json")["cases"].as_array().unwrap() {
            if let Some(rendered) = case["rendered"].as_str() {
                texts.push(rendered.to_string());
            }
        }
        texts.push(String::new());
        texts
    }

    #[test]
    fn the_pattern_splits_as_oniguruma_does() {
        let fast = FastBpe::new(tokenizer("chatml").inner()).unwrap();
        let regex = onig::Regex::new(
            r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        )
        .unwrap();
        for text in texts() {
            let want: Vec<(usize, usize)> = regex.find_iter(&text).collect();
            let mut got = Vec::new();
            fast.split_pattern(&text, 0, text.len(), &mut |s, e| got.push((s, e)));
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn the_fast_path_encodes_as_tokenizers_does() {
        let texts = texts();
        let mut checked = 0;
        for name in ["chatml", "llama3", "qwen25", "mistral", "chatml-generation"] {
            let tok = tokenizer(name);
            assert!(tok.has_fast_path(), "{name}");
            let slow = tok.clone().without_fast_path();
            for special in [false, true] {
                for text in &texts {
                    let want = slow.encode_with_offsets(text, special).unwrap();
                    // Twice: the second time from the cache.
                    for _ in 0..2 {
                        let got = tok.encode_with_offsets(text, special).unwrap();
                        assert_eq!(got, want, "{name}, add_special_tokens {special}: {text:?}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 30_000, "{checked}");
    }

    #[test]
    fn other_tokenizers_take_the_slow_path() {
        let tok = tokenizer("chatml");
        let mut inner = tok.inner().clone();
        inner.with_normalizer(Some(tokenizers::normalizers::NFC));
        let err = FastBpe::new(&inner).unwrap_err();
        assert!(err.contains("normalizer"), "{err}");
        let mut inner = tok.inner().clone();
        inner.with_pre_tokenizer(Some(
            tokenizers::pre_tokenizers::byte_level::ByteLevel::new(true, true, true),
        ));
        let err = FastBpe::new(&inner).unwrap_err();
        assert!(err.contains("pre-tokenizer"), "{err}");
    }
}

//! SentencePiece BPE vocabularies (Llama 2, Mistral v0.1–v0.3, Phi-3, …) as llama.cpp's
//! `llama` tokenizer model, both ways.
//!
//! transformers turns a SentencePiece BPE model into a `tokenizer.json` of type BPE with
//! `byte_fallback`, whose merges are every pair of pieces that concatenates to a piece, ordered
//! by that piece's score. llama.cpp's SentencePiece tokenizer has no merge list: it repeatedly
//! joins the adjacent pair whose concatenation is the vocabulary piece of highest score. The
//! two agree when (a) every such pair is a merge and (b) the merges producing one piece are
//! consecutive, so the piece's first merge rank can serve as its score: [`scores`] checks both
//! and refuses a merge list that cannot be written as scores.
//!
//! The `▁` space prefix: llama.cpp adds one (`add_space_prefix`) before the text and after each
//! special token, exactly as the normalizer `Prepend("▁")` of Llama 2's tokenizer.json does.
//! transformers 5's own conversion uses a `Metaspace` pre-tokenizer instead, which adds it at
//! the start of the text only and not before a leading space: those files are written with
//! `add_space_prefix` and a warning, as llama.cpp cannot express that rule.

use super::{TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_USER_DEFINED};
use anyhow::{bail, Result};
use serde_json::{json, Map, Value as Json};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The `▁` SentencePiece uses for a space.
const SPACE: &str = "\u{2581}";

/// Score of the pieces that no merge produces (characters, bytes, specials): never compared.
const UNMERGED_SCORE: f32 = 0.0;

/// How the text gets its `▁` prefix, read from tokenizer.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpacePrefix {
    pub add_space_prefix: bool,
    /// Whether llama.cpp reproduces transformers exactly (false: Metaspace's rule).
    pub exact: bool,
}

/// Reads the normalizer / pre-tokenizer pair a SentencePiece BPE tokenizer.json may have.
pub fn space_prefix(tok: &Json, path: &Path) -> Result<SpacePrefix> {
    let normalizer = &tok["normalizer"];
    let pre = &tok["pre_tokenizer"];
    let steps: Vec<&Json> = match normalizer {
        Json::Null => vec![],
        n if n["type"] == "Sequence" => n["normalizers"].as_array().into_iter().flatten().collect(),
        n => vec![n],
    };
    let is_prepend = |s: &Json| s["type"] == "Prepend" && s["prepend"] == SPACE;
    let is_replace =
        |s: &Json| s["type"] == "Replace" && s["pattern"]["String"] == " " && s["content"] == SPACE;
    match (steps.as_slice(), pre) {
        ([p, r], Json::Null) | ([r, p], Json::Null) if is_prepend(p) && is_replace(r) => {
            Ok(SpacePrefix {
                add_space_prefix: true,
                exact: true,
            })
        }
        ([r], Json::Null) if is_replace(r) => Ok(SpacePrefix {
            add_space_prefix: false,
            exact: true,
        }),
        ([], m) if m["type"] == "Metaspace" && m["replacement"] == SPACE => {
            match m["prepend_scheme"].as_str().unwrap_or("always") {
                "never" => Ok(SpacePrefix {
                    add_space_prefix: false,
                    exact: true,
                }),
                scheme => {
                    tracing::warn!(
                        "{}: the Metaspace pre-tokenizer (prepend_scheme {scheme}) adds `▁` {} \
                         and not before a leading space; llama.cpp adds it before the text and \
                         after every special token, so in llama.cpp a text that starts with a \
                         space, or follows a special token, gets one `▁` more than in training",
                        path.display(),
                        if scheme == "first" {
                            "at the start of the text only"
                        } else {
                            "to each piece"
                        }
                    );
                    Ok(SpacePrefix {
                        add_space_prefix: true,
                        exact: false,
                    })
                }
            }
        }
        _ => bail!(
            "{}: a SentencePiece BPE tokenizer.json needs the normalizer \
             Prepend(\"▁\") + Replace(\" \", \"▁\") (Llama 2, Mistral), Replace alone, or a \
             Metaspace pre-tokenizer, which llama.cpp's `llama` tokenizer reproduces; found \
             normalizer {normalizer} and pre_tokenizer {pre}",
            path.display()
        ),
    }
}

/// Whether a token is one of SentencePiece's byte pieces `<0xAB>`.
pub fn is_byte_piece(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && t[3..5].bytes().all(|b| b.is_ascii_hexdigit())
}

/// llama.cpp's token type of a SentencePiece vocabulary entry (added tokens set elsewhere).
pub fn token_type(token: &str, id: u32, unk: Option<u32>) -> i32 {
    if Some(id) == unk {
        TOKEN_UNKNOWN
    } else if is_byte_piece(token) {
        TOKEN_BYTE
    } else {
        TOKEN_NORMAL
    }
}

/// Scores for llama.cpp from a BPE merge list: `-(1 + rank)` of the first merge producing each
/// piece.
/// `tokens` is the GGUF token list, `mergeable[id]` whether the piece is part of the BPE model
/// (not an added, byte or padding token); `merges` are `(left, right)` by rank.
pub fn scores(
    tokens: &[String],
    mergeable: &[bool],
    merges: &[(String, String)],
    path: &Path,
) -> Result<Vec<f32>> {
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| mergeable[*i])
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut first_rank: Vec<Option<usize>> = vec![None; tokens.len()];
    let mut previous: Option<usize> = None;
    for (rank, (l, r)) in merges.iter().enumerate() {
        let joined = format!("{l}{r}");
        let Some(&id) = ids.get(joined.as_str()) else {
            bail!(
                "{}: merge {rank} ({l:?} {r:?}) makes {joined:?}, which is not in the vocabulary",
                path.display()
            );
        };
        match first_rank[id] {
            None => first_rank[id] = Some(rank),
            Some(_) if previous == Some(id) => {}
            Some(first) => bail!(
                "{}: merge {rank} ({l:?} {r:?}) makes {joined:?} again after other pieces (its \
                 first merge is {first}); llama.cpp's SentencePiece tokenizer orders merges by \
                 one score per piece, so this BPE cannot be written as a `llama` vocabulary",
                path.display()
            ),
        }
        previous = Some(id);
    }
    let merge_set: HashSet<(&str, &str)> = merges
        .iter()
        .map(|(l, r)| (l.as_str(), r.as_str()))
        .collect();
    for (piece, &id) in &ids {
        for (cut, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(cut);
            if ids.contains_key(l) && ids.contains_key(r) && !merge_set.contains(&(l, r)) {
                bail!(
                    "{}: pieces {l:?} and {r:?} join to the piece {piece:?} (id {id}) but are not \
                     a merge; llama.cpp's SentencePiece tokenizer would join them, transformers \
                     does not. This BPE (trained with byte fallback by the tokenizers library, \
                     not converted from SentencePiece) cannot be written as a `llama` vocabulary",
                    path.display()
                );
            }
        }
    }
    Ok(first_rank
        .iter()
        .map(|r| r.map_or(UNMERGED_SCORE, |r| -(r as f32) - 1.0))
        .collect())
}

/// The merges of a `llama` vocabulary, as transformers' SentencePiece conversion builds them:
/// every pair of normal pieces that joins to a normal piece, by that piece's score (highest
/// first), then by the ids of the pair.
pub fn merges_from_scores(
    tokens: &[String],
    types: &[i32],
    scores: &[f32],
) -> Vec<(String, String)> {
    let normal: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types[*i] == TOKEN_NORMAL)
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut found: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (piece, &id) in &normal {
        for (cut, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(cut);
            if let (Some(&li), Some(&ri)) = (normal.get(l), normal.get(r)) {
                found.push((scores[id], id, li, ri));
            }
        }
    }
    found.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then((a.2, a.3).cmp(&(b.2, b.3)))
    });
    found
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l].clone(), tokens[r].clone()))
        .collect()
}

/// The `tokenizer.json` model, normalizer and decoder of a `llama` vocabulary.
pub fn tokenizer_parts(
    tokens: &[String],
    types: &[i32],
    scores: &[f32],
    unk: Option<&str>,
    add_space_prefix: bool,
) -> Map<String, Json> {
    let mut vocab = Map::new();
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert(token.clone(), json!(id));
    }
    let merges: Vec<Json> = merges_from_scores(tokens, types, scores)
        .into_iter()
        .map(|(l, r)| json!([l, r]))
        .collect();
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let mut parts = Map::new();
    parts.insert("normalizer".into(), normalizer);
    parts.insert("pre_tokenizer".into(), Json::Null);
    parts.insert(
        "decoder".into(),
        json!({"type": "Sequence", "decoders": decoders}),
    );
    parts.insert(
        "model".into(),
        json!({
            "type": "BPE", "dropout": null, "unk_token": unk,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        }),
    );
    parts
}

/// Token types of added tokens in a SentencePiece vocabulary (specials are control tokens).
pub fn added_type(special: bool) -> i32 {
    if special {
        TOKEN_CONTROL
    } else {
        TOKEN_USER_DEFINED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn scores_are_first_merge_ranks_and_round_trip_to_the_same_merges() {
        let tokens = s(&["<unk>", "a", "b", "c", "ab", "bc", "abc", "<0x41>"]);
        let mergeable = [false, true, true, true, true, true, true, false];
        // every joinable pair is a merge; abc's two merges are consecutive
        let merges = pairs(&[("a", "b"), ("b", "c"), ("a", "bc"), ("ab", "c")]);
        let sc = scores(&tokens, &mergeable, &merges, Path::new("t.json")).unwrap();
        assert_eq!(sc, vec![0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, 0.0]);
        let types = [TOKEN_UNKNOWN, 1, 1, 1, 1, 1, 1, TOKEN_BYTE];
        // the two pairs making `abc` come in id order: (a, bc) before (ab, c)
        assert_eq!(merges_from_scores(&tokens, &types, &sc), merges);
    }

    #[test]
    fn a_missing_pair_or_a_split_merge_group_is_refused() {
        let tokens = s(&["a", "b", "c", "ab", "bc", "abc"]);
        let all = [true; 6];
        let missing = pairs(&[("a", "b"), ("b", "c"), ("ab", "c")]);
        let err = scores(&tokens, &all, &missing, Path::new("t.json")).unwrap_err();
        assert!(err.to_string().contains("\"a\" and \"bc\""), "{err}");
        let split = pairs(&[("a", "b"), ("ab", "c"), ("b", "c"), ("a", "bc")]);
        let err = scores(&tokens, &all, &split, Path::new("t.json")).unwrap_err();
        assert!(
            err.to_string().contains("again after other pieces"),
            "{err}"
        );
    }

    #[test]
    fn the_space_prefix_forms() {
        let p = Path::new("t.json");
        let legacy = json!({"normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}, "pre_tokenizer": null});
        assert_eq!(
            space_prefix(&legacy, p).unwrap(),
            SpacePrefix {
                add_space_prefix: true,
                exact: true
            }
        );
        let gemma = json!({"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}, "pre_tokenizer": null});
        assert_eq!(
            space_prefix(&gemma, p).unwrap(),
            SpacePrefix {
                add_space_prefix: false,
                exact: true
            }
        );
        let meta = json!({"normalizer": null, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}});
        assert_eq!(
            space_prefix(&meta, p).unwrap(),
            SpacePrefix {
                add_space_prefix: true,
                exact: false
            }
        );
        let odd = json!({"normalizer": {"type": "NFKC"}, "pre_tokenizer": null});
        let err = space_prefix(&odd, p).unwrap_err().to_string();
        assert!(err.contains("NFKC") && err.contains("Prepend"), "{err}");
    }

    #[test]
    fn byte_pieces() {
        assert!(is_byte_piece("<0x0A>") && is_byte_piece("<0xfF>"));
        assert!(!is_byte_piece("<0x0A") && !is_byte_piece("<0xZZ>") && !is_byte_piece("<s>"));
    }
}

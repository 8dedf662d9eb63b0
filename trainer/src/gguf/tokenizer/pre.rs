//! Byte-level BPE pre-tokenizers by llama.cpp's names (`tokenizer.ggml.pre`).
//!
//! GGUF does not store a pre-tokenizer, only its name; llama.cpp's loader
//! (`src/llama-vocab.cpp`) maps each name to fixed split regexes and flags, and rejects names
//! it does not know (`unknown pre-tokenizer type`). [`FAMILIES`] lists the behaviours loam
//! writes and reads: the `tokenizers` pre-tokenizer equivalent to llama.cpp's regexes, the
//! BPE `ignore_merges` flag llama.cpp sets for them, and every name that selects them.
//!
//! [`detect`] names a model's pre-tokenizer as llama.cpp's converter does, from the token ids
//! of its probe text ([`super::probe`]): a vocabulary the converter knows gets the converter's
//! name. Any other (a tokenizer trained for a new language) gets the first family that, put in
//! place of the model's own pre-tokenizer, gives the same ids on the probe text and the
//! multilingual check texts. Either way the family must reproduce those ids, or the export is
//! refused.

use super::probe::{python_list, CHKTXT, KNOWN_HASHES, VERIFY_TEXTS};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::str::FromStr;

/// One llama.cpp pre-tokenizer behaviour.
pub struct Family {
    /// The name loam writes when the probe hash does not pick another.
    pub name: &'static str,
    /// Other names llama.cpp maps to the same regexes and merge rule (read on import, and
    /// written when the converter's hash table says so).
    pub aliases: &'static [&'static str],
    /// llama.cpp's BPE `ignore_merges` for these names: a whole-word vocabulary hit wins.
    pub ignore_merges: bool,
    split: Split,
}

enum Split {
    /// GPT-2's regex, inside `ByteLevel(use_regex = true)`.
    Gpt2,
    /// Every digit alone, then GPT-2's regex (llama.cpp: `\p{N}` then the GPT-2 regex).
    DigitsThenGpt2,
    /// One `Split` regex (as the models' tokenizer.json has it), then `ByteLevel` without regex.
    Regex(&'static str),
}

/// Llama 3's split regex (llama.cpp's LLAMA3 pre-type, with `(?i:…)` spelled out there).
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with digits one by one.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral Nemo's (llama.cpp's TEKKEN, whose source comment quotes this regex).
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The families, in the order [`detect`] tries them. Names from llama-vocab.cpp 0.3.36.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "gpt-2",
        aliases: &["phi-2"],
        ignore_merges: false,
        split: Split::Gpt2,
    },
    Family {
        name: "smollm",
        aliases: &["starcoder", "refact"],
        ignore_merges: false,
        split: Split::DigitsThenGpt2,
    },
    Family {
        name: "llama-bpe",
        aliases: &["llama3", "llama-v3", "falcon3", "pixtral"],
        ignore_merges: true,
        split: Split::Regex(LLAMA3),
    },
    Family {
        name: "smaug-bpe",
        aliases: &["dbrx"],
        ignore_merges: false,
        split: Split::Regex(LLAMA3),
    },
    Family {
        name: "qwen2",
        aliases: &["deepseek-r1-qwen"],
        ignore_merges: false,
        split: Split::Regex(QWEN2),
    },
    Family {
        name: "tekken",
        aliases: &[],
        ignore_merges: true,
        split: Split::Regex(TEKKEN),
    },
];

/// Names loam wrote before it used llama.cpp's: read on import, never written.
const LEGACY_NAMES: &[(&str, &str)] = &[("gpt2", "gpt-2"), ("default", "gpt-2")];

impl Family {
    /// The family a `tokenizer.ggml.pre` name selects.
    pub fn by_name(name: &str) -> Option<&'static Family> {
        let name = LEGACY_NAMES
            .iter()
            .find(|(old, _)| *old == name)
            .map_or(name, |(_, new)| new);
        FAMILIES
            .iter()
            .find(|f| f.name == name || f.aliases.contains(&name))
    }

    /// Every name import reads, for error messages.
    pub fn all_names() -> Vec<&'static str> {
        FAMILIES
            .iter()
            .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
            .collect()
    }

    /// The `tokenizers` pre-tokenizer llama.cpp's regexes for this family stand for.
    pub fn pre_tokenizer(&self) -> Json {
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        match self.split {
            Split::Gpt2 => byte_level(true),
            Split::DigitsThenGpt2 => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            Split::Regex(regex) => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                byte_level(false)]}),
        }
    }

    /// Whether `pre` is this family's pre-tokenizer up to flags that do not change ids
    /// (`trim_offsets`, offsets only).
    fn same_shape(&self, pre: &Json) -> bool {
        strip_offsets_flags(pre) == strip_offsets_flags(&self.pre_tokenizer())
    }
}

/// What [`detect`] found: the name to write and how it was recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub name: String,
    /// sha256 of the probe's ids (llama.cpp's `chkhsh`).
    pub probe_hash: String,
    /// The model llama.cpp's converter knows this vocabulary from, if the hash is listed.
    pub known_model: Option<&'static str>,
}

/// Names the pre-tokenizer of a byte-level BPE `tokenizer.json` (path for messages), or
/// refuses with what was found and what to do.
pub fn detect(tokenizer_json: &Json, path: &Path) -> Result<Detected> {
    let original = load(tokenizer_json)
        .with_context(|| format!("{}: the tokenizers library cannot load it", path.display()))?;
    let probe_ids = encode(&original, CHKTXT, true)?;
    let probe_hash = hex(&Sha256::digest(python_list(&probe_ids).as_bytes()));
    let known = KNOWN_HASHES.iter().find(|(h, _, _)| *h == probe_hash);
    let model_ignores_merges = tokenizer_json["model"]["ignore_merges"]
        .as_bool()
        .unwrap_or(false);
    let reference = reference_ids(&original)?;

    // The converter's answer first, then the family of the same shape, then the rest.
    let mut order: Vec<&Family> = Vec::new();
    if let Some(f) = known.and_then(|(_, name, _)| Family::by_name(name)) {
        order.push(f);
    }
    let pre = &tokenizer_json["pre_tokenizer"];
    order.extend(FAMILIES.iter().filter(|f| f.same_shape(pre)));
    order.extend(FAMILIES.iter());
    let mut tried = Vec::new();
    for family in order {
        if tried.contains(&family.name) {
            continue;
        }
        tried.push(family.name);
        if family.ignore_merges != model_ignores_merges {
            continue;
        }
        if reference_ids(&with_family(tokenizer_json, family)?)? == reference {
            let name = match known {
                Some((_, name, _))
                    if Family::by_name(name).map(|f| f.name) == Some(family.name) =>
                {
                    name.to_string()
                }
                _ => family.name.to_string(),
            };
            return Ok(Detected {
                name,
                probe_hash,
                known_model: known.map(|k| k.2),
            });
        }
    }
    bail!(
        "{}: llama.cpp has no pre-tokenizer that splits text as this tokenizer does, so a GGUF \
         would tokenize differently from the model (found pre_tokenizer {}, normalizer {}, \
         ignore_merges {model_ignores_merges}; probe hash {probe_hash}{}). loam writes the \
         llama.cpp pre-tokenizers {} and tried each on llama.cpp's probe text and {} \
         multilingual texts. Use one of those models' tokenizer.json pre-tokenizers \
         (and retrain on it), or export with llama.cpp's convert_hf_to_gguf.py after adding \
         this pre-tokenizer there",
        path.display(),
        summarize(pre),
        summarize(&tokenizer_json["normalizer"]),
        known.map_or(String::new(), |k| format!(
            ", known to llama.cpp as `{}`",
            k.1
        )),
        FAMILIES
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", "),
        VERIFY_TEXTS.len(),
    )
}

/// `tokenizer_json` with the family's pre-tokenizer and merge rule and no normalizer (llama.cpp
/// applies none to byte-level BPE).
fn with_family(tokenizer_json: &Json, family: &Family) -> Result<tokenizers::Tokenizer> {
    let mut j = tokenizer_json.clone();
    j["pre_tokenizer"] = family.pre_tokenizer();
    j["normalizer"] = Json::Null;
    j["model"]["ignore_merges"] = json!(family.ignore_merges);
    load(&j)
}

fn load(j: &Json) -> Result<tokenizers::Tokenizer> {
    tokenizers::Tokenizer::from_str(&j.to_string()).map_err(|e| anyhow::anyhow!("{e}"))
}

fn encode(t: &tokenizers::Tokenizer, text: &str, specials: bool) -> Result<Vec<u32>> {
    Ok(t.encode(text, specials)
        .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?
        .get_ids()
        .to_vec())
}

/// The ids of the probe and the check texts, without added special tokens.
fn reference_ids(t: &tokenizers::Tokenizer) -> Result<Vec<Vec<u32>>> {
    std::iter::once(CHKTXT)
        .chain(VERIFY_TEXTS.iter().copied())
        .map(|text| encode(t, text, false))
        .collect()
}

fn strip_offsets_flags(j: &Json) -> Json {
    match j {
        Json::Object(o) => Json::Object(
            o.iter()
                .filter(|(k, _)| k.as_str() != "trim_offsets")
                .map(|(k, v)| (k.clone(), strip_offsets_flags(v)))
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(strip_offsets_flags).collect()),
        other => other.clone(),
    }
}

/// A pre-tokenizer or normalizer in a few words: its types and regexes.
fn summarize(j: &Json) -> String {
    let text = j.to_string();
    if text.len() <= 240 {
        text
    } else {
        format!("{}…", &text[..text.floor_char_boundary(240)])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures;

    fn tokenizer_json(dir: &Path) -> Json {
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()).unwrap()
    }

    #[test]
    fn smollm2_gets_llama_cpps_own_hash_and_name() {
        // The hash equals the converter's entry for SmolLM: the probe text, the id list
        // formatting and sha256 are the converter's.
        let dir = fixtures().join("models/smollm2-135m");
        let found = detect(&tokenizer_json(&dir), &dir).unwrap();
        assert_eq!(found.name, "smollm");
        assert_eq!(found.known_model, Some("HuggingFaceTB/SmolLM-135M"));
    }

    #[test]
    fn trained_tokenizers_are_named_by_their_ids() {
        let root = fixtures().join("tokenizers");
        for (case, want) in [
            ("gpt2-bytelevel", "gpt-2"),
            ("llama3-split", "llama-bpe"),
            ("qwen2-split", "qwen2"),
            ("tekken-split", "tekken"),
        ] {
            let dir = root.join(case);
            let found = detect(&tokenizer_json(&dir), &dir).unwrap();
            assert_eq!(found.name, want, "{case}");
            assert_eq!(found.known_model, None, "{case}");
        }
    }

    #[test]
    fn llama3_split_without_ignore_merges_is_smaug() {
        let dir = fixtures().join("tokenizers/llama3-split");
        let mut j = tokenizer_json(&dir);
        j["model"]["ignore_merges"] = json!(false);
        assert_eq!(detect(&j, &dir).unwrap().name, "smaug-bpe");
    }

    #[test]
    fn a_split_llama_cpp_lacks_is_refused_with_what_was_found() {
        let dir = fixtures().join("tokenizers/gpt2-bytelevel");
        let mut j = tokenizer_json(&dir);
        // Words never split from their spaces: no llama.cpp pre-tokenizer does that.
        j["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "[^\\n]+|\\n+"}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]});
        let err = detect(&j, &dir).unwrap_err().to_string();
        for needle in [
            "tokenizer.json",
            "[^\\\\n]+|\\\\n+",
            "gpt-2, smollm",
            "probe hash",
        ] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
    }

    #[test]
    fn every_name_maps_back_to_its_family() {
        for f in FAMILIES {
            assert_eq!(Family::by_name(f.name).unwrap().name, f.name);
            for a in f.aliases {
                assert_eq!(Family::by_name(a).unwrap().name, f.name);
            }
        }
        for (_, name, _) in KNOWN_HASHES {
            assert!(Family::by_name(name).is_some(), "{name}");
        }
        assert_eq!(Family::by_name("gpt2").unwrap().name, "gpt-2");
        assert!(Family::by_name("gemma4").is_none());
    }
}

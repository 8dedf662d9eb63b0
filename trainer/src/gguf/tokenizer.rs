//! The tokenizer both ways: `tokenizer.ggml.*` metadata ↔ `tokenizer.json` +
//! `tokenizer_config.json`.
//!
//! Only byte-level BPE tokenizers (`tokenizer.ggml.model = gpt2`: GPT-2, SmolLM, Llama 3,
//! Qwen2) are handled. The pre-tokenizer is not stored in GGUF, only named
//! (`tokenizer.ggml.pre`); [`pre_tokenizer_for`] turns the names llama.cpp uses back into the
//! `tokenizers` pre-tokenizer of the original model.

use anyhow::{bail, Context, Result};
use loam_gguf::{GgufFile, GgufWriter};
use serde_json::{json, Map, Value as Json};
use std::collections::HashMap;
use std::path::Path;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_USER_DEFINED: i32 = 4;
pub const TOKEN_UNUSED: i32 = 5;

/// Llama 3's split regex (`tokenizer.ggml.pre = llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (`tokenizer.ggml.pre = qwen2`): digits one by one.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The `tokenizer.ggml.pre` values import understands.
pub const SUPPORTED_PRE: &[&str] = &["default", "gpt2", "smollm", "llama-bpe", "qwen2"];

/// A byte-level BPE vocabulary with its special tokens, as GGUF stores it.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// Token strings by id (byte-level encoded, `Ġ` for a space).
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    /// `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// llama.cpp's pre-tokenizer name.
    pub pre: String,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
}

impl Vocab {
    /// Reads `tokenizer.ggml.*` and `tokenizer.chat_template`.
    pub fn from_gguf(f: &GgufFile) -> Result<Vocab> {
        let model = f.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            bail!(
                "{}: tokenizer.ggml.model is `{model}`; loam imports only byte-level BPE \
                 tokenizers (`gpt2`, as in GPT-2, SmolLM, Llama 3, Qwen2)",
                f.path().display()
            );
        }
        let tokens: Vec<String> = f
            .get_str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_string)
            .collect();
        let token_types = match f.get_opt::<Vec<i32>>("tokenizer.ggml.token_type")? {
            Some(t) => t,
            None => vec![TOKEN_NORMAL; tokens.len()],
        };
        if token_types.len() != tokens.len() {
            bail!(
                "{}: tokenizer.ggml.token_type has {} entries for {} tokens",
                f.path().display(),
                token_types.len(),
                tokens.len()
            );
        }
        let merges = f
            .get_opt::<Vec<&str>>("tokenizer.ggml.merges")?
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect();
        let id = |key: &str| -> Result<Option<u32>> {
            Ok(match f.metadata(key) {
                Some(v) => Some(
                    v.as_u64_lossless()
                        .with_context(|| format!("{key} is not an integer"))?
                        as u32,
                ),
                None => None,
            })
        };
        Ok(Vocab {
            pre: f
                .get_opt::<&str>("tokenizer.ggml.pre")?
                .unwrap_or("default")
                .to_string(),
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            add_bos: f
                .get_opt::<bool>("tokenizer.ggml.add_bos_token")?
                .unwrap_or(false),
            add_eos: f
                .get_opt::<bool>("tokenizer.ggml.add_eos_token")?
                .unwrap_or(false),
            chat_template: f
                .get_opt::<&str>("tokenizer.chat_template")?
                .map(str::to_string),
            tokens,
            token_types,
            merges,
        })
    }

    /// Reads `tokenizer.json` (+ `tokenizer_config.json`, `config.json`, `chat_template.jinja`)
    /// of a model directory; the vocabulary is padded to `vocab_size` (the embedding rows)
    /// with unused `[PADn]` tokens, as llama.cpp's converter does.
    pub fn from_hf_dir(dir: &Path, vocab_size: usize) -> Result<Vocab> {
        let path = dir.join("tokenizer.json");
        let tok = read_json(&path)?;
        let model = &tok["model"];
        if model["type"] != "BPE" || !tok["pre_tokenizer"].to_string().contains("ByteLevel") {
            bail!(
                "{}: only byte-level BPE tokenizers can be exported to GGUF (found model type {}); \
                 SentencePiece tokenizers are not supported yet",
                path.display(),
                model["type"]
            );
        }
        let vocab = model["vocab"]
            .as_object()
            .with_context(|| format!("{}: model.vocab is not an object", path.display()))?;
        let mut by_id: HashMap<u32, (String, i32)> = HashMap::new();
        for (token, id) in vocab {
            let id = id.as_u64().context("vocab id is not an integer")? as u32;
            by_id.insert(id, (token.clone(), TOKEN_NORMAL));
        }
        for added in tok["added_tokens"].as_array().into_iter().flatten() {
            let id = added["id"].as_u64().context("added token without id")? as u32;
            let content = added["content"]
                .as_str()
                .context("added token without content")?;
            let kind = if added["special"].as_bool().unwrap_or(false) {
                TOKEN_CONTROL
            } else {
                TOKEN_USER_DEFINED
            };
            by_id.insert(id, (content.to_string(), kind));
        }
        let max_id = by_id.keys().copied().max().map_or(0, |m| m as usize + 1);
        if max_id > vocab_size {
            bail!(
                "{}: the tokenizer has ids up to {} but the model's vocab_size is {vocab_size}",
                path.display(),
                max_id - 1
            );
        }
        let (tokens, token_types): (Vec<String>, Vec<i32>) = (0..vocab_size as u32)
            .map(|i| {
                by_id
                    .remove(&i)
                    .unwrap_or_else(|| (format!("[PAD{i}]"), TOKEN_UNUSED))
            })
            .unzip();
        let merges = model["merges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(pair) if pair.len() == 2 => Ok(format!(
                    "{} {}",
                    pair[0].as_str().unwrap_or_default(),
                    pair[1].as_str().unwrap_or_default()
                )),
                other => bail!("{}: unexpected merge {other}", path.display()),
            })
            .collect::<Result<Vec<_>>>()?;

        let config = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or(json!({}));
        let model_config = read_json_opt(&dir.join("config.json"))?.unwrap_or(json!({}));
        let id_of = |name: &str, config_key: &str| -> Option<u32> {
            let token = match &config[name] {
                Json::String(s) => Some(s.as_str()),
                Json::Object(o) => o.get("content").and_then(Json::as_str),
                _ => None,
            };
            token
                .and_then(|t| tokens.iter().position(|x| x == t))
                .map(|i| i as u32)
                .or_else(|| model_config[config_key].as_u64().map(|i| i as u32))
        };
        let (add_bos, add_eos) = added_specials(&tok["post_processor"], &config);
        let chat_template = match &config["chat_template"] {
            Json::String(s) => Some(s.clone()),
            Json::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        Ok(Vocab {
            pre: pre_name_of(&tok["pre_tokenizer"]),
            bos: id_of("bos_token", "bos_token_id"),
            eos: id_of("eos_token", "eos_token_id"),
            unk: id_of("unk_token", "unk_token_id"),
            pad: id_of("pad_token", "pad_token_id"),
            add_bos,
            add_eos,
            chat_template,
            tokens,
            token_types,
            merges,
        })
    }

    /// Adds `tokenizer.ggml.*` and `tokenizer.chat_template` to a GGUF being written.
    pub fn write_metadata(&self, w: &mut GgufWriter) -> Result<()> {
        w.add_metadata("tokenizer.ggml.model", "gpt2")?;
        w.add_metadata("tokenizer.ggml.pre", self.pre.as_str())?;
        w.add_metadata("tokenizer.ggml.tokens", self.tokens.clone())?;
        w.add_metadata("tokenizer.ggml.token_type", self.token_types.clone())?;
        w.add_metadata("tokenizer.ggml.merges", self.merges.clone())?;
        for (key, id) in [
            ("bos_token_id", self.bos),
            ("eos_token_id", self.eos),
            ("unknown_token_id", self.unk),
            ("padding_token_id", self.pad),
        ] {
            if let Some(id) = id {
                w.add_metadata(&format!("tokenizer.ggml.{key}"), id)?;
            }
        }
        w.add_metadata("tokenizer.ggml.add_bos_token", self.add_bos)?;
        w.add_metadata("tokenizer.ggml.add_eos_token", self.add_eos)?;
        if let Some(t) = &self.chat_template {
            w.add_metadata("tokenizer.chat_template", t.as_str())?;
        }
        Ok(())
    }

    fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize))
            .map(String::as_str)
    }

    /// `tokenizer.json` for the `tokenizers` library (and transformers).
    pub fn tokenizer_json(&self) -> Result<Json> {
        let pre_tokenizer = pre_tokenizer_for(&self.pre)?;
        let mut vocab = Map::new();
        for (id, token) in self.tokens.iter().enumerate() {
            vocab.insert(token.clone(), json!(id));
        }
        let merges: Vec<Json> = self
            .merges
            .iter()
            .map(|m| {
                let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
                json!([a, b])
            })
            .collect();
        let added_tokens: Vec<Json> = self
            .token_types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == TOKEN_CONTROL || t == TOKEN_USER_DEFINED)
            .map(|(id, &t)| {
                json!({
                    "id": id, "content": self.tokens[id], "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false,
                    "special": t == TOKEN_CONTROL,
                })
            })
            .collect();
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": self.post_processor(),
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": "", "end_of_word_suffix": "",
                "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": self.pre == "llama-bpe",
                "vocab": vocab, "merges": merges,
            },
        }))
    }

    /// BOS / EOS added around each sequence when GGUF says so.
    fn post_processor(&self) -> Json {
        let bos = self.token(self.bos).filter(|_| self.add_bos);
        let eos = self.token(self.eos).filter(|_| self.add_eos);
        let sequence = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
        let mut single = Vec::new();
        let mut specials = Map::new();
        for (token, id) in [(bos, self.bos), (eos, self.eos)] {
            if let (Some(t), Some(id)) = (token, id) {
                specials.insert(t.into(), json!({"id": t, "ids": [id], "tokens": [t]}));
            }
        }
        let special = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
        single.extend(bos.map(special));
        single.push(sequence("A", 0));
        single.extend(eos.map(special));
        let mut pair = single.clone();
        pair.push(sequence("B", 1));
        json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
    }

    /// `tokenizer_config.json`: special tokens, BOS/EOS flags and the chat template.
    pub fn tokenizer_config(&self, model_max_length: u64) -> Json {
        let mut c = Map::new();
        c.insert("add_bos_token".into(), json!(self.add_bos));
        c.insert("add_eos_token".into(), json!(self.add_eos));
        for (name, id) in [
            ("bos_token", self.bos),
            ("eos_token", self.eos),
            ("unk_token", self.unk),
            ("pad_token", self.pad),
        ] {
            if let Some(t) = self.token(id) {
                c.insert(name.into(), json!(t));
            }
        }
        c.insert("clean_up_tokenization_spaces".into(), json!(false));
        c.insert("model_max_length".into(), json!(model_max_length));
        c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
        if let Some(t) = &self.chat_template {
            c.insert("chat_template".into(), json!(t));
        }
        Json::Object(c)
    }
}

/// The `tokenizers` pre-tokenizer llama.cpp's `tokenizer.ggml.pre` name stands for.
pub fn pre_tokenizer_for(pre: &str) -> Result<Json> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    Ok(match pre {
        "default" | "gpt2" => byte_level(true),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})
        }
        "qwen2" => {
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]})
        }
        other => bail!(
            "tokenizer.ggml.pre is `{other}`, a pre-tokenizer loam does not know; supported: {}",
            SUPPORTED_PRE.join(", ")
        ),
    })
}

/// The llama.cpp name of a `tokenizer.json` pre-tokenizer (the inverse of
/// [`pre_tokenizer_for`]); `default` for anything else, which llama.cpp treats as GPT-2.
fn pre_name_of(pre_tokenizer: &Json) -> String {
    for name in ["smollm", "llama-bpe", "qwen2", "gpt2"] {
        if pre_tokenizer_for(name).ok().as_ref() == Some(pre_tokenizer) {
            return name.to_string();
        }
    }
    // Same structure up to flags such as trim_offsets: compare the regexes / steps only.
    let text = pre_tokenizer.to_string();
    if text.contains(r"\\p{N}{1,3}") {
        return "llama-bpe".into();
    }
    if text.contains("\"Digits\"") {
        return "smollm".into();
    }
    tracing::warn!("unrecognised pre-tokenizer, writing tokenizer.ggml.pre = default");
    "default".into()
}

/// Whether the post-processor adds BOS before / EOS after a single sequence; without one,
/// `add_bos_token` / `add_eos_token` of tokenizer_config.json.
fn added_specials(post: &Json, config: &Json) -> (bool, bool) {
    if let Some(single) = post["single"].as_array() {
        let pos_a = single.iter().position(|p| p.get("Sequence").is_some());
        let special_at = |i: usize| single[i].get("SpecialToken").is_some();
        if let Some(a) = pos_a {
            return (
                (0..a).any(special_at),
                (a + 1..single.len()).any(special_at),
            );
        }
    }
    (
        config["add_bos_token"].as_bool().unwrap_or(false),
        config["add_eos_token"].as_bool().unwrap_or(false),
    )
}

pub fn read_json(path: &Path) -> Result<Json> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn read_json_opt(path: &Path) -> Result<Option<Json>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

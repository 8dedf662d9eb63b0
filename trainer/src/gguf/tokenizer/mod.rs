//! The tokenizer both ways: `tokenizer.ggml.*` metadata ↔ `tokenizer.json` +
//! `tokenizer_config.json`. The entry point for export is [`Vocab::from_hf_dir`] (a model
//! directory → what llama.cpp needs, or a refusal naming what llama.cpp could not reproduce);
//! for import, [`Vocab::from_gguf`] then [`Vocab::tokenizer_json`].
//!
//! Two tokenizer models:
//! - byte-level BPE (`tokenizer.ggml.model = gpt2`: GPT-2, SmolLM, Llama 3, Qwen2, Mistral
//!   Nemo), with merges and a pre-tokenizer named the way llama.cpp knows it ([`pre`]);
//! - SentencePiece BPE with byte fallback (`llama`: Llama 2, Mistral v0.1–v0.3, Phi-3), with
//!   scores and token types ([`spm`]).
//!
//! Unigram vocabularies are refused: llama.cpp's `llama` model merges them by score and its
//! `t5` model has no byte fallback, so neither tokenizes as transformers does.

pub mod pre;
pub mod probe;
pub mod spm;

use anyhow::{bail, Context, Result};
use loam_gguf::{GgufFile, GgufWriter};
use pre::Family;
use serde_json::{json, Map, Value as Json};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// llama.cpp's token types (`tokenizer.ggml.token_type`, `llama_token_type`).
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_UNKNOWN: i32 = 2;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_USER_DEFINED: i32 = 4;
pub const TOKEN_UNUSED: i32 = 5;
pub const TOKEN_BYTE: i32 = 6;

/// The tokenizer models loam reads and writes (`tokenizer.ggml.model`).
pub const SUPPORTED_MODELS: &[&str] = &["gpt2", "llama"];

/// What is particular to each tokenizer model.
#[derive(Debug, Clone)]
pub enum Model {
    /// Byte-level BPE: tokens are byte-level encoded (`Ġ` for a space).
    BytePairs {
        /// `"left right"`, highest priority first.
        merges: Vec<String>,
        /// llama.cpp's pre-tokenizer name.
        pre: String,
    },
    /// SentencePiece BPE with byte fallback: tokens use `▁` for a space, `<0xAB>` for bytes.
    SentencePiece {
        scores: Vec<f32>,
        /// `▁` before the text and after each special token.
        add_space_prefix: bool,
    },
}

/// A vocabulary with its special tokens, as GGUF stores it.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// Token strings by id.
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub model: Model,
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
        let kind = f.get_str("tokenizer.ggml.model")?;
        let tokens: Vec<String> = f
            .get_str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_string)
            .collect();
        let model = match kind {
            "gpt2" => Model::BytePairs {
                merges: f
                    .get_opt::<Vec<&str>>("tokenizer.ggml.merges")?
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                pre: f
                    .get_opt::<&str>("tokenizer.ggml.pre")?
                    .unwrap_or("default")
                    .to_string(),
            },
            "llama" => Model::SentencePiece {
                scores: match f.get_opt::<Vec<f32>>("tokenizer.ggml.scores")? {
                    Some(s) if s.len() == tokens.len() => s,
                    Some(s) => bail!(
                        "{}: tokenizer.ggml.scores has {} entries for {} tokens",
                        f.path().display(),
                        s.len(),
                        tokens.len()
                    ),
                    None => vec![0.0; tokens.len()],
                },
                add_space_prefix: f
                    .get_opt::<bool>("tokenizer.ggml.add_space_prefix")?
                    .unwrap_or(true),
            },
            other => bail!(
                "{}: tokenizer.ggml.model is `{other}`; loam imports byte-level BPE (`gpt2`: \
                 GPT-2, SmolLM, Llama 3, Qwen2) and SentencePiece BPE (`llama`: Llama 2, \
                 Mistral) tokenizers",
                f.path().display()
            ),
        };
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
            model,
        })
    }

    /// Reads `tokenizer.json` (+ `tokenizer_config.json`, `config.json`, `chat_template.jinja`)
    /// of a model directory; the vocabulary is padded to `vocab_size` (the embedding rows)
    /// with unused `[PADn]` tokens, as llama.cpp's converter does. Refuses a tokenizer that
    /// llama.cpp would not tokenize as the model does.
    pub fn from_hf_dir(dir: &Path, vocab_size: usize) -> Result<Vocab> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            // Its message says what to do, e.g. for a model with only a tokenizer.model.
            loam_data::Tokenizer::from_model_dir(dir)?;
        }
        let tok = read_json(&path)?;
        let kind = tok["model"]["type"].as_str().unwrap_or_default();
        let byte_fallback = tok["model"]["byte_fallback"].as_bool().unwrap_or(false);
        let byte_level = tok["pre_tokenizer"].to_string().contains("\"ByteLevel\"");
        let config = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or(json!({}));
        let model_config = read_json_opt(&dir.join("config.json"))?.unwrap_or(json!({}));
        let configured = |name: &str| -> Option<String> {
            match &config[name] {
                Json::String(s) => Some(s.clone()),
                Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
                _ => None,
            }
        };
        let unk_text = configured("unk_token")
            .or_else(|| tok["model"]["unk_token"].as_str().map(str::to_string));
        let (tokens, token_types, model) = match kind {
            "BPE" if byte_fallback => {
                let unk_id = unk_text.as_deref().and_then(|t| vocab_id(&tok, t));
                let table = token_table(&tok, vocab_size, &path, |t, id| {
                    spm::token_type(t, id, unk_id)
                })?;
                let prefix = spm::space_prefix(&tok, &path)?;
                let merges = merge_pairs(&tok, &path)?;
                let mergeable: Vec<bool> = (0..table.tokens.len())
                    .map(|i| table.in_model[i] && table.types[i] == TOKEN_NORMAL)
                    .collect();
                let scores = spm::scores(&table.tokens, &mergeable, &merges, &path)?;
                let model = Model::SentencePiece {
                    scores,
                    add_space_prefix: prefix.add_space_prefix,
                };
                (table.tokens, table.types, model)
            }
            "BPE" if byte_level => {
                let detected = pre::detect(&tok, &path)?;
                tracing::info!(
                    "tokenizer.ggml.pre = {} (probe hash {}{})",
                    detected.name,
                    &detected.probe_hash[..12],
                    detected
                        .known_model
                        .map_or(String::new(), |m| format!(", llama.cpp knows it from {m}"))
                );
                let table = token_table(&tok, vocab_size, &path, |_, _| TOKEN_NORMAL)?;
                let merges = merge_pairs(&tok, &path)?
                    .into_iter()
                    .map(|(l, r)| format!("{l} {r}"))
                    .collect();
                let model = Model::BytePairs {
                    merges,
                    pre: detected.name,
                };
                (table.tokens, table.types, model)
            }
            "Unigram" => bail!(
                "{}: a Unigram (SentencePiece) tokenizer cannot be exported to GGUF exactly: \
                 llama.cpp's `llama` tokenizer merges pieces by score where Unigram picks the \
                 most likely segmentation (1 of 12 check texts tokenized the same), and its \
                 `t5` tokenizer has no byte fallback (10 of 12). Use the model with \
                 transformers, or a BPE tokenizer",
                path.display()
            ),
            other => bail!(
                "{}: model type `{other}` (byte_fallback {byte_fallback}, pre_tokenizer {}) \
                 cannot be exported to GGUF; loam writes byte-level BPE (GPT-2, SmolLM, \
                 Llama 3, Qwen2) and SentencePiece BPE with byte fallback (Llama 2, Mistral) \
                 tokenizers",
                path.display(),
                tok["pre_tokenizer"]
            ),
        };

        let id_of = |name: &str, config_key: &str| -> Option<u32> {
            configured(name)
                .and_then(|t| tokens.iter().position(|x| *x == t))
                .map(|i| i as u32)
                .or_else(|| model_config[config_key].as_u64().map(|i| i as u32))
        };
        let (add_bos, add_eos) = added_specials(&tok["post_processor"], &config);
        // the template loam and transformers would use (chat_template.jinja first); one that
        // cannot be read (a list without "default") is left out of the GGUF, as before
        let chat_template = loam_data::tokenize::find_chat_template(dir, &config)
            .ok()
            .flatten()
            .map(|t| t.text);
        let unk = id_of("unk_token", "unk_token_id").or_else(|| {
            unk_text
                .as_deref()
                .and_then(|t| tokens.iter().position(|x| x == t))
                .map(|i| i as u32)
        });
        Ok(Vocab {
            bos: id_of("bos_token", "bos_token_id"),
            eos: id_of("eos_token", "eos_token_id"),
            unk,
            pad: id_of("pad_token", "pad_token_id"),
            add_bos,
            add_eos,
            chat_template,
            tokens,
            token_types,
            model,
        })
    }

    /// Adds `tokenizer.ggml.*` and `tokenizer.chat_template` to a GGUF being written.
    pub fn write_metadata(&self, w: &mut GgufWriter) -> Result<()> {
        match &self.model {
            Model::BytePairs { merges, pre } => {
                w.add_metadata("tokenizer.ggml.model", "gpt2")?;
                w.add_metadata("tokenizer.ggml.pre", pre.as_str())?;
                w.add_metadata("tokenizer.ggml.tokens", self.tokens.clone())?;
                w.add_metadata("tokenizer.ggml.token_type", self.token_types.clone())?;
                w.add_metadata("tokenizer.ggml.merges", merges.clone())?;
            }
            Model::SentencePiece {
                scores,
                add_space_prefix,
            } => {
                // llama.cpp's converter writes `default` for SentencePiece models.
                w.add_metadata("tokenizer.ggml.model", "llama")?;
                w.add_metadata("tokenizer.ggml.pre", "default")?;
                w.add_metadata("tokenizer.ggml.tokens", self.tokens.clone())?;
                w.add_metadata("tokenizer.ggml.scores", scores.clone())?;
                w.add_metadata("tokenizer.ggml.token_type", self.token_types.clone())?;
                w.add_metadata("tokenizer.ggml.add_space_prefix", *add_space_prefix)?;
            }
        }
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
        let mut j = match &self.model {
            Model::BytePairs { merges, pre } => byte_pairs_json(&self.tokens, merges, pre)?,
            Model::SentencePiece {
                scores,
                add_space_prefix,
            } => spm::tokenizer_parts(
                &self.tokens,
                &self.token_types,
                scores,
                self.token(self.unk),
                *add_space_prefix,
            ),
        };
        let added_tokens: Vec<Json> = self
            .token_types
            .iter()
            .enumerate()
            .filter(|(_, &t)| matches!(t, TOKEN_CONTROL | TOKEN_USER_DEFINED | TOKEN_UNKNOWN))
            .map(|(id, &t)| {
                json!({
                    "id": id, "content": self.tokens[id], "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false,
                    "special": t != TOKEN_USER_DEFINED,
                })
            })
            .collect();
        j.insert("version".into(), json!("1.0"));
        j.insert("truncation".into(), Json::Null);
        j.insert("padding".into(), Json::Null);
        j.insert("added_tokens".into(), json!(added_tokens));
        j.insert("post_processor".into(), self.post_processor());
        Ok(Json::Object(j))
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

/// The model, pre-tokenizer, normalizer and decoder of a byte-level BPE `tokenizer.json`.
fn byte_pairs_json(tokens: &[String], merges: &[String], pre: &str) -> Result<Map<String, Json>> {
    let Some(family) = Family::by_name(pre) else {
        bail!(
            "tokenizer.ggml.pre is `{pre}`, a pre-tokenizer loam does not know; supported: {}",
            Family::all_names().join(", ")
        );
    };
    let mut vocab = Map::new();
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert(token.clone(), json!(id));
    }
    let merges: Vec<Json> = merges
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
            json!([a, b])
        })
        .collect();
    let mut j = Map::new();
    j.insert("normalizer".into(), Json::Null);
    j.insert("pre_tokenizer".into(), family.pre_tokenizer());
    j.insert(
        "decoder".into(),
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
    );
    j.insert(
        "model".into(),
        json!({
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": "", "end_of_word_suffix": "",
            "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": family.ignore_merges,
            "vocab": vocab, "merges": merges,
        }),
    );
    Ok(j)
}

/// The GGUF token list of a tokenizer.json: the BPE vocabulary and added tokens by id, padded
/// to `vocab_size` with unused `[PADn]`; `base_type` types the vocabulary's own tokens.
struct TokenTable {
    tokens: Vec<String>,
    types: Vec<i32>,
    /// In the BPE model's vocabulary and not an added token.
    in_model: Vec<bool>,
}

fn token_table(
    tok: &Json,
    vocab_size: usize,
    path: &Path,
    base_type: impl Fn(&str, u32) -> i32,
) -> Result<TokenTable> {
    let vocab = tok["model"]["vocab"]
        .as_object()
        .with_context(|| format!("{}: model.vocab is not an object", path.display()))?;
    let mut by_id: HashMap<u32, (String, i32, bool)> = HashMap::new();
    for (token, id) in vocab {
        let id = id.as_u64().context("vocab id is not an integer")? as u32;
        by_id.insert(id, (token.clone(), base_type(token, id), true));
    }
    for added in tok["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().context("added token without id")? as u32;
        let content = added["content"]
            .as_str()
            .context("added token without content")?;
        let kind = match by_id.get(&id) {
            // SentencePiece's own <unk> stays `unknown` although transformers lists it as added.
            Some((t, TOKEN_UNKNOWN, _)) if t == content => TOKEN_UNKNOWN,
            _ if added["special"].as_bool().unwrap_or(false) => TOKEN_CONTROL,
            _ => TOKEN_USER_DEFINED,
        };
        by_id.insert(id, (content.to_string(), kind, false));
    }
    let max_id = by_id.keys().copied().max().map_or(0, |m| m as usize + 1);
    if max_id > vocab_size {
        bail!(
            "{}: the tokenizer has ids up to {} but the model's vocab_size is {vocab_size}",
            path.display(),
            max_id - 1
        );
    }
    let mut table = TokenTable {
        tokens: Vec::with_capacity(vocab_size),
        types: Vec::with_capacity(vocab_size),
        in_model: Vec::with_capacity(vocab_size),
    };
    for i in 0..vocab_size as u32 {
        let (token, kind, in_model) = by_id
            .remove(&i)
            .unwrap_or_else(|| (format!("[PAD{i}]"), TOKEN_UNUSED, false));
        table.tokens.push(token);
        table.types.push(kind);
        table.in_model.push(in_model);
    }
    let distinct: HashSet<&String> = table.tokens.iter().collect();
    if distinct.len() != table.tokens.len() {
        bail!(
            "{}: two ids have the same token text; llama.cpp needs one id per token",
            path.display()
        );
    }
    Ok(table)
}

/// The id of a token of the BPE model's vocabulary.
fn vocab_id(tok: &Json, token: &str) -> Option<u32> {
    tok["model"]["vocab"][token].as_u64().map(|i| i as u32)
}

/// `model.merges` as pairs, in either of the two forms tokenizer.json uses.
fn merge_pairs(tok: &Json, path: &Path) -> Result<Vec<(String, String)>> {
    tok["model"]["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Json::String(s) => match s.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => bail!("{}: merge {s:?} is not two tokens", path.display()),
            },
            Json::Array(pair) if pair.len() == 2 => Ok((
                pair[0].as_str().unwrap_or_default().to_string(),
                pair[1].as_str().unwrap_or_default().to_string(),
            )),
            other => bail!("{}: unexpected merge {other}", path.display()),
        })
        .collect()
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

//! A model's tokenizer as transformers loads it: `tokenizer.json` run by the `tokenizers`
//! crate, with the special tokens, BOS/EOS flags and chat template of `tokenizer_config.json`,
//! `special_tokens_map.json`, `chat_template.jinja` and `generation_config.json` on top.
//! Byte-level BPE tokenizers (SmolLM2 and the GPT-2 family) encode through `fast_bpe`
//! instead: the same ids and offsets, without the crate's per-token allocations.
//!
//! [`Tokenizer::encode_text`] is the definition of a `text` row (and of `loam eval`):
//! `tokenizer(text)["input_ids"]` followed by EOS.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;
use tokenizers::AddedToken;

use crate::fast_bpe::FastBpe;

/// A model's chat template as found in its files, before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    /// Where it came from, for error messages (`.../tokenizer_config.json chat_template`).
    pub origin: String,
    pub text: String,
}

/// Token ids with the byte range of `text` each covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

/// The tokenizer of a model directory, with the special tokens transformers would use.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    dir: Option<PathBuf>,
    /// Named special tokens as strings (`bos_token`, `eos_token`, `unk_token`, `pad_token`, …):
    /// transformers passes exactly these to the chat template.
    special_tokens: BTreeMap<String, String>,
    /// What `generation_config.json` says generation stops on (empty when absent).
    generation_eos_ids: Vec<u32>,
    chat_template: Option<TemplateSource>,
    /// The same encoding without the `tokenizers` crate's per-token allocations, for the
    /// byte-level BPE tokenizers it reproduces exactly (`None` for the others).
    fast: Option<Arc<FastBpe>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.vocab_size())
            .field("special_tokens", &self.special_tokens)
            .field("generation_eos_ids", &self.generation_eos_ids)
            .field("fast", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

impl Tokenizer {
    /// Loads a Hugging Face model (or tokenizer) directory. Only `tokenizer.json` is required.
    pub fn from_model_dir(dir: &Path) -> Result<Tokenizer> {
        let tokenizer_json = dir.join("tokenizer.json");
        if !tokenizer_json.is_file() {
            let hint = if dir.join("tokenizer.model").is_file() {
                "this model only ships a SentencePiece `tokenizer.model`; convert it once with \
                 transformers (`AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`) to get a \
                 tokenizer.json"
            } else {
                "copy the model's tokenizer.json next to its config.json"
            };
            bail!(
                "{}: no tokenizer.json in the model directory: {hint}",
                tokenizer_json.display()
            );
        }
        let inner = tokenizers::Tokenizer::from_file(&tokenizer_json).map_err(|e| {
            anyhow!(
                "{}: cannot load tokenizer: {e} (is it a tokenizer.json written by the \
                 `tokenizers` library?)",
                tokenizer_json.display()
            )
        })?;
        let config = read_json_if_present(&dir.join("tokenizer_config.json"))?
            .unwrap_or(Json::Object(Default::default()));
        let special_map = read_json_if_present(&dir.join("special_tokens_map.json"))?;
        let generation = read_json_if_present(&dir.join("generation_config.json"))?;
        let chat_template = find_chat_template(dir, &config)?;
        let mut tok = Tokenizer::from_parts(
            inner,
            &config,
            special_map.as_ref(),
            generation.as_ref(),
            chat_template,
        )
        .with_context(|| format!("{}: cannot set up the tokenizer", dir.display()))?;
        tok.dir = Some(dir.to_path_buf());
        Ok(tok)
    }

    /// Builds a tokenizer from a `tokenizers` tokenizer and the parsed JSON of
    /// `tokenizer_config.json` (and optionally `special_tokens_map.json`,
    /// `generation_config.json`). Used by [`Tokenizer::from_model_dir`] and by tests.
    pub fn from_parts(
        mut inner: tokenizers::Tokenizer,
        config: &Json,
        special_tokens_map: Option<&Json>,
        generation_config: Option<&Json>,
        chat_template: Option<TemplateSource>,
    ) -> Result<Tokenizer> {
        // transformers reads special_tokens_map.json first, tokenizer_config.json wins.
        let mut special_tokens = BTreeMap::new();
        for name in SPECIAL_TOKEN_NAMES {
            let value = config.get(name).and_then(token_content).or_else(|| {
                special_tokens_map
                    .and_then(|m| m.get(name))
                    .and_then(token_content)
            });
            if let Some(value) = value {
                special_tokens.insert(name.to_string(), value);
            }
        }

        // Special tokens the config names but tokenizer.json lacks are added, as transformers does.
        let mut extra: Vec<String> = Vec::new();
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            for src in [Some(config), special_tokens_map].into_iter().flatten() {
                if let Some(list) = src.get(key).and_then(Json::as_array) {
                    extra.extend(list.iter().filter_map(token_content));
                }
            }
        }
        let missing: Vec<AddedToken> = special_tokens
            .values()
            .chain(extra.iter())
            .filter(|t| inner.token_to_id(t).is_none())
            .map(|t| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        if !missing.is_empty() {
            inner.add_special_tokens(&missing);
        }

        // `add_bos_token` / `add_eos_token` in tokenizer_config.json are ignored: transformers 5
        // drops them whenever a tokenizer.json exists, whose post-processor alone decides.

        let generation_eos_ids = match generation_config.and_then(|g| g.get("eos_token_id")) {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
            Some(Json::Array(list)) => list
                .iter()
                .filter_map(Json::as_u64)
                .map(|n| n as u32)
                .collect(),
            Some(other) => bail!(
                "generation_config.json: eos_token_id must be an integer or a list of integers, \
                 found {other}"
            ),
        };

        Ok(Tokenizer {
            fast: match FastBpe::new(&inner) {
                Ok(fast) => Some(Arc::new(fast)),
                Err(why) => {
                    tracing::debug!("tokenizer without the fast path: {why}");
                    None
                }
            },
            inner,
            dir: None,
            special_tokens,
            generation_eos_ids,
            chat_template,
        })
    }

    /// Whether encoding takes the fast path of `fast_bpe` (same results, less time).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// This tokenizer encoding through the `tokenizers` crate only (to compare the paths).
    pub fn without_fast_path(mut self) -> Tokenizer {
        self.fast = None;
        self
    }

    /// The directory this tokenizer was loaded from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The `tokenizers` tokenizer underneath (post-processor already set as transformers sets it).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// transformers' `tokenizer(text)["input_ids"]`, then EOS unless `add_eos` is false or the
    /// ids already end with it. A text row of training data and of `loam eval`.
    ///
    /// Panics only where the tokenizer itself cannot encode (a WordLevel/WordPiece vocabulary
    /// without an unknown token meeting an unknown word); [`Tokenizer::try_encode_text`] returns
    /// that as an error.
    pub fn encode_text(&self, text: &str, add_eos: bool) -> Vec<u32> {
        match self.try_encode_text(text, add_eos) {
            Ok(ids) => ids,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// [`Tokenizer::encode_text`], with the tokenizer's own failures as errors.
    pub fn try_encode_text(&self, text: &str, add_eos: bool) -> Result<Vec<u32>> {
        let mut ids = self.encode(text, true)?;
        if add_eos {
            if let Some(eos) = self.eos_token_id() {
                if ids.last() != Some(&eos) {
                    ids.push(eos);
                }
            }
        }
        Ok(ids)
    }

    /// `tokenizer(text, add_special_tokens=...)["input_ids"]`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self.encode_with_offsets(text, add_special_tokens)?.ids)
    }

    /// Ids and each token's byte range in `text`. Tokens the post-processor added
    /// (BOS, EOS) have an empty range at 0.
    pub fn encode_with_offsets(&self, text: &str, add_special_tokens: bool) -> Result<Encoded> {
        if let Some(fast) = self
            .fast
            .as_deref()
            .filter(|f| f.handles(add_special_tokens))
        {
            let mut encoded = Encoded {
                ids: Vec::new(),
                offsets: Vec::new(),
            };
            if fast.encode(text, &mut encoded.ids, &mut encoded.offsets) {
                return Ok(encoded);
            }
        }
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| anyhow!("the tokenizer cannot encode this text: {e}"))?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    /// Text of `ids`; special tokens dropped when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| anyhow!("cannot decode token ids: {e}"))
    }

    /// Vocabulary size including added tokens (the embedding may be larger).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// A named special token's string (`"bos_token"`, `"eos_token"`, `"pad_token"`, …).
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.special_tokens.get(name).map(String::as_str)
    }

    /// All named special tokens; the chat template sees them as variables.
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.special_id("bos_token")
    }

    /// The tokenizer's EOS (`tokenizer_config.json`), appended to text rows.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.special_id("eos_token")
    }

    pub fn pad_token_id(&self) -> Option<u32> {
        self.special_id("pad_token")
    }

    /// The ids generation stops on: `generation_config.json`'s `eos_token_id` (int or list),
    /// else the tokenizer's EOS.
    pub fn generation_eos_ids(&self) -> Vec<u32> {
        if self.generation_eos_ids.is_empty() {
            self.eos_token_id().into_iter().collect()
        } else {
            self.generation_eos_ids.clone()
        }
    }

    /// Whether `id` is an added token marked special (BOS, EOS, `<|im_end|>`, …).
    pub fn is_special_id(&self, id: u32) -> bool {
        self.inner
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    /// The model's own chat template, if it ships one.
    pub fn chat_template(&self) -> Option<&TemplateSource> {
        self.chat_template.as_ref()
    }

    fn special_id(&self, name: &str) -> Option<u32> {
        self.special_tokens
            .get(name)
            .and_then(|t| self.inner.token_to_id(t))
    }
}

/// A special token written as `"<s>"` or as `{"content": "<s>", ...}`.
fn token_content(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
        _ => None,
    }
}

fn read_json_if_present(path: &Path) -> Result<Option<Json>> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            anyhow!(
                "{}: not valid JSON ({e}); restore it from the model's original files",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("{}: cannot read: {e}", path.display())),
    }
}

/// The template transformers would use: `chat_template.jinja` (or
/// `additional_chat_templates/default.jinja`) wins over `tokenizer_config.json`'s
/// `chat_template`, which is a string or a list of `{name, template}` (the one named "default").
pub fn find_chat_template(dir: &Path, config: &Json) -> Result<Option<TemplateSource>> {
    for file in [
        dir.join("chat_template.jinja"),
        dir.join("additional_chat_templates").join("default.jinja"),
    ] {
        if file.is_file() {
            let text = fs::read_to_string(&file)
                .map_err(|e| anyhow!("{}: cannot read: {e}", file.display()))?;
            return Ok(Some(TemplateSource {
                origin: file.display().to_string(),
                text,
            }));
        }
    }
    let origin = format!(
        "{} chat_template",
        dir.join("tokenizer_config.json").display()
    );
    match config.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(TemplateSource {
            origin,
            text: text.clone(),
        })),
        Some(Json::Array(list)) => {
            let named = |name: &str| {
                list.iter().find_map(|t| {
                    (t.get("name").and_then(Json::as_str) == Some(name))
                        .then(|| t.get("template").and_then(Json::as_str))
                        .flatten()
                })
            };
            match named("default") {
                Some(text) => Ok(Some(TemplateSource {
                    origin: format!("{origin} (\"default\")"),
                    text: text.to_string(),
                })),
                None => {
                    let names: Vec<&str> = list
                        .iter()
                        .filter_map(|t| t.get("name").and_then(Json::as_str))
                        .collect();
                    bail!(
                        "{origin}: a list of templates without one named \"default\" (found \
                         {names:?}); set `chat_template` in the recipe's [data] section to the \
                         template to use"
                    )
                }
            }
        }
        Some(other) => bail!(
            "{origin}: expected a string or a list of {{name, template}}, found {}",
            short_json(other)
        ),
    }
}

fn short_json(v: &Json) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// The oracle's fixtures (scripts/oracle/fixtures_data.py), shared by this crate's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::PathBuf;

    use super::Tokenizer;

    /// `$LOAM_FIXTURES/templates` (default `~/.cache/loam/fixtures/templates`); fails when
    /// absent: a missing oracle must never look like a pass.
    pub fn templates_dir() -> PathBuf {
        let root = match std::env::var_os("LOAM_FIXTURES") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME").expect("HOME is not set");
                PathBuf::from(home).join(".cache/loam/fixtures")
            }
        };
        let dir = root.join("templates");
        assert!(
            dir.join("expected_chat.json").is_file() && dir.join("expected_text.json").is_file(),
            "fixtures missing: run scripts/oracle/build.sh (looked in {})",
            dir.display()
        );
        dir
    }

    pub fn json(name: &str) -> serde_json::Value {
        let path = templates_dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn tokenizer(name: &str) -> Tokenizer {
        Tokenizer::from_model_dir(&templates_dir().join(name)).unwrap()
    }

    pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{json, tokenizer, u32s};
    use super::*;
    use serde_json::json;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;

    /// A word-level tokenizer built in code: `<s>`=0, `</s>`=1, `<unk>`=2, then words.
    fn tiny() -> tokenizers::Tokenizer {
        let vocab = [
            ("<s>", 0),
            ("</s>", 1),
            ("<unk>", 2),
            ("hello", 3),
            ("world", 4),
        ]
        .into_iter()
        .map(|(w, i)| (w.to_string(), i))
        .collect();
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token("<unk>".into())
            .build()
            .unwrap();
        let mut tok = tokenizers::Tokenizer::new(model);
        tok.with_pre_tokenizer(Some(WhitespaceSplit));
        tok.add_special_tokens(&[
            AddedToken::from("<s>", true),
            AddedToken::from("</s>", true),
        ]);
        tok
    }

    #[test]
    fn encode_text_matches_transformers_on_non_ascii_text() {
        let expected = json("expected_text.json");
        let dirs = expected["texts"].as_object().unwrap();
        assert!(dirs.len() >= 4);
        for (name, rows) in dirs {
            let tok = tokenizer(name);
            for row in rows.as_array().unwrap() {
                let text = row["text"].as_str().unwrap();
                let ctx = format!("{name}: {text:?}");
                assert_eq!(
                    tok.encode(text, true).unwrap(),
                    u32s(&row["input_ids"]),
                    "{ctx}"
                );
                assert_eq!(
                    tok.encode(text, false).unwrap(),
                    u32s(&row["input_ids_no_special"]),
                    "{ctx}"
                );
                assert_eq!(tok.encode_text(text, true), u32s(&row["text_row"]), "{ctx}");
                assert_eq!(
                    tok.encode_text(text, false),
                    u32s(&row["input_ids"]),
                    "{ctx}"
                );
                let ids = u32s(&row["input_ids"]);
                assert_eq!(tok.decode(&ids, false).unwrap(), row["decoded"], "{ctx}");
            }
        }
    }

    #[test]
    fn special_token_ids_match_transformers() {
        let expected = json("expected_text.json");
        for (name, info) in expected["tokenizers"].as_object().unwrap() {
            let tok = tokenizer(name);
            let id = |v: &serde_json::Value| v.as_u64().map(|n| n as u32);
            assert_eq!(tok.bos_token_id(), id(&info["bos_token_id"]), "{name}");
            assert_eq!(tok.eos_token_id(), id(&info["eos_token_id"]), "{name}");
            assert_eq!(tok.pad_token_id(), id(&info["pad_token_id"]), "{name}");
            assert_eq!(
                tok.vocab_size() as u64,
                info["vocab_size"].as_u64().unwrap()
            );
            let map: BTreeMap<String, String> =
                serde_json::from_value(info["special_tokens_map"].clone()).unwrap();
            assert_eq!(tok.special_tokens(), &map, "{name}");
        }
    }

    #[test]
    fn mistral_style_post_processor_adds_bos_once() {
        let tok = tokenizer("mistral");
        let bos = tok.bos_token_id().unwrap();
        let ids = tok.encode("hi", true).unwrap();
        assert_eq!(ids[0], bos);
        assert_ne!(ids[1], bos);
        assert_eq!(
            tok.encode_text("hi", true).last(),
            tok.eos_token_id().as_ref()
        );
    }

    #[test]
    fn generation_eos_ids_read_int_or_list() {
        let tok = tokenizer("llama3");
        let eot = tok.token_to_id("<|eot_id|>").unwrap();
        let eot_text = tok.token_to_id("<|end_of_text|>").unwrap();
        assert_eq!(tok.generation_eos_ids(), vec![eot_text, eot]);
        let tok = tokenizer("mistral");
        assert_eq!(tok.generation_eos_ids(), vec![tok.eos_token_id().unwrap()]);
        let config = json!({"eos_token": "</s>"});
        let tok = Tokenizer::from_parts(tiny(), &config, None, None, None).unwrap();
        assert_eq!(
            tok.generation_eos_ids(),
            vec![1],
            "falls back to the tokenizer's EOS"
        );
        let bad = json!({"eos_token_id": "two"});
        let err = Tokenizer::from_parts(tiny(), &config, None, Some(&bad), None).unwrap_err();
        assert!(err.to_string().contains("eos_token_id"), "{err}");
    }

    #[test]
    fn special_tokens_may_be_objects_and_bos_eos_flags_are_ignored() {
        // transformers 5 ignores add_bos_token / add_eos_token when tokenizer.json exists.
        let config = json!({
            "bos_token": {"content": "<s>", "lstrip": false, "__type": "AddedToken"},
            "eos_token": "</s>",
            "add_bos_token": true,
            "add_eos_token": true,
        });
        let tok = Tokenizer::from_parts(tiny(), &config, None, None, None).unwrap();
        assert_eq!(tok.bos_token_id(), Some(0));
        assert_eq!(tok.eos_token_id(), Some(1));
        assert_eq!(tok.encode("hello world", true).unwrap(), vec![3, 4]);
        assert_eq!(tok.encode_text("hello world", true), vec![3, 4, 1]);
        // The text already ends with EOS: none is added.
        assert_eq!(tok.encode_text("hello </s>", true), vec![3, 1]);
        assert_eq!(tok.encode_text("hello", false), vec![3]);
    }

    #[test]
    fn special_tokens_map_file_fills_what_the_config_lacks() {
        let config = json!({"eos_token": "</s>"});
        let map = json!({"bos_token": "<s>", "eos_token": "<unk>", "pad_token": "<pad>"});
        let tok = Tokenizer::from_parts(tiny(), &config, Some(&map), None, None).unwrap();
        assert_eq!(tok.eos_token_id(), Some(1), "tokenizer_config.json wins");
        assert_eq!(tok.bos_token_id(), Some(0));
        // A named token missing from the vocabulary is added, as transformers does.
        assert_eq!(tok.pad_token_id(), Some(5));
        assert_eq!(tok.special_token("pad_token"), Some("<pad>"));
        assert!(tok.is_special_id(5));
    }

    #[test]
    fn missing_files_give_clear_errors() {
        let dir = std::env::temp_dir().join(format!("loam-tok-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = Tokenizer::from_model_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json") && err.contains(&dir.display().to_string()));
        std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
        let err = Tokenizer::from_model_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("cannot load tokenizer"), "{err}");
        tiny().save(dir.join("tokenizer.json"), false).unwrap();
        std::fs::write(dir.join("tokenizer_config.json"), "{").unwrap();
        let err = format!("{:#}", Tokenizer::from_model_dir(&dir).unwrap_err());
        assert!(
            err.contains("tokenizer_config.json") && err.contains("not valid JSON"),
            "{err}"
        );
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"chat_template": [{"name": "tool_use", "template": "x"}]}"#,
        )
        .unwrap();
        let err = format!("{:#}", Tokenizer::from_model_dir(&dir).unwrap_err());
        assert!(
            err.contains("\"default\"") && err.contains("tool_use"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chat_template_sources_follow_transformers_priority() {
        let qwen = tokenizer("qwen25");
        let t = qwen.chat_template().unwrap();
        assert!(
            t.origin.ends_with("chat_template (\"default\")"),
            "{}",
            t.origin
        );
        assert!(t.text.contains("You are Qwen"));
        let mistral = tokenizer("mistral");
        assert!(mistral
            .chat_template()
            .unwrap()
            .origin
            .ends_with("chat_template.jinja"));
        let llama = tokenizer("llama3");
        assert!(llama
            .chat_template()
            .unwrap()
            .origin
            .ends_with("tokenizer_config.json chat_template"));
    }
}

//! A model's tokenizer as transformers loads it: `tokenizer.json` run by the `tokenizers`
//! crate, with the special tokens, BOS/EOS flags and chat template of `tokenizer_config.json`,
//! `special_tokens_map.json`, `chat_template.jinja` and `generation_config.json` on top.
//!
//! [`Tokenizer::encode_text`] is the definition of a `text` row (and of `loam eval`):
//! `tokenizer(text)["input_ids"]` followed by EOS.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;

/// A model's chat template as found in its files, before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    /// Where it came from, for error messages (`.../tokenizer_config.json chat_template`).
    pub origin: String,
    pub text: String,
}

/// The tokenizer of a model directory, with the special tokens transformers would use.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    dir: Option<PathBuf>,
    /// Named special tokens as strings (`bos_token`, `eos_token`, `unk_token`, `pad_token`, …):
    /// transformers passes exactly these to the chat template.
    special_tokens: BTreeMap<String, String>,
    /// What `generation_config.json` says generation stops on (empty when absent).
    generation_eos_ids: Vec<u32>,
    chat_template: Option<TemplateSource>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.vocab_size())
            .field("special_tokens", &self.special_tokens)
            .field("generation_eos_ids", &self.generation_eos_ids)
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
            let value = config
                .get(name)
                .and_then(token_content)
                .or_else(|| special_tokens_map.and_then(|m| m.get(name)).and_then(token_content));
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

        // An explicit add_bos_token / add_eos_token (or a tokenizer.json without a
        // post-processor) makes transformers rebuild the post-processor from those flags.
        let add_bos = config.get("add_bos_token").and_then(Json::as_bool);
        let add_eos = config.get("add_eos_token").and_then(Json::as_bool);
        if add_bos.is_some() || add_eos.is_some() || inner.get_post_processor().is_none() {
            let bos = special_tokens.get("bos_token");
            let eos = special_tokens.get("eos_token");
            let bos = bos
                .filter(|_| add_bos == Some(true))
                .map(|t| (t.clone(), id_of(&inner, t)));
            let eos = eos
                .filter(|_| add_eos == Some(true))
                .map(|t| (t.clone(), id_of(&inner, t)));
            inner.with_post_processor(Some(bos_eos_processor(bos, eos)?));
        }

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
            inner,
            dir: None,
            special_tokens,
            generation_eos_ids,
            chat_template,
        })
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
        Ok(self.encode_with_offsets(text, add_special_tokens)?.0)
    }

    /// Ids and each token's byte range in `text`. Tokens the post-processor added
    /// (BOS, EOS) have an empty range at 0.
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<(Vec<u32>, Vec<(usize, usize)>)> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| anyhow!("the tokenizer cannot encode this text: {e}"))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
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

fn id_of(inner: &tokenizers::Tokenizer, token: &str) -> u32 {
    // Every named special token was added above, so the lookup succeeds.
    inner.token_to_id(token).unwrap_or(0)
}

/// transformers' `update_post_processor`: `[BOS] $A [EOS]`.
fn bos_eos_processor(
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
) -> Result<TemplateProcessing> {
    let b = bos.as_ref().map(|(t, _)| format!("{t}:0 ")).unwrap_or_default();
    let e = eos.as_ref().map(|(t, _)| format!(" {t}:0")).unwrap_or_default();
    let b1 = bos.as_ref().map(|(t, _)| format!(" {t}:1")).unwrap_or_default();
    let e1 = eos.as_ref().map(|(t, _)| format!(" {t}:1")).unwrap_or_default();
    let single = format!("{b}$A:0{e}");
    let pair = format!("{single}{b1} $B:1{e1}");
    let specials: Vec<(String, u32)> = bos.into_iter().chain(eos).collect();
    TemplateProcessing::builder()
        .try_single(single.as_str())
        .map_err(|e| anyhow!("cannot build the BOS/EOS post-processor: {e}"))?
        .try_pair(pair.as_str())
        .map_err(|e| anyhow!("cannot build the BOS/EOS post-processor: {e}"))?
        .special_tokens(specials)
        .build()
        .map_err(|e| anyhow!("cannot build the BOS/EOS post-processor: {e}"))
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
fn find_chat_template(dir: &Path, config: &Json) -> Result<Option<TemplateSource>> {
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
    let origin = format!("{} chat_template", dir.join("tokenizer_config.json").display());
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

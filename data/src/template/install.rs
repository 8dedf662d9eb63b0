//! Writing a chat template into a model directory, so that whatever loads the directory
//! (transformers, loam, llama.cpp through `loam gguf export`) renders conversations as
//! training did and stops generating where an answer ends — nobody edits
//! `generation_config.json` by hand.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value as Json};

use crate::encode::Encoder;
use crate::tokenize::TemplateSource;
use crate::{Tokenizer, TrainOn};

/// The file a directory's chat template goes in: transformers reads it before
/// `tokenizer_config.json`'s `chat_template`, and so does loam.
pub const FILE: &str = "chat_template.jinja";

/// Writes `source` as `dir/chat_template.jinja` and adds the token that closes its turns
/// (found by rendering a probe conversation with `dir`'s tokenizer) to
/// `generation_config.json`'s `eos_token_id`. Returns that token's id, when the template
/// closes turns with one.
pub fn install(dir: &Path, source: &TemplateSource) -> Result<Option<u32>> {
    let tokenizer = Tokenizer::from_model_dir(dir)?;
    let eos = tokenizer.eos_token_id();
    let template = crate::ChatTemplate::new(source, tokenizer.special_tokens())?;
    let end_of_turn =
        Encoder::new(tokenizer, Some(template), TrainOn::Assistant, true)?.end_of_turn_id();
    let path = dir.join(FILE);
    std::fs::write(&path, &source.text)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(id) = end_of_turn {
        add_stop_token(&dir.join("generation_config.json"), eos, id)?;
    }
    Ok(end_of_turn)
}

/// Saves `source` beside a trained adapter in `adapter_dir`: the template it learned, which
/// `loam eval` / `generate --adapter` use and `loam merge` installs ([`trained_with`]).
pub fn save_beside_adapter(adapter_dir: &Path, source: &TemplateSource) -> Result<()> {
    let path = adapter_dir.join(FILE);
    std::fs::write(&path, &source.text).with_context(|| format!("cannot write {}", path.display()))
}

/// The template an adapter was trained with, when its run saved one
/// ([`save_beside_adapter`]).
pub fn trained_with(adapter_dir: &Path) -> Result<Option<TemplateSource>> {
    let path = adapter_dir.join(FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(TemplateSource {
        origin: path.display().to_string(),
        text,
    }))
}

/// `eos_token_id` (an integer or a list) with `id` in it, after the ids it had (or, when it
/// had none, the tokenizer's `eos`, which generation stopped on until now).
fn add_stop_token(path: &Path, eos: Option<u32>, id: u32) -> Result<()> {
    let mut config: Json = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut ids: Vec<Json> = match config.get("eos_token_id") {
        Some(Json::Array(list)) => list.clone(),
        Some(Json::Null) | None => Vec::new(),
        Some(one) => vec![one.clone()],
    };
    if ids.is_empty() {
        ids.extend(eos.map(|e| json!(e)));
    }
    if !ids.iter().any(|v| v.as_u64() == Some(u64::from(id))) {
        ids.push(json!(id));
    }
    let obj = config
        .as_object_mut()
        .with_context(|| format!("{}: not a JSON object", path.display()))?;
    obj.insert(
        "eos_token_id".into(),
        if ids.len() == 1 {
            ids.remove(0)
        } else {
            Json::Array(ids)
        },
    );
    let text = serde_json::to_string_pretty(&config)? + "\n";
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::builtin;
    use crate::tokenize::fixtures::templates_dir;

    /// A fixture tokenizer (Gemma 3's special tokens, EOS `<eos>`) given the built-in Gemma
    /// template: the directory then renders with it and stops on `<end_of_turn>` as well as
    /// its EOS, for loam as for transformers (which reads the same two files).
    #[test]
    fn an_installed_template_renders_and_stops_generation() {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(templates_dir().join("gemma3")).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
            }
        }
        let eos = Tokenizer::from_model_dir(dir.path())
            .unwrap()
            .eos_token_id()
            .unwrap();
        let b = builtin::by_name("gemma").unwrap();
        let source = crate::template::setting_source("test", "gemma").unwrap();
        let eot = install(dir.path(), &source).unwrap().unwrap();
        // twice: idempotent
        assert_eq!(install(dir.path(), &source).unwrap(), Some(eot));

        let tokenizer = Tokenizer::from_model_dir(dir.path()).unwrap();
        assert_eq!(tokenizer.token_to_id(b.end_of_turn), Some(eot));
        let template = tokenizer.chat_template().unwrap();
        assert_eq!(template.text, b.jinja);
        assert!(template.origin.ends_with(FILE), "{}", template.origin);
        let config: Json = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("generation_config.json")).unwrap(),
        )
        .unwrap();
        let stops: Vec<u64> = match &config["eos_token_id"] {
            Json::Array(list) => list.iter().map(|v| v.as_u64().unwrap()).collect(),
            one => vec![one.as_u64().unwrap()],
        };
        assert_eq!(stops, [u64::from(eos), u64::from(eot)], "{config}");
    }
}

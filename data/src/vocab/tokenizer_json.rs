//! The extended `tokenizer.json`: the base file with the new tokens added to the BPE
//! vocabulary and their merges appended after the base merges, everything else (normalizer,
//! pre-tokenizer, added tokens, post-processor, decoder) as it was.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use tokenizers::models::bpe::BPE;
use tokenizers::ModelWrapper;

use super::learn::Extension;

/// Whether new merges can be learned for this tokenizer: a byte-level BPE (GPT-2, SmolLM2,
/// Llama 3, Qwen2), whose tokens are strings of byte stand-ins that concatenate into the
/// merged token, without dropout or word prefixes / suffixes.
pub fn check_supported(tokenizer: &tokenizers::Tokenizer, path: &Path) -> Result<()> {
    let ModelWrapper::BPE(bpe) = tokenizer.get_model() else {
        bail!(
            "{}: not a BPE tokenizer; `loam vocab extend` learns BPE merges and supports \
             byte-level BPE tokenizers (GPT-2, SmolLM2, Llama 3, Qwen2)",
            path.display()
        );
    };
    let pre = tokenizer
        .get_pre_tokenizer()
        .and_then(|p| serde_json::to_string(p).ok())
        .unwrap_or_default();
    if !pre.contains("\"ByteLevel\"") {
        bail!(
            "{}: a BPE tokenizer without a ByteLevel pre-tokenizer (SentencePiece-style); \
             `loam vocab extend` supports byte-level BPE tokenizers (GPT-2, SmolLM2, Llama 3, Qwen2)",
            path.display()
        );
    }
    let affix = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if bpe.dropout.is_some_and(|d| d > 0.0)
        || affix(&bpe.continuing_subword_prefix)
        || affix(&bpe.end_of_word_suffix)
    {
        bail!(
            "{}: BPE with dropout or subword prefixes / suffixes is not supported by `loam vocab extend`",
            path.display()
        );
    }
    Ok(())
}

/// The tokenizer of `base_file` (a `tokenizer.json`) extended by `ext`.
pub fn extended_tokenizer(base_file: &Path, ext: &Extension) -> Result<tokenizers::Tokenizer> {
    let mut tok = tokenizers::Tokenizer::from_file(base_file)
        .map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", base_file.display()))?;
    check_supported(&tok, base_file)?;
    let ModelWrapper::BPE(bpe) = tok.get_model() else {
        unreachable!("checked above")
    };
    let mut model = serde_json::to_value(bpe).context("cannot serialize the BPE model")?;
    let vocab = model["vocab"]
        .as_object_mut()
        .context("the BPE model has no vocabulary")?;
    for t in &ext.tokens {
        if vocab.insert(t.token.clone(), json!(t.id)).is_some() {
            bail!("new token {:?} is already in the vocabulary", t.token);
        }
    }
    let strings = |id: u32| -> Result<String> {
        match id.checked_sub(ext.first_id) {
            Some(k) => Ok(ext.tokens[k as usize].token.clone()),
            None => tok
                .id_to_token(id)
                .with_context(|| format!("token id {id} is not in the base vocabulary")),
        }
    };
    let mut appended = Vec::with_capacity(ext.tokens.len());
    for t in &ext.tokens {
        appended.push(json!([strings(t.left)?, strings(t.right)?]));
    }
    let merges = model["merges"]
        .as_array_mut()
        .context("the BPE model has no merges")?;
    merges.extend(appended);
    // from text: BPE's deserializer borrows its strings
    let bpe: BPE = serde_json::from_str(&model.to_string())
        .map_err(|e| anyhow!("the extended BPE model does not load: {e}"))?;
    tok.with_model(bpe);
    Ok(tok)
}

/// Writes `tok` as `path` (pretty, as transformers writes it).
pub fn save(tok: &tokenizers::Tokenizer, path: &Path) -> Result<()> {
    tok.save(path, true)
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

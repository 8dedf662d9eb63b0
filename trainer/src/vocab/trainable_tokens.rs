//! Chosen rows of the embedding and of the output head trained beside a LoRA adapter:
//! PEFT's `trainable_token_indices` (its `TrainableTokensLayer`), recipe key
//! `lora.trainable_tokens`.
//!
//! As in PEFT, the trainable tensor of a layer holds the rows' *values* (`[n, hidden]`, f32
//! master weights, starting as copies of the base rows), not differences: the layer computes
//! with its weight whose rows `ids` are replaced by them (`W.index_copy(0, ids, values)`).
//! With tied embeddings the output head uses the embedding's rows (PEFT's tied adapter), so
//! one tensor gets both gradients. Saved under PEFT's keys (below); `adapter_config.json`'s
//! `trainable_token_indices` is a list for the embedding (and a tied head), or
//! `{"embed_tokens": ids, "lm_head": ids}` when an untied head is trained too.
//!
//! The embedding replaces the looked-up rows of trained tokens (same values and gradients
//! as PEFT's `F.embedding(x, W')`, without a `[vocab, hidden]` copy); the output head's
//! gradient for its trained rows is computed in the loss (`model::LmHead`, `train::loss`).

use crate::model::CausalLm;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// PEFT's key of the embedding's trained rows.
pub const EMBED_KEY: &str =
    "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta";
/// PEFT's key of an untied output head's trained rows.
pub const LM_HEAD_KEY: &str = "base_model.model.lm_head.token_adapter.trainable_tokens_delta";

/// `adapter_config.json`'s `trainable_token_indices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIndices {
    /// Rows of the input embedding (and of a head tied to it).
    List(Vec<i64>),
    /// Rows per module name (`embed_tokens`, `lm_head`).
    ByModule(BTreeMap<String, Vec<i64>>),
}

/// Which rows of which weight, once PEFT's config is resolved for a model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowIds {
    pub embedding: Option<Vec<i64>>,
    /// An untied output head's own rows (a tied head follows the embedding's).
    pub output: Option<Vec<i64>>,
}

impl TokenIndices {
    /// The rows this config trains on a model with (`tied`) or without tied embeddings,
    /// as PEFT applies it: a list trains the embedding and a tied head only.
    pub fn resolve(&self, tied: bool) -> Result<RowIds> {
        let mut ids = RowIds::default();
        match self {
            TokenIndices::List(list) => ids.embedding = Some(list.clone()),
            TokenIndices::ByModule(map) => {
                for (module, list) in map {
                    if module.ends_with("embed_tokens") {
                        ids.embedding = Some(list.clone());
                    } else if module.ends_with("lm_head") {
                        ids.output = Some(list.clone());
                    } else {
                        bail!(
                            "trainable_token_indices names `{module}`; loam trains rows of \
                             `embed_tokens` and `lm_head` only"
                        );
                    }
                }
            }
        }
        if tied && ids.output.is_some() {
            if ids.output != ids.embedding {
                bail!(
                    "trainable_token_indices gives lm_head other rows than embed_tokens, but the \
                     model ties them (tie_word_embeddings): give both the same ids"
                );
            }
            ids.output = None;
        }
        Ok(ids)
    }
}

/// Trained rows of one weight.
pub struct Rows {
    pub ids: Vec<i64>,
    /// `ids` as an int64 tensor on the model's device.
    pub index: Tensor,
    /// `[n, hidden]` f32, trainable.
    pub values: Tensor,
}

impl Rows {
    fn new(ids: Vec<i64>, values: Tensor, device: Device) -> Rows {
        let index = Tensor::from_slice(&ids).to_device(device);
        let values = values
            .detach()
            .to_kind(Kind::Float)
            .to_device(device)
            .contiguous()
            .set_requires_grad(true);
        Rows { ids, index, values }
    }

    /// PEFT's start: copies of the weight's rows.
    fn copied_from(ids: Vec<i64>, weight: &Tensor) -> Rows {
        let _guard = tch::no_grad_guard();
        let index = Tensor::from_slice(&ids).to_device(weight.device());
        let values = weight.index_select(0, &index).copy();
        Rows::new(ids, values, weight.device())
    }

    /// `weight` with these rows in place (a copy; no gradient flows through it).
    pub(crate) fn written_into(&self, weight: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        weight.index_copy(0, &self.index, &self.values.to_kind(weight.kind()))
    }
}

pub struct TrainableTokens {
    pub embedding: Option<Rows>,
    /// An untied output head's own rows.
    pub output: Option<Rows>,
    /// The output head is tied to the embedding, and uses its rows.
    pub tied: bool,
    /// For every vocabulary id, its row in `embedding` (-1: not trained).
    slot_of: Option<Tensor>,
}

impl TrainableTokens {
    /// Fresh rows `ids` of the embedding, and of the output head (its own when untied), as
    /// PEFT starts them: copies of the base rows.
    pub fn new(lm: &CausalLm, ids: &[i64]) -> Result<TrainableTokens> {
        let tied = lm.spec.tie_word_embeddings;
        let rows = RowIds {
            embedding: Some(ids.to_vec()),
            output: (!tied).then(|| ids.to_vec()),
        };
        TrainableTokens::from_weights(lm, rows)
    }

    fn from_weights(lm: &CausalLm, ids: RowIds) -> Result<TrainableTokens> {
        let vocab = lm.model.embed_tokens.size()[0];
        for list in [&ids.embedding, &ids.output].into_iter().flatten() {
            check_ids(list, vocab)?;
        }
        Ok(TrainableTokens::assemble(
            ids.embedding
                .map(|i| Rows::copied_from(i, &lm.model.embed_tokens)),
            ids.output.map(|i| Rows::copied_from(i, &lm.lm_head)),
            lm,
        ))
    }

    fn assemble(embedding: Option<Rows>, output: Option<Rows>, lm: &CausalLm) -> TrainableTokens {
        let vocab = lm.model.embed_tokens.size()[0];
        let slot_of = embedding.as_ref().map(|rows| {
            let slots = Tensor::full([vocab], -1, (Kind::Int64, lm.device));
            let n = rows.ids.len() as i64;
            slots.index_copy(0, &rows.index, &Tensor::arange(n, (Kind::Int64, lm.device)))
        });
        TrainableTokens {
            embedding,
            output,
            tied: lm.spec.tie_word_embeddings,
            slot_of,
        }
    }

    /// The rows a PEFT adapter saved (`tensors` under PEFT's keys, removed from the map).
    pub fn from_adapter(
        lm: &CausalLm,
        indices: &TokenIndices,
        tensors: &mut BTreeMap<String, Tensor>,
        file: &Path,
    ) -> Result<TrainableTokens> {
        let rows = saved_rows(indices, tensors, lm.spec.tie_word_embeddings, file)?;
        let vocab = lm.model.embed_tokens.size()[0];
        let hidden = lm.spec.hidden_size;
        let take = |saved: Option<SavedRows>| -> Result<Option<Rows>> {
            let Some((ids, values)) = saved else {
                return Ok(None);
            };
            check_ids(&ids, vocab).with_context(|| format!("{}", file.display()))?;
            check_shape(&values, ids.len(), hidden, file)?;
            Ok(Some(Rows::new(ids, values, lm.device)))
        };
        let embedding = take(rows.0)?;
        let output = take(rows.1)?;
        Ok(TrainableTokens::assemble(embedding, output, lm))
    }

    /// The trainable tensors, in a fixed order.
    pub fn params(&self) -> Vec<Tensor> {
        [&self.embedding, &self.output]
            .into_iter()
            .flatten()
            .map(|rows| rows.values.shallow_clone())
            .collect()
    }

    /// The tensors under PEFT's keys (CPU, f32).
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let cpu = |rows: &Rows| rows.values.detach().to_device(Device::Cpu).contiguous();
        let mut out = Vec::new();
        if let Some(rows) = &self.embedding {
            out.push((EMBED_KEY.to_string(), cpu(rows)));
        }
        if let Some(rows) = &self.output {
            out.push((LM_HEAD_KEY.to_string(), cpu(rows)));
        }
        out
    }

    /// `trainable_token_indices` as PEFT writes it for these rows.
    pub fn indices(&self) -> TokenIndices {
        match (&self.embedding, &self.output) {
            (Some(e), None) => TokenIndices::List(e.ids.clone()),
            (e, o) => TokenIndices::ByModule(
                [("embed_tokens", e), ("lm_head", o)]
                    .into_iter()
                    .filter_map(|(name, rows)| rows.as_ref().map(|r| (name.into(), r.ids.clone())))
                    .collect(),
            ),
        }
    }

    /// Token embeddings `[B, T, hidden]` looked up in the base weight (`base`), with the rows
    /// of trained tokens taken from their trainable values.
    pub fn embed(&self, base: Tensor, input_ids: &Tensor) -> Tensor {
        let (Some(rows), Some(slot_of)) = (&self.embedding, &self.slot_of) else {
            return base;
        };
        let shape = base.size();
        let hidden = shape[shape.len() - 1];
        let slots = slot_of.index_select(0, &input_ids.reshape([-1]));
        let trained = slots.ge(0).unsqueeze(1);
        let values = rows
            .values
            .to_kind(base.kind())
            .index_select(0, &slots.clamp_min(0));
        values
            .where_self(&trained, &base.reshape([-1, hidden]))
            .view(shape.as_slice())
    }

    /// The rows of the output head that train: its own, or the embedding's when tied.
    pub(crate) fn output_rows(&self) -> Option<&Rows> {
        match &self.output {
            Some(rows) => Some(rows),
            None if self.tied => self.embedding.as_ref(),
            None => None,
        }
    }
}

impl CausalLm {
    /// Writes trained rows into the weights and drops them as trainable: what a merge does,
    /// for commands that only run the model (eval, generate).
    pub fn fold_trainable_tokens(&mut self) {
        let Some(t) = self.trainable_tokens.take() else {
            return;
        };
        let _guard = tch::no_grad_guard();
        let kind = self.model.embed_tokens.kind();
        if let Some(rows) = &t.embedding {
            let _ = self
                .model
                .embed_tokens
                .index_copy_(0, &rows.index, &rows.values.to_kind(kind));
        }
        // A tied head shares the embedding's storage: written above.
        if let Some(rows) = &t.output {
            let _ = self
                .lm_head
                .index_copy_(0, &rows.index, &rows.values.to_kind(kind));
        }
    }
}

/// Row ids and their saved values `[n, hidden]`.
pub type SavedRows = (Vec<i64>, Tensor);

/// (embedding rows, untied output rows) of a saved adapter: ids and values, taken out of
/// `tensors`. Shared by `adapter::load` and `loam merge`.
pub fn saved_rows(
    indices: &TokenIndices,
    tensors: &mut BTreeMap<String, Tensor>,
    tied: bool,
    file: &Path,
) -> Result<(Option<SavedRows>, Option<SavedRows>)> {
    let ids = indices
        .resolve(tied)
        .with_context(|| format!("{}", file.display()))?;
    let mut take = |ids: Option<Vec<i64>>, key: &str| -> Result<Option<SavedRows>> {
        let Some(ids) = ids else {
            return Ok(None);
        };
        let values = tensors.remove(key).with_context(|| {
            format!(
                "{}: adapter_config.json trains token rows, but `{key}` is missing",
                file.display()
            )
        })?;
        Ok(Some((ids, values)))
    };
    let embedding = take(ids.embedding, EMBED_KEY)?;
    let output = take(ids.output, LM_HEAD_KEY)?;
    if tied {
        // a tied model's head has no rows of its own (PEFT saves none)
        tensors.remove(LM_HEAD_KEY);
    }
    Ok((embedding, output))
}

/// Ids must be distinct rows of a `vocab`-row weight.
pub fn check_ids(ids: &[i64], vocab: i64) -> Result<()> {
    if ids.is_empty() {
        bail!("the list of trainable token ids is empty");
    }
    if let Some(bad) = ids.iter().find(|&&id| id < 0 || id >= vocab) {
        bail!(
            "trainable token id {bad} is not a row of the embedding (0..{vocab}); an adapter \
             trained on an extended vocabulary belongs on the model `loam vocab extend` wrote"
        );
    }
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    if distinct.len() != ids.len() {
        bail!("the trainable token ids repeat an id; list each row once");
    }
    Ok(())
}

fn check_shape(values: &Tensor, n: usize, hidden: i64, file: &Path) -> Result<()> {
    if values.size() != [n as i64, hidden] {
        bail!(
            "{}: trained token rows are {:?}, expected [{n}, {hidden}] (the adapter was made for \
             another base model?)",
            file.display(),
            values.size()
        );
    }
    Ok(())
}

/// `lora.trainable_tokens`: `"new"` (the tokens `loam vocab extend` added, read from the
/// model's `vocab_extension.json`) or a list of token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrainableTokensSpec {
    Keyword(String),
    Ids(Vec<i64>),
}

impl TrainableTokensSpec {
    /// The ids this names for the model in `model_dir`; `None` for an empty list.
    pub fn ids(&self, model_dir: &Path) -> Result<Option<Vec<i64>>> {
        match self {
            TrainableTokensSpec::Ids(ids) if ids.is_empty() => Ok(None),
            TrainableTokensSpec::Ids(ids) => Ok(Some(ids.clone())),
            TrainableTokensSpec::Keyword(k) if k == "new" => {
                let ids = super::report::new_token_ids(model_dir).with_context(|| {
                    format!(
                        "lora.trainable_tokens = \"new\" needs a model written by `loam vocab \
                         extend` ({} lists its new tokens); give a list of token ids instead",
                        model_dir.join(super::report::REPORT_FILE).display()
                    )
                })?;
                Ok(Some(ids))
            }
            TrainableTokensSpec::Keyword(other) => bail!(
                "lora.trainable_tokens is \"{other}\"; use \"new\" (the tokens `loam vocab \
                 extend` added) or a list of token ids"
            ),
        }
    }
}

impl Default for TrainableTokensSpec {
    fn default() -> Self {
        TrainableTokensSpec::Ids(Vec::new())
    }
}

/// Attaches the rows `spec` names (if any) to `lm` as trainable.
pub fn attach(lm: &mut CausalLm, spec: &TrainableTokensSpec, model_dir: &Path) -> Result<()> {
    if let Some(ids) = spec.ids(model_dir)? {
        let tokens = TrainableTokens::new(lm, &ids).context("lora.trainable_tokens")?;
        lm.trainable_tokens = Some(tokens);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_configs_resolve_as_peft_applies_them() {
        let list = TokenIndices::List(vec![3, 5]);
        assert_eq!(
            list.resolve(false).unwrap(),
            RowIds {
                embedding: Some(vec![3, 5]),
                output: None
            }
        );
        let both: TokenIndices =
            serde_json::from_str(r#"{"embed_tokens": [3, 5], "lm_head": [3, 5]}"#).unwrap();
        assert_eq!(both.resolve(false).unwrap().output, Some(vec![3, 5]));
        assert_eq!(both.resolve(true).unwrap().output, None, "tied: follows");
        let odd: TokenIndices =
            serde_json::from_str(r#"{"embed_tokens": [3], "lm_head": [4]}"#).unwrap();
        assert!(odd.resolve(true).is_err());
        let other: TokenIndices = serde_json::from_str(r#"{"wte": [3]}"#).unwrap();
        assert!(format!("{:#}", other.resolve(false).unwrap_err()).contains("wte"));
        assert!(check_ids(&[1, 1], 10).is_err());
        assert!(check_ids(&[10], 10).is_err());
        assert!(check_ids(&[0, 9], 10).is_ok());
    }

    /// Trained tokens' embeddings come from their rows, and so do the gradients: autograd
    /// through `F.embedding(W.index_copy(0, ids, rows))`, as PEFT computes it.
    #[test]
    fn embedding_rows_get_peft_gradients() {
        let dir = crate::testing::fixtures().join("vocab/models/llama-gqa-ext");
        let mut lm = crate::model::load(&dir, Kind::Float, Device::Cpu).unwrap();
        let tokens = TrainableTokens::new(&lm, &[49152, 5]).unwrap();
        let rows = tokens.embedding.as_ref().unwrap().values.shallow_clone();
        lm.trainable_tokens = Some(tokens);
        let ids = Tensor::from_slice(&[49152i64, 3, 5, 49152, 7]).view([1, 5]);
        let hidden = lm.spec.hidden_size;
        let weights = Tensor::randn([1, 5, hidden], (Kind::Float, Device::Cpu));
        (lm.embed(&ids) * &weights).sum(Kind::Float).backward();

        let reference = rows.detach().copy().set_requires_grad(true);
        let index = Tensor::from_slice(&[49152i64, 5]);
        let w = lm.model.embed_tokens.index_copy(0, &index, &reference);
        (Tensor::embedding(&w, &ids, -1, false, false) * &weights)
            .sum(Kind::Float)
            .backward();
        let diff = (rows.grad() - reference.grad())
            .abs()
            .max()
            .double_value(&[]);
        let scale = reference.grad().abs().max().double_value(&[]);
        assert!(scale > 0.0 && diff < 1e-6 * scale, "{diff} vs {scale}");
    }
}

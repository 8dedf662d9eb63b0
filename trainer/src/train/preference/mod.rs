//! The preference objectives, DPO and ORPO, on batches of pairs: rows 2i and 2i + 1 are pair
//! i's chosen and rejected sequences, in one forward pass. Definitions, normalization and
//! metric names are TRL's (1.16 `DPOTrainer`, experimental `ORPOTrainer`):
//!
//! - DPO (`dpo`): a sequence's log-probability is the sum over its completion tokens; the
//!   reference's comes from the same forward machinery with the adapter switched off
//!   (`reference`). Step loss = the mean of the pairs' losses.
//! - ORPO (`orpo`): no reference; the odds ratio of the *mean* completion log-probabilities,
//!   plus, as TRL's `ORPOTrainer`, the NLL of the whole chosen sequence (prompt included).
//!   Step loss = the pairs' mean odds-ratio term + the NLL over the step's chosen tokens.
//!
//! Adapter dropout is off for both (TRL's `disable_dropout = True`): the reference has none,
//! and a dropped-out policy would see non-zero rewards before any step.
//!
//! A loss of the log-probabilities is differentiated on a leaf holding them, one value per
//! target; those gradients weight each target's own (kept by [`TargetLogProbs`]) on the way
//! into the decoder, so the logits are never kept.

pub mod dpo;
pub mod orpo;
pub mod reference;

use self::reference::Reference;
use super::loss::{TargetLogProbs, DEFAULT_CHUNK};
use super::objective::StepOutcome;
use super::{batch_tensors, dropout_seed, forward_backward_with, trained_targets, BatchTensors};
use crate::model::CausalLm;
use crate::recipe::{DpoSection, Objective, Recipe};
use anyhow::{bail, Result};
use loam_data::stream::{BatchStream, Encode, Split};
use loam_data::{Batch, DataConfig, IGNORE_INDEX};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// TRL's metric names.
pub mod names {
    pub const REWARDS_CHOSEN: &str = "rewards/chosen";
    pub const REWARDS_REJECTED: &str = "rewards/rejected";
    pub const REWARDS_ACCURACIES: &str = "rewards/accuracies";
    pub const REWARDS_MARGINS: &str = "rewards/margins";
    pub const LOGPS_CHOSEN: &str = "logps/chosen";
    pub const LOGPS_REJECTED: &str = "logps/rejected";
    pub const NLL_LOSS: &str = "nll_loss";
    pub const LOG_ODDS_RATIO: &str = "log_odds_ratio";
    pub const LOG_ODDS_CHOSEN: &str = "log_odds_chosen";
}

/// Metric name → value (a mean over pairs; `nll_loss` over tokens).
pub type Metrics = BTreeMap<String, f64>;

/// A preference objective, ready to train: its settings, and DPO's reference.
pub enum Preference {
    Dpo {
        cfg: DpoSection,
        reference: Reference,
    },
    Orpo {
        beta: f64,
    },
}

impl Preference {
    /// The objective of a `dpo` / `orpo` recipe, for the adapter just attached to `lm`
    /// (before any resume: DPO's reference is the model the run starts from). Turns the
    /// adapters' dropout off.
    pub fn new(
        recipe: &Recipe,
        lm: &mut CausalLm,
        encoder: impl Encode + Send + Sync + 'static,
    ) -> Result<Preference> {
        for (_, linear) in lm.linears_mut() {
            if let Some(lora) = &mut linear.lora {
                lora.dropout = 0.0;
            }
        }
        match recipe.train.objective {
            Objective::Dpo => {
                let cfg = recipe.dpo.clone().unwrap_or_default();
                // A fresh adapter (B = 0) is a no-op: the base is the model the run starts
                // from. A loaded or PiSSA adapter is not: keep a frozen copy of it.
                let starts_at_base =
                    recipe.lora.from.is_empty() && recipe.lora.init != crate::lora::LoraInit::Pissa;
                let mut reference = if starts_at_base {
                    Reference::base(lm)
                } else {
                    Reference::frozen_copy(lm)
                };
                tracing::info!(
                    "DPO reference: {}",
                    if starts_at_base {
                        "the base model (the adapter switched off)"
                    } else {
                        "the starting adapter (a frozen copy)"
                    }
                );
                if cfg.precompute_reference {
                    let stream =
                        reference::precompute_stream(&recipe.data, recipe.train.seed, encoder)?;
                    reference.precompute(lm, stream, recipe.train.micro_batch)?;
                }
                Ok(Preference::Dpo { cfg, reference })
            }
            Objective::Orpo => Ok(Preference::Orpo {
                beta: recipe.orpo.clone().unwrap_or_default().beta,
            }),
            Objective::Sft => bail!("train.objective = \"sft\" is not a preference objective"),
        }
    }

    /// Forward and backward over the micro-batches of one optimizer step; gradients
    /// accumulate on the adapter tensors.
    pub fn step(
        &self,
        lm: &mut CausalLm,
        micro_batches: &[Batch],
        seed: u64,
        step: u64,
        checkpointing: bool,
    ) -> Result<StepOutcome> {
        let mut totals = Tally::default();
        for batch in micro_batches {
            totals.pairs += (batch.rows / 2) as f64;
            totals.chosen_tokens += chosen_tokens(batch);
        }
        let mut tally = Tally::default();
        let reference_is_policy = self.reference_is_policy(lm);
        for (micro, batch) in micro_batches.iter().enumerate() {
            let pairs = PairBatch::new(lm, batch)?;
            let reference = self.reference_log_probs(lm, &pairs, false, reference_is_policy)?;
            let lm: &CausalLm = lm;
            let seed = dropout_seed(seed, step, micro as u64);
            let t = &pairs.tensors;
            let part = forward_backward_with(
                lm,
                &t.input_ids,
                &t.positions,
                seed,
                checkpointing,
                |hidden| {
                    let targets = TargetLogProbs::compute(
                        hidden,
                        &lm.head(),
                        &pairs.targets(self),
                        DEFAULT_CHUNK,
                    );
                    let log_probs = PairLogProbs::new(&targets, &pairs, true);
                    let part = self.loss(&log_probs, &reference);
                    let loss = part.loss_against(&totals);
                    loss.backward();
                    let weights = -log_probs.values.grad();
                    targets.carrier(Some(&weights)).backward();
                    part
                },
            );
            tally.add(part);
        }
        Ok(StepOutcome {
            loss: tally.loss_against(&totals),
            tokens: micro_batches.iter().map(trained_targets).sum(),
            metrics: tally.metrics(),
        })
    }

    /// The loss and metrics (names prefixed `eval_`, as TRL logs them) over the eval split's
    /// pairs, `micro_batch` pairs per forward pass.
    pub fn evaluate(
        &self,
        lm: &mut CausalLm,
        data: &DataConfig,
        encoder: impl Encode + Send + Sync + 'static,
        micro_batch: usize,
    ) -> Result<(f64, Metrics)> {
        let _guard = tch::no_grad_guard();
        let mut stream = BatchStream::new(data, Split::Eval, 0, 0, 1, encoder)?;
        let mut tally = Tally::default();
        let reference_is_policy = self.reference_is_policy(lm);
        while let Some(batch) = stream.next_batch(micro_batch)? {
            let pairs = PairBatch::new(lm, &batch)?;
            let reference = self.reference_log_probs(lm, &pairs, true, reference_is_policy)?;
            let t = &pairs.tensors;
            let hidden = lm.hidden_states(&t.input_ids, &t.positions);
            let targets =
                TargetLogProbs::compute(&hidden, &lm.head(), &pairs.targets(self), DEFAULT_CHUNK);
            tally.add(self.loss(&PairLogProbs::new(&targets, &pairs, false), &reference));
        }
        if tally.pairs == 0.0 {
            // As the SFT eval of an empty split: no number rather than a failed run.
            return Ok((f64::NAN, Metrics::new()));
        }
        let metrics = tally
            .metrics()
            .into_iter()
            .map(|(k, v)| (format!("eval_{k}"), v))
            .collect();
        Ok((tally.loss_against(&tally), metrics))
    }

    /// What the progress bar shows besides the loss.
    pub fn progress(metrics: &Metrics) -> String {
        let get = |k: &str| metrics.get(k).copied().unwrap_or(f64::NAN);
        format!(
            "acc {:.2}  margin {:.3}",
            get(names::REWARDS_ACCURACIES),
            get(names::REWARDS_MARGINS)
        )
    }

    /// Whether DPO's reference is, in exact arithmetic, the policy as it is now (see
    /// [`Reference::is_the_policy`]).
    fn reference_is_policy(&self, lm: &mut CausalLm) -> bool {
        match self {
            Preference::Dpo { reference, .. } => reference.is_the_policy(lm),
            Preference::Orpo { .. } => false,
        }
    }

    /// DPO's reference log-probabilities of a batch; `live`: never the precomputed ones
    /// (held-out pairs have none); `is_policy`: the policy's own will serve.
    fn reference_log_probs(
        &self,
        lm: &mut CausalLm,
        pairs: &PairBatch,
        live: bool,
        is_policy: bool,
    ) -> Result<ReferenceLogProbs> {
        Ok(match self {
            Preference::Dpo { .. } if is_policy => ReferenceLogProbs::Policy,
            Preference::Dpo { reference, .. } => {
                ReferenceLogProbs::Computed(reference.log_probs(lm, pairs, live)?)
            }
            Preference::Orpo { .. } => ReferenceLogProbs::None,
        })
    }

    /// One micro-batch's loss terms (sums over its pairs and tokens) and metric sums.
    fn loss(&self, log_probs: &PairLogProbs, reference: &ReferenceLogProbs) -> Part {
        let sums = log_probs.completion_sums();
        let counts = log_probs.completion_counts();
        match self {
            Preference::Dpo { cfg, .. } => {
                let reference = match reference {
                    ReferenceLogProbs::Computed(values) => values.shallow_clone(),
                    ReferenceLogProbs::Policy => sums.detach(),
                    ReferenceLogProbs::None => unreachable!("DPO always has reference log-probs"),
                };
                let (per_pair, metrics) = dpo::loss(cfg, &sums, &reference, &counts);
                Part::new(per_pair, None, metrics, log_probs)
            }
            Preference::Orpo { beta } => {
                let (per_pair, metrics) = orpo::odds_ratio(*beta, &(sums / counts.clamp_min(1.0)));
                let nll = -log_probs.chosen_sum();
                Part::new(per_pair, Some(nll), metrics, log_probs)
            }
        }
    }
}

/// DPO's reference log-probabilities of a micro-batch, `[pairs, 2]` f64 (chosen, rejected).
enum ReferenceLogProbs {
    /// ORPO has no reference.
    None,
    /// The reference is the policy as it is now: the policy's own, detached.
    Policy,
    Computed(Tensor),
}

/// A micro-batch of pairs on the device.
pub(crate) struct PairBatch<'a> {
    pub batch: &'a Batch,
    pub tensors: BatchTensors,
}

impl<'a> PairBatch<'a> {
    fn new(lm: &CausalLm, batch: &'a Batch) -> Result<PairBatch<'a>> {
        if !batch.rows.is_multiple_of(2) {
            bail!(
                "a batch of preference pairs has an odd number of rows ({})",
                batch.rows
            );
        }
        Ok(PairBatch {
            batch,
            tensors: batch_tensors(lm, batch),
        })
    }

    /// The targets the objective reads: DPO, the completions; ORPO also every token of the
    /// chosen sequences (its NLL).
    fn targets(&self, objective: &Preference) -> Tensor {
        let labels = &self.tensors.labels;
        match objective {
            Preference::Dpo { .. } => labels.shallow_clone(),
            Preference::Orpo { .. } => {
                let shape = [self.batch.rows as i64, self.batch.seq_len as i64];
                let doc_ids = Tensor::from_slice(&self.batch.doc_ids)
                    .view(shape)
                    .to_device(labels.device());
                let tokens = self
                    .tensors
                    .input_ids
                    .masked_fill(&doc_ids.lt(0), IGNORE_INDEX);
                let chosen_row = (Tensor::arange(shape[0], (Kind::Int64, labels.device()))
                    .remainder(2))
                .eq(0)
                .view([-1, 1]);
                tokens.where_self(&chosen_row, labels)
            }
        }
    }
}

/// The log-probability of every target of a micro-batch, as the loss reads it.
struct PairLogProbs {
    /// f64 `[N]`; when training, a leaf that collects the loss's gradient.
    values: Tensor,
    rows: Tensor,
    /// 1.0 where the target is a completion token, else 0.0 (a prompt token: ORPO's NLL).
    completion: Tensor,
    pairs: i64,
    chosen_tokens: f64,
}

impl PairLogProbs {
    fn new(targets: &TargetLogProbs, pairs: &PairBatch, leaf: bool) -> PairLogProbs {
        let values = targets.values.to_kind(Kind::Double).detach();
        let (b, t) = (pairs.batch.rows as i64, pairs.batch.seq_len as i64);
        let completion = pairs
            .tensors
            .labels
            .narrow(1, 1, t - 1)
            .reshape([-1])
            .index_select(0, &targets.positions)
            .ne(IGNORE_INDEX)
            .to_kind(Kind::Double);
        let chosen = targets.rows.remainder(2).eq(0);
        PairLogProbs {
            values: if leaf {
                values.set_requires_grad(true)
            } else {
                values
            },
            chosen_tokens: chosen.sum(Kind::Int64).int64_value(&[]) as f64,
            rows: targets.rows.shallow_clone(),
            completion,
            pairs: b / 2,
        }
    }

    /// Σ log p over each sequence's completion, `[pairs, 2]` (chosen, rejected).
    fn completion_sums(&self) -> Tensor {
        completion_sums(
            &self.values,
            &self.rows,
            Some(&self.completion),
            2 * self.pairs,
        )
    }

    /// Completion tokens of each sequence, `[pairs, 2]`.
    fn completion_counts(&self) -> Tensor {
        completion_sums(&self.completion, &self.rows, None, 2 * self.pairs)
    }

    /// Σ log p over every target of the chosen sequences.
    fn chosen_sum(&self) -> Tensor {
        let chosen = self.rows.remainder(2).eq(0).to_kind(Kind::Double);
        (&self.values * chosen).sum(Kind::Double)
    }
}

/// Σ `values` (times `mask`) per row, `[rows / 2, 2]` f64.
pub(crate) fn completion_sums(
    values: &Tensor,
    rows: &Tensor,
    mask: Option<&Tensor>,
    n_rows: i64,
) -> Tensor {
    let values = values.to_kind(Kind::Double);
    let values = match mask {
        Some(m) => values * m,
        None => values,
    };
    Tensor::zeros([n_rows], (Kind::Double, values.device()))
        .index_add(0, rows, &values)
        .view([-1, 2])
}

/// The chosen sequences' next tokens in a pair batch, padding left out: ORPO's NLL count.
fn chosen_tokens(batch: &Batch) -> f64 {
    (0..batch.rows)
        .step_by(2)
        .map(|row| {
            let span = row * batch.seq_len + 1..(row + 1) * batch.seq_len;
            batch.doc_ids[span].iter().filter(|&&d| d >= 0).count() as f64
        })
        .sum()
}

/// One micro-batch's contribution: loss terms (differentiable sums) and metric sums.
struct Part {
    /// Σ over pairs of each pair's loss (DPO) or odds-ratio term (ORPO).
    pair_loss: Tensor,
    /// ORPO: Σ of the chosen sequences' NLL.
    nll: Option<Tensor>,
    metrics: Vec<(&'static str, f64)>,
    pairs: f64,
    chosen_tokens: f64,
}

impl Part {
    fn new(
        per_pair: Tensor,
        nll: Option<Tensor>,
        metrics: Vec<(&'static str, Tensor)>,
        log_probs: &PairLogProbs,
    ) -> Part {
        Part {
            pair_loss: per_pair.sum(Kind::Double),
            metrics: metrics
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        v.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]),
                    )
                })
                .collect(),
            nll,
            pairs: log_probs.pairs as f64,
            chosen_tokens: log_probs.chosen_tokens,
        }
    }

    /// The share of a loss normalized by `totals`' pairs and chosen tokens.
    fn loss_against(&self, totals: &Tally) -> Tensor {
        let loss = &self.pair_loss / totals.pairs.max(1.0);
        match &self.nll {
            Some(nll) => loss + nll / totals.chosen_tokens.max(1.0),
            None => loss,
        }
    }
}

/// Sums over the pairs (and tokens) seen so far.
#[derive(Default)]
struct Tally {
    pairs: f64,
    chosen_tokens: f64,
    pair_loss: f64,
    nll: Option<f64>,
    metrics: BTreeMap<&'static str, f64>,
}

impl Tally {
    fn add(&mut self, part: Part) {
        self.pairs += part.pairs;
        self.chosen_tokens += part.chosen_tokens;
        self.pair_loss += part.pair_loss.double_value(&[]);
        if let Some(nll) = &part.nll {
            *self.nll.get_or_insert(0.0) += nll.double_value(&[]);
        }
        for (k, v) in part.metrics {
            *self.metrics.entry(k).or_default() += v;
        }
    }

    /// The accumulated loss, normalized by `totals`.
    fn loss_against(&self, totals: &Tally) -> f64 {
        self.pair_loss / totals.pairs.max(1.0)
            + self
                .nll
                .map_or(0.0, |nll| nll / totals.chosen_tokens.max(1.0))
    }

    /// Per-pair means of the metrics (per-token for the NLL), given the counts in `self`.
    fn metrics(&self) -> Metrics {
        let pairs = self.pairs.max(1.0);
        let mut out: Metrics = self
            .metrics
            .iter()
            .map(|(k, v)| (k.to_string(), v / pairs))
            .collect();
        if let Some(nll) = self.nll {
            out.insert(names::NLL_LOSS.into(), nll / self.chosen_tokens.max(1.0));
        }
        out
    }
}

#[cfg(test)]
mod trl_parity_tests;

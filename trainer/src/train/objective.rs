//! What the loop optimizes (`train.objective`): next-token cross-entropy (SFT) or a
//! preference objective, behind one call per step and one per evaluation, so the loop reads
//! the same for all of them.

use super::held_out::{HeldOut, HeldOutScores};
use super::preference::{Metrics, Preference};
use super::{accumulate_share, shared};
use crate::dist::{feed::StepShare, Replicas, StepSums};
use crate::model::CausalLm;
use crate::recipe::{Objective as ObjectiveKind, Recipe};
use anyhow::{bail, Result};
use loam_data::encode::Encoder;
use std::sync::Arc;
use tch::Tensor;

pub enum Objective {
    Sft,
    Preference(Preference),
}

/// One optimizer step's forward and backward passes.
pub struct StepOutcome {
    pub loss: f64,
    /// Trained tokens in the step (of pairs: the completions of both sides).
    pub tokens: i64,
    /// The objective's own metrics (TRL's names), for `metrics.jsonl`.
    pub metrics: Metrics,
}

/// An evaluation on the held-out split.
pub struct Evaluation {
    /// SFT: loss, bits per byte and the generation metrics; preference objectives: the loss
    /// (bits per byte is NaN: a pair's loss is no per-token NLL).
    pub scores: HeldOutScores,
    /// The objective's own metrics, names prefixed `eval_`.
    pub metrics: Metrics,
}

impl Objective {
    /// The recipe's objective for the adapter just attached (before any resume).
    pub fn new(
        recipe: &Recipe,
        lm: &mut CausalLm,
        encoder: &Arc<Encoder>,
        replicas: &Replicas,
    ) -> Result<Objective> {
        Ok(match recipe.train.objective {
            ObjectiveKind::Sft => Objective::Sft,
            ObjectiveKind::Dpo | ObjectiveKind::Orpo if replicas.world.size > 1 => {
                bail!(
                "train.objective = \"{}\" runs in one process: data-parallel preference tuning \
                 is not supported yet; start loam without torchrun",
                if recipe.train.objective == ObjectiveKind::Dpo { "dpo" } else { "orpo" }
            )
            }
            ObjectiveKind::Dpo | ObjectiveKind::Orpo => {
                Objective::Preference(Preference::new(recipe, lm, shared(encoder))?)
            }
        })
    }

    /// The forward and backward passes of this rank's share of one step, then the step's
    /// all-reduce (gradients summed over the ranks; `stop` tells every rank one asked).
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        lm: &mut CausalLm,
        replicas: &Replicas,
        share: &StepShare,
        grads: &Tensor,
        stop: bool,
        seed: u64,
        step: u64,
        checkpointing: bool,
    ) -> Result<(StepOutcome, StepSums)> {
        match self {
            Objective::Sft => {
                let nll = accumulate_share(
                    lm,
                    &share.batches,
                    share.first_micro,
                    share.step_tokens,
                    seed,
                    step,
                    checkpointing,
                )?;
                let sums = replicas.reduce_step(grads, nll, stop)?;
                let outcome = StepOutcome {
                    loss: sums.nll / share.step_tokens.max(1) as f64,
                    tokens: share.step_tokens,
                    metrics: Metrics::new(),
                };
                Ok((outcome, sums))
            }
            // One process (see `new`): the all-reduce only passes `stop` through.
            Objective::Preference(p) => {
                let outcome = p.step(lm, &share.batches, seed, step, checkpointing)?;
                Ok((outcome, replicas.reduce_step(grads, 0.0, stop)?))
            }
        }
    }

    pub fn evaluate(
        &self,
        lm: &mut CausalLm,
        held_out: &HeldOut,
        replicas: &Replicas,
        recipe: &Recipe,
        encoder: &Arc<Encoder>,
    ) -> Result<Evaluation> {
        match self {
            Objective::Sft => Ok(Evaluation {
                scores: HeldOutScores::from(&held_out.evaluate(replicas, lm)?),
                metrics: Metrics::new(),
            }),
            Objective::Preference(p) => {
                let (loss, metrics) =
                    p.evaluate(lm, &recipe.data, shared(encoder), recipe.train.micro_batch)?;
                let scores = HeldOutScores {
                    loss,
                    bits_per_byte: f64::NAN,
                    chrf: None,
                    bleu: None,
                };
                Ok(Evaluation { scores, metrics })
            }
        }
    }

    /// What the progress bar shows besides loss, lr and speed.
    pub fn progress(&self, metrics: &Metrics) -> String {
        match self {
            Objective::Sft => String::new(),
            Objective::Preference(_) => format!("  {}", Preference::progress(metrics)),
        }
    }
}

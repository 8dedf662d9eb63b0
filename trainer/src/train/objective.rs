//! What the loop optimizes (`train.objective`): next-token cross-entropy (SFT) or a
//! preference objective, behind one call per step and one per evaluation, so the loop reads
//! the same for all of them.

use super::preference::{Metrics, Preference};
use super::{accumulate_gradients, shared};
use crate::eval;
use crate::model::CausalLm;
use crate::recipe::{Objective as ObjectiveKind, Recipe};
use anyhow::Result;
use loam_data::encode::Encoder;
use loam_data::stream::BatchStream;
use loam_data::Batch;
use std::sync::Arc;

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
    pub loss: f64,
    /// The objective's own metrics, names prefixed `eval_`.
    pub metrics: Metrics,
}

impl Objective {
    /// The recipe's objective for the adapter just attached (before any resume).
    pub fn new(recipe: &Recipe, lm: &mut CausalLm, encoder: &Arc<Encoder>) -> Result<Objective> {
        Ok(match recipe.train.objective {
            ObjectiveKind::Sft => Objective::Sft,
            ObjectiveKind::Dpo | ObjectiveKind::Orpo => {
                Objective::Preference(Preference::new(recipe, lm, shared(encoder))?)
            }
        })
    }

    pub fn step(
        &self,
        lm: &mut CausalLm,
        micro_batches: &[Batch],
        seed: u64,
        step: u64,
        checkpointing: bool,
    ) -> Result<StepOutcome> {
        match self {
            Objective::Sft => {
                let (loss, tokens) =
                    accumulate_gradients(lm, micro_batches, seed, step, checkpointing)?;
                Ok(StepOutcome {
                    loss,
                    tokens,
                    metrics: Metrics::new(),
                })
            }
            Objective::Preference(p) => p.step(lm, micro_batches, seed, step, checkpointing),
        }
    }

    pub fn evaluate(
        &self,
        lm: &mut CausalLm,
        recipe: &Recipe,
        encoder: &Arc<Encoder>,
    ) -> Result<Evaluation> {
        match self {
            Objective::Sft => {
                let examples = BatchStream::eval_examples(&recipe.data, shared(encoder))?
                    .map(|e| e.map_err(anyhow::Error::from));
                let result = eval::evaluate(lm, examples, recipe.data.seq_len, None)?;
                Ok(Evaluation {
                    loss: result.loss,
                    metrics: Metrics::new(),
                })
            }
            Objective::Preference(p) => {
                let (loss, metrics) =
                    p.evaluate(lm, &recipe.data, shared(encoder), recipe.train.micro_batch)?;
                Ok(Evaluation { loss, metrics })
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

//! The held-out evals of a training run: loss and bits per byte on the whole eval split,
//! and with `train.eval_generate = N` chrF++ / BLEU / exact match of the model's answers to
//! the first N held-out prompts (greedy, `train.eval_max_new_tokens` new tokens at most).

use crate::dist::Replicas;
use crate::eval::generation::{self, GenerationOptions, Task};
use crate::eval::{self, EvalResult};
use crate::generate::Sampling;
use crate::model::CausalLm;
use crate::recipe::Recipe;
use anyhow::{Context, Result};
use loam_data::encode::Encoder;
use loam_data::eval_split::eval_rows;
use loam_data::{DataConfig, OnError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What one held-out eval measured (`metrics.jsonl`'s `eval_*`, the summary, the card).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldOutScores {
    pub loss: f64,
    /// NaN for a preference objective (a pair's loss is no per-token NLL), saved as null.
    #[serde(deserialize_with = "nan_if_null")]
    pub bits_per_byte: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrf: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu: Option<f64>,
}

impl From<&EvalResult> for HeldOutScores {
    fn from(r: &EvalResult) -> Self {
        HeldOutScores {
            loss: r.loss,
            bits_per_byte: r.bits_per_byte,
            chrf: r.generation.map(|g| g.chrf),
            bleu: r.generation.map(|g| g.bleu),
        }
    }
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `loss 2.3456  bits/byte 1.2345  chrF++ 41.20  BLEU 12.30`, as the training log shows it.
impl std::fmt::Display for HeldOutScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loss {:.4}", self.loss)?;
        if self.bits_per_byte.is_finite() {
            write!(f, "  bits/byte {:.4}", self.bits_per_byte)?;
        }
        if let Some(chrf) = self.chrf {
            write!(f, "  chrF++ {chrf:.2}")?;
        }
        if let Some(bleu) = self.bleu {
            write!(f, "  BLEU {bleu:.2}")?;
        }
        Ok(())
    }
}

/// The eval split of a recipe and how to score it.
pub struct HeldOut {
    data: DataConfig,
    encoder: Arc<Encoder>,
    generate: usize,
    generation: GenerationOptions,
}

impl HeldOut {
    pub fn new(recipe: &Recipe, encoder: Arc<Encoder>) -> HeldOut {
        HeldOut {
            data: recipe.data.clone(),
            encoder,
            generate: recipe.train.eval_generate as usize,
            generation: GenerationOptions {
                max_new_tokens: recipe.train.eval_max_new_tokens,
                sampling: Sampling::GREEDY,
                batch_size: 16,
            },
        }
    }

    /// Scores `lm` on the eval split, the loss shared out over the ranks of a data-parallel
    /// run. Every rank generates the same answers (the same work, so no rank waits at the
    /// next collective for another's generation); only rank 0 reports them.
    pub fn evaluate(&self, replicas: &Replicas, lm: &CausalLm) -> Result<EvalResult> {
        let seq_len = self.data.seq_len;
        let mut tasks = Vec::new();
        let mut failed = None;
        let examples = eval_rows(&self.data)?.filter_map(|row| {
            let row = match row {
                Ok(row) => row,
                Err(e) => return Some(Err(e.into())),
            };
            let at = || format!("held-out row at {}", row.loc);
            if tasks.len() < self.generate && failed.is_none() {
                match Task::of(&self.encoder, &row.sample) {
                    Ok(task) => tasks.push(task),
                    Err(e) => failed = Some(e.context(at())),
                }
            }
            match eval::encode_for_eval(&self.encoder, &row.sample, &row.opts, seq_len) {
                Ok(example) => Some(Ok(example)),
                Err(_) if row.on_error == OnError::Skip => None,
                Err(e) => Some(Err(e.context(at()))),
            }
        });
        let mut result = eval::evaluate_rows_across(replicas, lm, examples, seq_len)?;
        if let Some(e) = failed {
            return Err(e).context("train.eval_generate scores answers to held-out prompts");
        }
        if self.generate > 0 {
            let predictions = generation::predict(lm, &self.encoder, &tasks, &self.generation)?;
            result.generation = Some(generation::score(&predictions));
        }
        Ok(result)
    }
}

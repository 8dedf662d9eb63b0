//! DPO's reference model, for free: the same base with the trained adapter switched off, or
//! with a frozen copy of the adapter the run started from (`lora.from`, PiSSA) in its place,
//! as TRL's `DPOTrainer` does with PEFT (`disable_adapter()`, or its "ref" adapter). No
//! second copy of the base.
//!
//! With `dpo.precompute_reference = true` the reference log-probabilities of every training
//! pair are computed once, before the first step ([`Precomputed`]).

use super::{completion_sums, PairBatch};
use crate::lora::Lora;
use crate::model::CausalLm;
use crate::train::loss::{TargetLogProbs, DEFAULT_CHUNK};
use crate::train::BatchTensors;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use loam_data::stream::{BatchStream, Split};
use loam_data::{Batch, DataConfig};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use tch::Tensor;

/// What stands in each adapted linear's place during a reference pass.
pub struct Reference {
    /// In the order of [`CausalLm::linears_mut`]: `None` (the adapter off) or the frozen
    /// starting adapter.
    adapters: Vec<Option<Lora>>,
    precomputed: Option<Precomputed>,
}

impl Reference {
    /// The base model: every adapter off. Right when the adapter starts as a no-op (B = 0).
    pub fn base(lm: &mut CausalLm) -> Reference {
        let adapters = lm.linears_mut().iter().map(|_| None).collect();
        Reference {
            adapters,
            precomputed: None,
        }
    }

    /// The model as it starts: a frozen copy of every adapter as it is now.
    pub fn frozen_copy(lm: &mut CausalLm) -> Reference {
        let _guard = tch::no_grad_guard();
        let adapters = lm
            .linears_mut()
            .iter()
            .map(|(_, linear)| {
                linear.lora.as_ref().map(|l| Lora {
                    a: l.a.detach().copy(),
                    b: l.b.detach().copy(),
                    magnitude: l.magnitude.as_ref().map(|m| m.detach().copy()),
                    scale: l.scale,
                    dropout: 0.0,
                    pissa_start: None,
                })
            })
            .collect();
        Reference {
            adapters,
            precomputed: None,
        }
    }

    /// Computes the reference log-probabilities of every pair of one epoch of the train
    /// split now; [`Reference::log_probs`] then looks them up instead of running the model.
    pub fn precompute(
        &mut self,
        lm: &mut CausalLm,
        mut stream: BatchStream,
        micro_batch: usize,
    ) -> Result<()> {
        let bar = ProgressBar::new(stream.total_rows());
        bar.set_style(
            ProgressStyle::with_template(
                "reference log-probs {bar:30} {pos}/{len} rows  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut table = HashMap::new();
        while let Some(batch) = stream.next_batch(micro_batch)? {
            let values = self.run(lm, &batch)?;
            for (row, value) in values.iter().enumerate() {
                table.insert(row_key(&batch, row), *value);
            }
            bar.set_position(stream.stats().rows_read);
        }
        bar.finish_and_clear();
        tracing::info!(
            "reference log-probabilities of {} sequences precomputed",
            table.len()
        );
        self.precomputed = Some(Precomputed { table });
        Ok(())
    }

    /// Each sequence's summed completion log-probability under the reference, `[pairs, 2]`
    /// f64 (chosen, rejected): looked up when precomputed (`live = false`, training pairs),
    /// else computed now.
    pub(crate) fn log_probs(
        &self,
        lm: &mut CausalLm,
        batch: &PairBatch,
        live: bool,
    ) -> Result<Tensor> {
        let values = match &self.precomputed {
            Some(p) if !live => p.lookup(batch.batch)?,
            _ => self.run(lm, batch.batch)?,
        };
        Ok(Tensor::from_slice(&values)
            .view([-1, 2])
            .to_device(lm.device))
    }

    /// Whether the reference is, in exact arithmetic, the policy as it is now: every adapter
    /// off while each trained one is still a no-op (B = 0, no DoRA magnitude), or every
    /// frozen copy equal to its trained adapter. So it is at step 0, and there the policy's
    /// own log-probabilities serve as the reference's: every margin is exactly 0, as in TRL,
    /// whatever kernel a separate pass (checkpointing, a precomputed table, another batch
    /// shape) would have rounded differently.
    pub fn is_the_policy(&self, lm: &mut CausalLm) -> bool {
        let _guard = tch::no_grad_guard();
        lm.linears_mut()
            .iter()
            .zip(&self.adapters)
            .all(|((_, linear), reference)| match (&linear.lora, reference) {
                (None, None) => true,
                (Some(trained), None) => {
                    trained.magnitude.is_none() && trained.b.abs().max().double_value(&[]) == 0.0
                }
                (Some(trained), Some(frozen)) => {
                    trained.scale == frozen.scale
                        && trained.a.equal(&frozen.a)
                        && trained.b.equal(&frozen.b)
                        && match (&trained.magnitude, &frozen.magnitude) {
                            (None, None) => true,
                            (Some(t), Some(f)) => t.equal(f),
                            _ => false,
                        }
                }
                (None, Some(_)) => false,
            })
    }

    /// A forward pass of the reference, without gradients: per row of `batch`.
    fn run(&self, lm: &mut CausalLm, batch: &Batch) -> Result<Vec<f64>> {
        let _guard = tch::no_grad_guard();
        let BatchTensors {
            input_ids,
            positions,
            labels,
        } = crate::train::batch_tensors(lm, batch);
        let sums = self.with_adapters(lm, |lm| {
            let hidden = lm.hidden_states(&input_ids, &positions);
            let targets = TargetLogProbs::compute(&hidden, &lm.head(), &labels, DEFAULT_CHUNK);
            completion_sums(&targets.values, &targets.rows, None, batch.rows as i64)
        });
        Ok(Vec::try_from(sums.view([-1]))?)
    }

    /// `f` on the reference model: the trained adapters swapped for the reference's, and back.
    fn with_adapters<R>(&self, lm: &mut CausalLm, f: impl FnOnce(&CausalLm) -> R) -> R {
        let mut slots: Vec<Option<Lora>> = self.adapters.iter().map(shallow).collect();
        swap(lm, &mut slots);
        let result = f(lm);
        swap(lm, &mut slots);
        result
    }
}

/// Another handle on the same adapter tensors.
fn shallow(lora: &Option<Lora>) -> Option<Lora> {
    lora.as_ref().map(|l| Lora {
        a: l.a.shallow_clone(),
        b: l.b.shallow_clone(),
        magnitude: l.magnitude.as_ref().map(Tensor::shallow_clone),
        scale: l.scale,
        dropout: l.dropout,
        pissa_start: None,
    })
}

fn swap(lm: &mut CausalLm, slots: &mut [Option<Lora>]) {
    for ((_, linear), slot) in lm.linears_mut().into_iter().zip(slots) {
        std::mem::swap(&mut linear.lora, slot);
    }
}

/// Reference log-probabilities by sequence content, so a training batch finds its rows
/// whatever order and batch the shuffled stream put them in.
struct Precomputed {
    table: HashMap<u64, f64>,
}

impl Precomputed {
    fn lookup(&self, batch: &Batch) -> Result<Vec<f64>> {
        (0..batch.rows)
            .map(|row| match self.table.get(&row_key(batch, row)) {
                Some(&v) => Ok(v),
                None => bail!(
                    "a training pair has no precomputed reference log-probability (the data \
                     changed during the run?); set dpo.precompute_reference = false"
                ),
            })
            .collect()
    }
}

/// A hash of a row's tokens and labels, padding left out.
fn row_key(batch: &Batch, row: usize) -> u64 {
    let span = row * batch.seq_len..(row + 1) * batch.seq_len;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for i in span {
        if batch.doc_ids[i] >= 0 {
            (batch.input_ids[i], batch.labels[i]).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// The train split's stream for precomputing: one epoch, file order (the rows are what
/// matters, not their order).
pub fn precompute_stream(
    cfg: &DataConfig,
    seed: u64,
    encoder: impl loam_data::stream::Encode + Send + Sync + 'static,
) -> Result<BatchStream> {
    let cfg = DataConfig {
        shuffle: false,
        ..cfg.clone()
    };
    Ok(BatchStream::new(&cfg, Split::Train, seed, 0, 1, encoder)?.with_epochs(1))
}

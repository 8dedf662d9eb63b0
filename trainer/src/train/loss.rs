//! Next-token cross-entropy over trained positions only, and the per-target log-probabilities
//! the preference objectives build their losses from.
//!
//! Labels are unshifted (`labels[t]` is the token at t, or -100): position t predicts
//! `labels[t + 1]`. Only positions whose target is trained go through `lm_head`, a chunk
//! of rows at a time, so a full `[tokens × vocab]` logits tensor is never built.
//!
//! When the hidden states need a gradient, each chunk's gradient is computed right away
//! (`∂ nll / ∂ logits = softmax − onehot`, pushed through `lm_head`) and the chunk's logits
//! are dropped. Autograd would keep every chunk's f32 log-probabilities alive until
//! backward and then read them again; this way the logits are touched while still in
//! cache and the largest tensor of the step never outlives its chunk.

use crate::model::LmHead;
use loam_data::IGNORE_INDEX;
use tch::{Kind, Tensor};

/// Rows of hidden states sent through `lm_head` at once: 128 × a 50k vocabulary is 25 MB
/// of f32 logits, small enough for the allocator to reuse instead of mapping fresh pages.
pub const DEFAULT_CHUNK: i64 = 128;

/// Sum of NLL (f32 scalar tensor, differentiable) and the number of predicted tokens.
/// With a soft-capped head (Gemma 2) the logits are `c · tanh(z / c)` and the gradient
/// through them is multiplied by `1 − tanh²(z / c)`. The head's trained token rows
/// (`lora.trainable_tokens`) get their gradient here too, as the hidden states do.
pub fn next_token_nll_sum(
    hidden: &Tensor,
    head: &LmHead,
    labels: &Tensor,
    chunk: i64,
) -> (Tensor, i64) {
    let targets = TargetLogProbs::compute(hidden, head, labels, chunk);
    let nll = -targets.values.sum(Kind::Float);
    if targets.nll_grads.is_none() {
        return (nll, targets.count());
    }
    (nll + targets.carrier(None), targets.count())
}

/// The log-probabilities of a batch's trained next tokens (`labels[t + 1]` where it is not
/// [`IGNORE_INDEX`]), and, when the hidden states need a gradient, each one's gradient with
/// respect to its hidden state, so that any loss of these log-probabilities can be carried
/// into the decoder ([`TargetLogProbs::carrier`]) without keeping the logits.
pub struct TargetLogProbs {
    /// `log p(target)` of each trained target, f32 `[N]`, not differentiable.
    pub values: Tensor,
    /// Each target's batch row, int64 `[N]`.
    pub rows: Tensor,
    /// Each target's flat index in `[B, T − 1]` (the position that predicts it).
    pub positions: Tensor,
    /// The hidden states that predict the targets, `[N, hidden]`.
    states: Tensor,
    /// `∂ −log p / ∂ state` of each target, f32 `[N, hidden]`, when `states` need a gradient.
    nll_grads: Option<Tensor>,
    /// The head's trained rows (ids `[n]`, values `[n, hidden]`) and `∂ −log p / ∂ logit` of
    /// each target at those rows, f32 `[N, n]`: a row's gradient is `Σ_i w_i g_i[r] · state_i`.
    row_grads: Option<(Tensor, Tensor)>,
}

impl TargetLogProbs {
    pub fn compute(hidden: &Tensor, head: &LmHead, labels: &Tensor, chunk: i64) -> Self {
        let lm_head = &head.weight;
        let (b, t, h) = hidden.size3().expect("hidden states are [B, T, H]");
        let device = hidden.device();
        let targets = labels.narrow(1, 1, t - 1).reshape([-1]);
        let positions = targets.ne(IGNORE_INDEX).nonzero().squeeze_dim(1);
        let count = positions.size()[0];
        let rows = positions.divide_scalar_mode(t - 1, "floor");
        if count == 0 || b == 0 {
            return TargetLogProbs {
                values: Tensor::zeros([0], (Kind::Float, device)),
                rows,
                positions,
                states: Tensor::zeros([0, h], (hidden.kind(), device)),
                nll_grads: None,
                row_grads: None,
            };
        }
        let states = hidden
            .narrow(1, 0, t - 1)
            .reshape([-1, h])
            .index_select(0, &positions);
        let targets = targets.index_select(0, &positions);
        let with_grad = states.requires_grad();
        let trained_rows = head.trained_rows.as_ref().filter(|_| with_grad);

        let _guard = tch::no_grad_guard();
        let mut values = Vec::new();
        let mut grads = Vec::new();
        let mut row_grads = Vec::new();
        let mut start = 0;
        while start < count {
            let len = chunk.min(count - start);
            let rows = states.narrow(0, start, len);
            let target = targets.narrow(0, start, len).unsqueeze(1);
            // Logits in the compute dtype (as transformers), log-softmax in f32.
            let logits = head.logits(&rows);
            let mut log_probs = logits.log_softmax(-1, Kind::Float);
            let picked = log_probs.gather(1, &target, false);
            values.push(picked.squeeze_dim(1));
            if with_grad {
                // softmax − onehot, built in place over the log-probabilities.
                let mut softmax = log_probs.exp_();
                let mut grad_logits =
                    softmax.scatter_add_(1, &target, &Tensor::full_like(&picked, -1.0));
                if let Some(cap) = head.softcap {
                    // d(c·tanh(z/c))/dz = 1 − (capped / c)²
                    let t = logits.to_kind(Kind::Float) / cap;
                    grad_logits *= 1.0 - t.square();
                }
                grads.push(grad_logits.to_kind(rows.kind()).mm(lm_head));
                if let Some((index, _)) = trained_rows {
                    row_grads.push(grad_logits.index_select(1, index));
                }
            }
            start += len;
        }
        TargetLogProbs {
            values: Tensor::cat(&values, 0),
            rows,
            positions,
            states,
            nll_grads: with_grad.then(|| Tensor::cat(&grads, 0).to_kind(Kind::Float)),
            row_grads: trained_rows
                .map(|(_, values)| (values.shallow_clone(), Tensor::cat(&row_grads, 0))),
        }
    }

    /// How many targets.
    pub fn count(&self) -> i64 {
        self.values.size()[0]
    }

    /// A term worth exactly 0 whose gradient with respect to the hidden states is that of
    /// `Σ_i w_i · (−log p_i)` (every `w_i = 1` when `weights` is `None`: the summed NLL), so
    /// `backward` carries it, times any later scaling, into the decoder. Zero (and no
    /// gradient) when the hidden states need none.
    pub fn carrier(&self, weights: Option<&Tensor>) -> Tensor {
        let Some(grad) = &self.nll_grads else {
            return Tensor::zeros([], (Kind::Float, self.values.device()));
        };
        let weigh = |g: &Tensor| match weights {
            None => g.shallow_clone(),
            Some(w) => g * w.to_kind(Kind::Float).unsqueeze(1),
        };
        let states = self.states.to_kind(Kind::Float);
        let surrogate = (&states * weigh(grad)).sum(Kind::Float);
        let mut zero = &surrogate - surrogate.detach();
        if let Some((values, logit_grads)) = &self.row_grads {
            let row_grad = weigh(logit_grads).tr().mm(&states.detach());
            let rows = (values * row_grad).sum(Kind::Float);
            zero += &rows - rows.detach();
        }
        zero
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Summed next-token cross-entropy by autograd, the plain way.
    fn plain_nll(
        hidden: &Tensor,
        lm_head: &Tensor,
        softcap: Option<f64>,
        labels: &Tensor,
    ) -> Tensor {
        let (_, t, h) = hidden.size3().unwrap();
        let mut logits = hidden
            .narrow(1, 0, t - 1)
            .reshape([-1, h])
            .linear::<Tensor>(lm_head, None);
        if let Some(cap) = softcap {
            logits = (logits / cap).tanh() * cap;
        }
        logits.cross_entropy_loss::<Tensor>(
            &labels.narrow(1, 1, t - 1).reshape([-1]),
            None,
            tch::Reduction::Sum,
            IGNORE_INDEX,
            0.0,
        )
    }

    /// The fused loss and its gradient equal autograd through plain cross-entropy, with
    /// and without a soft-capped head.
    #[test]
    fn fused_gradient_equals_autograd() {
        for softcap in [None, Some(3.0)] {
            tch::manual_seed(0);
            let (b, t, h, vocab) = (2, 9, 16, 50);
            let lm_head = Tensor::randn([vocab, h], (Kind::Float, tch::Device::Cpu));
            let head = LmHead {
                weight: lm_head.shallow_clone(),
                softcap,
                trained_rows: None,
            };
            let hidden = Tensor::randn([b, t, h], (Kind::Float, tch::Device::Cpu));
            let labels = Tensor::randint(vocab, [b, t], (Kind::Int64, tch::Device::Cpu));
            let _ = labels.narrow(1, 0, 3).fill_(IGNORE_INDEX);

            let fused_in = hidden.copy().set_requires_grad(true);
            let (fused, count) = next_token_nll_sum(&fused_in, &head, &labels, 4);
            (&fused * 0.25).backward();

            let plain_in = hidden.copy().set_requires_grad(true);
            let plain = plain_nll(&plain_in, &lm_head, softcap, &labels);
            (&plain * 0.25).backward();
            assert_eq!(count, b * (t - 1) - b * 2);
            let loss_diff = (fused.double_value(&[]) - plain.double_value(&[])).abs();
            assert!(
                loss_diff < 1e-4 * plain.double_value(&[]),
                "softcap {softcap:?}: loss differs by {loss_diff}"
            );
            let grad_diff = (fused_in.grad() - plain_in.grad())
                .abs()
                .max()
                .double_value(&[]);
            let grad_max = plain_in.grad().abs().max().double_value(&[]);
            assert!(
                grad_max > 0.0 && grad_diff < 1e-5 * grad_max,
                "softcap {softcap:?}: gradients differ by {grad_diff}"
            );

            // Without a gradient the same loss comes back, and nothing is differentiable.
            let (no_grad, _) = next_token_nll_sum(&hidden, &head, &labels, 3);
            assert!(!no_grad.requires_grad());
            assert!((no_grad.double_value(&[]) - fused.double_value(&[])).abs() < 1e-4);
        }
    }

    /// Trained rows of a (soft-capped) head get autograd's gradient through
    /// `W.index_copy(0, ids, rows)`.
    #[test]
    fn trained_head_rows_get_autograds_gradient() {
        tch::manual_seed(1);
        let (b, t, h, vocab) = (2, 7, 8, 30);
        let opts = (Kind::Float, tch::Device::Cpu);
        let weight = Tensor::randn([vocab, h], opts);
        let ids = Tensor::from_slice(&[3i64, 17, 29]);
        let hidden = Tensor::randn([b, t, h], opts);
        let labels = Tensor::randint(vocab, [b, t], (Kind::Int64, tch::Device::Cpu));
        let _ = labels.narrow(1, 0, 2).fill_(IGNORE_INDEX);
        let start = weight.index_select(0, &ids);

        let rows = start.copy().set_requires_grad(true);
        let states = hidden.copy().set_requires_grad(true);
        let head = LmHead {
            weight: weight.index_copy(0, &ids, &rows.detach()),
            softcap: Some(4.0),
            trained_rows: Some((ids.shallow_clone(), rows.shallow_clone())),
        };
        let (fused, _) = next_token_nll_sum(&states, &head, &labels, 3);
        (&fused * 0.5).backward();

        let plain_rows = start.copy().set_requires_grad(true);
        let plain_states = hidden.copy().set_requires_grad(true);
        let w = weight.index_copy(0, &ids, &plain_rows);
        let frozen = LmHead {
            weight: w.detach(),
            softcap: Some(4.0),
            trained_rows: None,
        };
        let (plain, _) = next_token_nll_sum(&plain_states, &frozen, &labels, 100);
        let reference = plain_nll(&plain_states, &w, Some(4.0), &labels);
        (&reference * 0.5).backward();
        assert!((fused.double_value(&[]) - plain.double_value(&[])).abs() < 1e-4);
        for (got, want) in [
            (rows.grad(), plain_rows.grad()),
            (states.grad(), plain_states.grad()),
        ] {
            let diff = (&got - &want).abs().max().double_value(&[]);
            let scale = want.abs().max().double_value(&[]);
            assert!(scale > 0.0 && diff < 1e-5 * scale, "{diff} vs {scale}");
        }
    }
}

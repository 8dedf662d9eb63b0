//! Next-token cross-entropy over trained positions only.
//!
//! Labels are unshifted (`labels[t]` is the token at t, or -100): position t predicts
//! `labels[t + 1]`. Only positions whose target is trained go through `lm_head`, a chunk
//! of rows at a time, so a full `[tokens × vocab]` logits tensor is never built.

use loam_data::IGNORE_INDEX;
use tch::{Kind, Tensor};

/// Rows of hidden states sent through `lm_head` at once.
pub const DEFAULT_CHUNK: i64 = 1024;

/// Sum of NLL (f32 scalar tensor, differentiable) and the number of predicted tokens.
pub fn next_token_nll_sum(
    hidden: &Tensor,
    lm_head: &Tensor,
    labels: &Tensor,
    chunk: i64,
) -> (Tensor, i64) {
    let (b, t, h) = hidden.size3().expect("hidden states are [B, T, H]");
    let targets = labels.narrow(1, 1, t - 1).reshape([-1]);
    let trained = targets.ne(IGNORE_INDEX).nonzero().squeeze_dim(1);
    let count = trained.size()[0];
    let mut total = Tensor::zeros([], (Kind::Float, hidden.device()));
    if count == 0 || b == 0 {
        return (total, 0);
    }
    let states = hidden
        .narrow(1, 0, t - 1)
        .reshape([-1, h])
        .index_select(0, &trained);
    let targets = targets.index_select(0, &trained);
    let mut start = 0;
    while start < count {
        let len = chunk.min(count - start);
        // Logits in the compute dtype (as transformers), log-softmax in f32.
        let logits = states
            .narrow(0, start, len)
            .linear::<Tensor>(lm_head, None)
            .to_kind(Kind::Float);
        let nll = logits.cross_entropy_loss::<Tensor>(
            &targets.narrow(0, start, len),
            None,
            tch::Reduction::Sum,
            IGNORE_INDEX,
            0.0,
        );
        total += nll;
        start += len;
    }
    (total, count)
}

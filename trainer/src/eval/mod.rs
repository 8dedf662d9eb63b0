//! Held-out loss and perplexity, as DESIGN's `loam eval` contract defines them: each row on
//! its own (never packed), truncated to `seq_len`; loss = summed NLL over loss-bearing
//! tokens / their count. In a data-parallel run each rank scores its share of the rows.

use crate::dist::Replicas;
use crate::model::{CausalLm, Positions};
use crate::train::loss::{next_token_nll_sum, DEFAULT_CHUNK};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use loam_data::Example;
use serde::Serialize;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub loss: f64,
    pub perplexity: f64,
    /// Predicted (loss-bearing) tokens.
    pub tokens: i64,
    pub rows: usize,
}

/// Evaluates `examples` one row at a time. `total_rows` (when known) sizes the progress bar.
pub fn evaluate(
    model: &CausalLm,
    examples: impl Iterator<Item = Result<Example>>,
    seq_len: usize,
    total_rows: Option<u64>,
) -> Result<EvalResult> {
    let rows = score_rows(model, examples, seq_len, total_rows, (0, 1))?;
    Ok(summarize(&rows))
}

/// [`evaluate`] with the rows shared out over the ranks of a data-parallel run: rank r
/// scores rows r, r + N, …, the per-row sums are gathered (an all-reduce of a vector that
/// is zero outside each rank's rows, so every value arrives exact), and the total is added
/// up in row order as one process adds it: the same loss, bit for bit, on every rank.
pub fn evaluate_across(
    replicas: &Replicas,
    model: &CausalLm,
    examples: impl Iterator<Item = Result<Example>>,
    seq_len: usize,
) -> Result<EvalResult> {
    let shard = (replicas.world.rank, replicas.world.size);
    let rows = score_rows(model, examples, seq_len, None, shard)?;
    let flat: Vec<f64> = rows.iter().flat_map(|&(nll, n)| [nll, n as f64]).collect();
    let flat = replicas.sum_f64(&flat, "the eval loss all-reduce")?;
    let rows: Vec<(f64, i64)> = flat.chunks(2).map(|c| (c[0], c[1] as i64)).collect();
    Ok(summarize(&rows))
}

/// (summed NLL, predicted tokens) of every row, in order; rows outside `(rank, world)`'s
/// share are (0, 0) and not run through the model.
fn score_rows(
    model: &CausalLm,
    examples: impl Iterator<Item = Result<Example>>,
    seq_len: usize,
    total_rows: Option<u64>,
    (rank, world): (usize, usize),
) -> Result<Vec<(f64, i64)>> {
    let _no_grad = tch::no_grad_guard();
    let bar = progress_bar(total_rows, rank == 0);
    let (mut nll, mut tokens) = (0f64, 0i64);
    let mut rows = Vec::new();
    for (i, example) in examples.enumerate() {
        let example = example?;
        let n = example.input_ids.len().min(seq_len);
        rows.push((0.0, 0));
        bar.inc(1);
        if n < 2 || i % world != rank {
            continue;
        }
        let ids: Vec<i64> = example.input_ids[..n].iter().map(|&id| id as i64).collect();
        let input_ids = Tensor::from_slice(&ids)
            .view([1, n as i64])
            .to_device(model.device);
        let labels = Tensor::from_slice(&example.labels[..n])
            .view([1, n as i64])
            .to_device(model.device);
        let hidden = model.hidden_states(
            &input_ids,
            &Positions::contiguous(1, n as i64, model.device),
        );
        let (sum, count) = next_token_nll_sum(&hidden, &model.lm_head, &labels, DEFAULT_CHUNK);
        let sum = sum.to_kind(Kind::Double).double_value(&[]);
        rows[i] = (sum, count);
        nll += sum;
        tokens += count;
        bar.set_message(format!("loss {:.4}", nll / tokens.max(1) as f64));
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// The loss over scored rows, summed in row order.
fn summarize(rows: &[(f64, i64)]) -> EvalResult {
    let (mut nll, mut tokens) = (0f64, 0i64);
    for &(sum, count) in rows {
        nll += sum;
        tokens += count;
    }
    let loss = if tokens > 0 {
        nll / tokens as f64
    } else {
        f64::NAN
    };
    EvalResult {
        loss,
        perplexity: loss.exp(),
        tokens,
        rows: rows.len(),
    }
}

fn progress_bar(total: Option<u64>, shown: bool) -> ProgressBar {
    let bar = match total {
        _ if !shown => ProgressBar::hidden(),
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template("eval {bar:30} {pos}/{len} rows  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

//! Held-out loss and perplexity, as DESIGN's `loam eval` contract defines them: each row on
//! its own (never packed), truncated to `seq_len`; loss = summed NLL over loss-bearing
//! tokens / their count.

use crate::model::{CausalLm, Positions};
use crate::train::loss::DEFAULT_CHUNK;
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
    let _no_grad = tch::no_grad_guard();
    let bar = progress_bar(total_rows);
    let head = model.output_head();
    let (mut nll, mut tokens, mut rows) = (0f64, 0i64, 0usize);
    for example in examples {
        let example = example?;
        let n = example.input_ids.len().min(seq_len);
        rows += 1;
        bar.inc(1);
        if n < 2 {
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
        let (sum, count) = head.nll_sum(&hidden, &labels, DEFAULT_CHUNK);
        nll += sum.to_kind(Kind::Double).double_value(&[]);
        tokens += count;
        bar.set_message(format!("loss {:.4}", nll / tokens.max(1) as f64));
    }
    bar.finish_and_clear();
    let loss = if tokens > 0 {
        nll / tokens as f64
    } else {
        f64::NAN
    };
    Ok(EvalResult {
        loss,
        perplexity: loss.exp(),
        tokens,
        rows,
    })
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template("eval {bar:30} {pos}/{len} rows  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

//! Held-out loss, perplexity and bits per byte, as DESIGN's `loam eval` contract defines
//! them: each row on its own (never packed), truncated to `seq_len`; loss = summed NLL over
//! loss-bearing tokens / their count; bits per byte = the same summed NLL in bits over the
//! UTF-8 bytes of the text those tokens stand for ([`loam_data::trained_text`]), which
//! compares models whatever their tokenizers. In a data-parallel run each rank scores its
//! share of the rows.
//!
//! Beside it: `generation` (answers to the rows' prompts, scored with `chrf` (chrF++) and
//! `bleu`, sacrebleu's definitions in Rust).

pub mod bleu;
pub mod chrf;
pub mod generation;
mod pystr;

use crate::dist::Replicas;
use crate::model::{CausalLm, Positions};
use crate::train::loss::{next_token_nll_sum, DEFAULT_CHUNK};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use loam_data::encode::Encoder;
use loam_data::{EncodeOptions, Example, Sample, TextSize};
use serde::Serialize;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub loss: f64,
    pub perplexity: f64,
    /// Predicted (loss-bearing) tokens.
    pub tokens: i64,
    pub rows: usize,
    /// Summed NLL in bits / `bytes` (NaN, written `null`, when the text is unknown).
    pub bits_per_byte: f64,
    /// UTF-8 bytes of the trained text of the evaluated rows.
    pub bytes: u64,
    pub bits_per_char: f64,
    /// Unicode code points of the same text.
    pub chars: u64,
    /// With `--generate`: chrF++, BLEU and exact match of the answers.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub generation: Option<generation::Scores>,
}

/// A row to score: its tokens and labels, and the size of the text behind its trained
/// tokens (within the kept tokens when it is cut).
pub struct EvalExample {
    pub example: Example,
    pub text: TextSize,
}

/// Encodes a sample for eval, with the trained text's size for a row cut to `seq_len`.
pub fn encode_for_eval(
    encoder: &Encoder,
    sample: &Sample,
    opts: &EncodeOptions,
    seq_len: usize,
) -> Result<EvalExample> {
    let example = encoder.encode_with(sample, opts)?;
    let kept = (example.input_ids.len() > seq_len).then_some(seq_len);
    let text = encoder.trained_text_size(sample, opts, kept)?;
    Ok(EvalExample { example, text })
}

/// Evaluates `examples` one row at a time, without the text sizes (bits per byte unknown).
pub fn evaluate(
    model: &CausalLm,
    examples: impl Iterator<Item = Result<Example>>,
    seq_len: usize,
    total_rows: Option<u64>,
) -> Result<EvalResult> {
    let rows = examples.map(|e| {
        e.map(|example| EvalExample {
            example,
            text: TextSize::default(),
        })
    });
    evaluate_rows(model, rows, seq_len, total_rows)
}

/// Evaluates rows one at a time. `total_rows` (when known) sizes the progress bar.
pub fn evaluate_rows(
    model: &CausalLm,
    rows: impl Iterator<Item = Result<EvalExample>>,
    seq_len: usize,
    total_rows: Option<u64>,
) -> Result<EvalResult> {
    let scored = score_rows(model, rows, seq_len, total_rows, (0, 1))?;
    Ok(summarize(&scored.per_row, scored.text))
}

/// [`evaluate_rows`] with the rows shared out over the ranks of a data-parallel run: rank r
/// scores rows r, r + N, …, the per-row sums are gathered (an all-reduce of a vector that
/// is zero outside each rank's rows, so every value arrives exact), and the total is added
/// up in row order as one process adds it: the same loss, bit for bit, on every rank. Every
/// rank reads every row, so the text sizes need no reduction.
pub fn evaluate_rows_across(
    replicas: &Replicas,
    model: &CausalLm,
    rows: impl Iterator<Item = Result<EvalExample>>,
    seq_len: usize,
) -> Result<EvalResult> {
    let shard = (replicas.world.rank, replicas.world.size);
    let scored = score_rows(model, rows, seq_len, None, shard)?;
    let flat: Vec<f64> = scored
        .per_row
        .iter()
        .flat_map(|&(nll, n)| [nll, n as f64])
        .collect();
    let flat = replicas.sum_f64(&flat, "the eval loss all-reduce")?;
    let per_row: Vec<(f64, i64)> = flat.chunks(2).map(|c| (c[0], c[1] as i64)).collect();
    Ok(summarize(&per_row, scored.text))
}

/// What [`score_rows`] measured: (summed NLL, predicted tokens) of every row in order, and
/// the size of all rows' trained text.
struct Scored {
    per_row: Vec<(f64, i64)>,
    text: TextSize,
}

/// Rows outside `(rank, world)`'s share are (0, 0) and not run through the model.
fn score_rows(
    model: &CausalLm,
    rows: impl Iterator<Item = Result<EvalExample>>,
    seq_len: usize,
    total_rows: Option<u64>,
    (rank, world): (usize, usize),
) -> Result<Scored> {
    let _no_grad = tch::no_grad_guard();
    let bar = progress_bar(total_rows, rank == 0);
    let head = model.head();
    let (mut nll, mut tokens) = (0f64, 0i64);
    let mut per_row = Vec::new();
    let mut text = TextSize::default();
    for (i, row) in rows.enumerate() {
        let EvalExample {
            example,
            text: size,
        } = row?;
        let n = example.input_ids.len().min(seq_len);
        per_row.push((0.0, 0));
        bar.inc(1);
        if n < 2 {
            continue;
        }
        text.add(size);
        if i % world != rank {
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
        let (sum, predicted) = next_token_nll_sum(&hidden, &head, &labels, DEFAULT_CHUNK);
        let sum = sum.to_kind(Kind::Double).double_value(&[]);
        per_row[i] = (sum, predicted);
        nll += sum;
        tokens += predicted;
        bar.set_message(format!("loss {:.4}", nll / tokens.max(1) as f64));
    }
    bar.finish_and_clear();
    Ok(Scored { per_row, text })
}

/// The loss and bits per byte over scored rows, summed in row order.
fn summarize(per_row: &[(f64, i64)], text: TextSize) -> EvalResult {
    let (mut nll, mut tokens) = (0f64, 0i64);
    for &(sum, count) in per_row {
        nll += sum;
        tokens += count;
    }
    let loss = if tokens > 0 {
        nll / tokens as f64
    } else {
        f64::NAN
    };
    let bits = nll / std::f64::consts::LN_2;
    let per = |n: u64| if n > 0 { bits / n as f64 } else { f64::NAN };
    EvalResult {
        loss,
        perplexity: loss.exp(),
        tokens,
        rows: per_row.len(),
        bits_per_byte: per(text.bytes),
        bytes: text.bytes,
        bits_per_char: per(text.chars),
        chars: text.chars,
        generation: None,
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

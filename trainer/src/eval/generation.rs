//! Generation eval: the model answers each row's prompt part, and the answers are scored
//! against the row's reference with chrF++, BLEU and exact match.
//!
//! The prompt of a chat is every turn before its last assistant turn, rendered with the
//! generation prompt (the reference is that last turn); of a prompt/completion row its prompt
//! (an alpaca row's is the instruction and input in the alpaca prompt; the reference is the
//! completion / output). Prompts are tokenized and answers stopped exactly as `loam generate`
//! does ([`Prompt`]), and generated in left-padded batches ([`generate_batch`]).

use super::bleu::BleuStats;
use super::chrf::ChrfStats;
use crate::generate::{generate_batch, Prompt, Sampling, Stop};
use crate::model::CausalLm;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use loam_data::encode::Encoder;
use loam_data::{Message, Sample};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// How answers are generated.
#[derive(Debug, Clone, Copy)]
pub struct GenerationOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Prompts generated together.
    pub batch_size: usize,
}

/// One row's prompt and reference.
#[derive(Debug, Clone)]
pub struct Task {
    /// What the row asks, for people: the last turn before the answer, or the prompt.
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub stop_ids: Vec<u32>,
    pub reference: String,
}

impl Task {
    /// The prompt part and reference of a sample; text rows have neither.
    pub fn of(encoder: &Encoder, sample: &Sample) -> Result<Task> {
        match sample {
            Sample::Text { .. } => bail!(
                "a text row has no prompt and reference to generate from; --generate needs \
                 chat, alpaca or prompt_completion rows"
            ),
            Sample::Preference { .. } => bail!(
                "a preference pair has two answers, not one reference; --generate needs chat, \
                 alpaca or prompt_completion rows"
            ),
            Sample::PromptCompletion { prompt, completion } => {
                let input = Prompt::Raw(prompt);
                Ok(Task {
                    prompt: prompt.clone(),
                    prompt_ids: input.ids(encoder)?,
                    stop_ids: input.stop_ids(encoder),
                    reference: completion.clone(),
                })
            }
            Sample::Chat { messages } => {
                let Some(last) = messages.iter().rposition(|m| m.role == "assistant") else {
                    bail!("the conversation has no assistant turn to compare an answer with");
                };
                let before: &[Message] = &messages[..last];
                let input = Prompt::Chat(before);
                Ok(Task {
                    prompt: before.last().map(|m| m.content.clone()).unwrap_or_default(),
                    prompt_ids: input.ids(encoder)?,
                    stop_ids: input.stop_ids(encoder),
                    reference: messages[last].content.clone(),
                })
            }
        }
    }
}

/// One answer, scored: a line of `--predictions`.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub prompt: String,
    pub reference: String,
    pub prediction: String,
    /// Sentence-level chrF++ (sacrebleu's `sentence_score`).
    pub chrf: f64,
    pub new_tokens: usize,
    pub stop: Stop,
    /// The answer repeats a word three times in a row ([`loops`]).
    pub loops: bool,
}

/// Corpus scores of a set of answers.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scores {
    /// chrF++ (sacrebleu `CHRF(word_order=2)`), 0–100.
    pub chrf: f64,
    /// sacrebleu's corpus BLEU (13a tokenization, exp smoothing), 0–100.
    pub bleu: f64,
    /// Fraction of answers equal to their reference (both trimmed of surrounding whitespace).
    pub exact_match: f64,
    /// Fraction of answers that loop: a word three times in a row ([`loops`]).
    pub looping: f64,
    /// Fraction of answers that ended at a stop token (end of turn, EOS), not the length
    /// limit.
    pub stopped: f64,
    /// Answers scored.
    pub generated: usize,
}

/// Generates an answer to every task (in batches, longest prompts first), with a progress bar.
pub fn predict(
    lm: &CausalLm,
    encoder: &Encoder,
    tasks: &[Task],
    opts: &GenerationOptions,
) -> Result<Vec<Prediction>> {
    let tokenizer = encoder.tokenizer();
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tasks[i].prompt_ids.len()));
    let bar = progress_bar(tasks.len() as u64);
    let mut answers: Vec<Option<(Vec<u32>, Stop)>> = vec![None; tasks.len()];
    let mut new_tokens = 0usize;
    for batch in order.chunks(opts.batch_size.max(1)) {
        let prompts: Vec<Vec<u32>> = batch.iter().map(|&i| tasks[i].prompt_ids.clone()).collect();
        let stops: Vec<Vec<u32>> = batch.iter().map(|&i| tasks[i].stop_ids.clone()).collect();
        let out = generate_batch(lm, &prompts, opts.max_new_tokens, &stops, opts.sampling)?;
        for (&i, answer) in batch.iter().zip(out) {
            new_tokens += answer.0.len();
            answers[i] = Some(answer);
        }
        bar.inc(batch.len() as u64);
        let secs = bar.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{:.1} tokens/s", new_tokens as f64 / secs));
    }
    bar.finish_and_clear();
    tasks
        .iter()
        .zip(answers)
        .map(|(task, answer)| {
            let (ids, stop) = answer.expect("every task was generated");
            let prediction = tokenizer.decode(&ids, true)?;
            Ok(Prediction {
                chrf: super::chrf::sentence_chrf(&prediction, &task.reference),
                loops: loops(&prediction),
                prompt: task.prompt.clone(),
                reference: task.reference.clone(),
                prediction,
                new_tokens: ids.len(),
                stop,
            })
        })
        .collect()
}

/// Corpus chrF++, BLEU, exact match, looping and stopping rates of predictions.
pub fn score(predictions: &[Prediction]) -> Scores {
    let (mut chrf, mut bleu) = (ChrfStats::default(), BleuStats::default());
    for p in predictions {
        chrf.add(&ChrfStats::segment(&p.prediction, &p.reference));
        bleu.add(&BleuStats::segment(&p.prediction, &p.reference));
    }
    let n = predictions.len();
    let share = |f: &dyn Fn(&Prediction) -> bool| {
        if n > 0 {
            predictions.iter().filter(|p| f(p)).count() as f64 / n as f64
        } else {
            f64::NAN
        }
    };
    Scores {
        chrf: chrf.score(),
        bleu: bleu.score(),
        exact_match: share(&|p| p.prediction.trim() == p.reference.trim()),
        looping: share(&|p| p.loops),
        stopped: share(&|p| p.stop == Stop::StopToken),
        generated: n,
    }
}

/// Whether `text` repeats a word three times in a row (`yn yn yn`): the degenerate loop a
/// small model falls into. Words are split at whitespace and compared without case and
/// surrounding punctuation.
pub fn loops(text: &str) -> bool {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| c.is_ascii_punctuation())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(3).any(|w| w[0] == w[1] && w[1] == w[2])
}

/// Writes one JSON line per prediction to `path` (through a temporary name).
pub fn write_predictions(path: &Path, predictions: &[Prediction]) -> Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let write = || -> Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for p in predictions {
            writeln!(out, "{}", serde_json::to_string(p)?)?;
        }
        out.flush()?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("generate {bar:30} {pos}/{len} rows  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::loops;

    #[test]
    fn a_word_three_times_in_a_row_is_a_loop() {
        for looping in [
            "Yn yn yn yn yn",
            "Gwerth y gan yn yn yn",
            "Agor, agor. AGOR!",
            "a\nb b\tb",
        ] {
            assert!(loops(looping), "{looping:?}");
        }
        for fine in [
            "",
            "Agor ffeil",
            "yn y yn y yn",
            "Cadw a cadw",
            "... ... ...",
            "Methwyd canfod socket",
        ] {
            assert!(!loops(fine), "{fine:?}");
        }
    }
}

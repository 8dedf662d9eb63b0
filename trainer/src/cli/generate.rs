//! `loam generate`: a model (with an adapter, unmerged) answers prompts, streamed to stdout.

use crate::generate::{self, Prompt, Sampling, Stop, TextStream};
use anyhow::{bail, Result};
use clap::Args;
use loam_data::{Message, TrainOn};
use std::io::Write;
use std::time::Instant;

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: super::ModelArgs,
    /// What to answer; repeat for several prompts (each starts a fresh conversation).
    #[arg(long, required = true)]
    prompt: Vec<String>,
    /// Feed the prompt as plain text instead of a user turn of the model's chat template.
    #[arg(long)]
    raw: bool,
    /// A system message before each prompt (chat mode).
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one JSON object per prompt instead of streaming text:
    /// {"prompt", "text", "token_ids", "stop", "tokens_per_s"}.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Answer<'a> {
    prompt: &'a str,
    text: String,
    token_ids: Vec<u32>,
    stop: Stop,
    tokens_per_s: f64,
}

/// How each next token is picked: `loam generate`'s and `loam eval --generate`'s flags.
#[derive(Args)]
pub(crate) struct SamplingArgs {
    /// 0 picks the most likely token every time (greedy, the default); above 0 samples.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Sample among the k most likely tokens only (0: no limit).
    #[arg(long, default_value_t = 0)]
    top_k: i64,
    /// Sample among the most likely tokens holding this much probability (1: no limit).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl SamplingArgs {
    pub(crate) fn sampling(&self) -> Result<Sampling> {
        if !(self.temperature >= 0.0 && self.top_p > 0.0 && self.top_p <= 1.0 && self.top_k >= 0) {
            bail!("--temperature must be ≥ 0, --top-p in (0, 1], --top-k ≥ 0");
        }
        Ok(Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        })
    }
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let sampling = args.sampling.sampling()?;
    let (lm, dir) = args.model.load()?;
    let encoder = args.model.encoder(&dir, TrainOn::All, false)?;
    let tokenizer = encoder.tokenizer();
    let chat = !args.raw;
    if chat && encoder.template().is_none() {
        bail!(
            "{} has no chat template (tokenizer_config.json `chat_template` or chat_template.jinja); \
             pass --chat-template NAME (built-in: {}) or --raw to continue plain text",
            dir.display(),
            loam_data::template::builtin::names()
        );
    }
    let stdout = std::io::stdout();
    for prompt in &args.prompt {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(message("system", system));
        }
        messages.push(message("user", prompt));
        let input = if chat {
            Prompt::Chat(&messages)
        } else {
            Prompt::Raw(prompt)
        };
        let (ids, stop_ids) = (input.ids(&encoder)?, input.stop_ids(&encoder));
        let mut stream = TextStream::new(tokenizer);
        let started = Instant::now();
        let (token_ids, stop) =
            generate::generate(&lm, &ids, args.max_new_tokens, &stop_ids, sampling, |id| {
                if !args.json {
                    let mut out = stdout.lock();
                    write!(out, "{}", stream.push(id)?)?;
                    out.flush()?;
                }
                Ok(())
            })?;
        let seconds = started.elapsed().as_secs_f64();
        if args.json {
            let answer = Answer {
                prompt,
                text: tokenizer.decode(&token_ids, true)?,
                tokens_per_s: token_ids.len() as f64 / seconds.max(1e-9),
                token_ids,
                stop,
            };
            println!("{}", serde_json::to_string(&answer)?);
        } else {
            println!();
            tracing::info!(
                "{} tokens in {seconds:.1}s ({:.1} tokens/s), stopped by {}",
                token_ids.len(),
                token_ids.len() as f64 / seconds.max(1e-9),
                match stop {
                    Stop::StopToken => "a stop token",
                    Stop::Length => "--max-new-tokens",
                }
            );
        }
    }
    Ok(())
}

fn message(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
    }
}

//! Text generation with a KV cache: the prompt goes through the model once, then one token
//! at a time, each picked greedily or sampled (temperature, top-k, top-p, as transformers
//! applies them), until a stop token or the token budget. [`generate`] answers one prompt;
//! [`generate_batch`] several at once, left-padded (see there).

use crate::model::attention::AttentionMask;
use crate::model::{CausalLm, KvCache};
use anyhow::{bail, Result};
use loam_data::encode::Encoder;
use loam_data::{Message, Tokenizer};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// How the next token is picked. `temperature == 0` is greedy (argmax).
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub temperature: f64,
    /// Keep the k most likely tokens (0: all).
    pub top_k: i64,
    /// Keep the smallest set of tokens whose probability reaches p (1.0: all).
    pub top_p: f64,
    /// Seeds the generator sampled tokens are drawn with.
    pub seed: u64,
}

impl Sampling {
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
    };

    /// The next token from f32 logits `[vocab]`; a sampled one is drawn with `rng` (its
    /// own seeded generator, so a seed repeats a generation whatever else runs).
    pub fn pick(&self, logits: &Tensor, rng: &mut ChaCha8Rng) -> i64 {
        if self.temperature <= 0.0 {
            return logits.argmax(0, false).int64_value(&[]);
        }
        let mut scores = logits / self.temperature;
        let vocab = scores.size()[0];
        if self.top_k > 0 && self.top_k < vocab {
            let kth = scores.topk(self.top_k, 0, true, true).0.get(self.top_k - 1);
            scores = scores.masked_fill(&scores.lt_tensor(&kth), f64::NEG_INFINITY);
        }
        if self.top_p < 1.0 {
            // Drop the tail of the ascending sort whose mass stays within 1 − p: what is
            // left is the smallest head reaching p (always at least the top token).
            let (sorted, order) = scores.sort(0, false);
            let tail = sorted
                .softmax(0, Kind::Float)
                .cumsum(0, Kind::Float)
                .le(1.0 - self.top_p);
            let _ = tail.get(vocab - 1).fill_(0);
            let remove = tail.scatter(0, &order, &tail);
            scores = scores.masked_fill(&remove, f64::NEG_INFINITY);
        }
        let probs: Vec<f32> = scores
            .softmax(0, Kind::Float)
            .to_device(tch::Device::Cpu)
            .try_into()
            .expect("f32 probabilities");
        let mut left: f32 = rng.gen::<f32>() * probs.iter().sum::<f32>();
        for (id, p) in probs.iter().enumerate() {
            left -= p;
            if left < 0.0 && *p > 0.0 {
                return id as i64;
            }
        }
        // rounding left a sliver past the end: the last token that can be drawn
        probs.iter().rposition(|&p| p > 0.0).unwrap_or(0) as i64
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// A stop token (EOS or the template's end of turn); it is not part of the output.
    StopToken,
    /// `max_new_tokens` reached.
    Length,
}

/// Generates after `prompt`; `on_token` sees each new token as it is picked.
pub fn generate(
    lm: &CausalLm,
    prompt: &[u32],
    max_new_tokens: usize,
    stop_ids: &[u32],
    sampling: Sampling,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<(Vec<u32>, Stop)> {
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(sampling.seed);
    let _guard = tch::no_grad_guard();
    let mut cache = KvCache::new(lm);
    let mut seen: Vec<i64> = prompt.iter().map(|&id| id as i64).collect();
    let mut input = seen.clone();
    let mut out = Vec::new();
    while out.len() < max_new_tokens {
        if lm.needs_recompute(cache.len, input.len() as i64) {
            cache = KvCache::new(lm);
            input = seen.clone();
        }
        let ids = Tensor::from_slice(&input).to_device(lm.device).unsqueeze(0);
        let next = sampling.pick(&lm.next_token_logits(&ids, &mut cache)?, &mut rng) as u32;
        if stop_ids.contains(&next) {
            return Ok((out, Stop::StopToken));
        }
        out.push(next);
        on_token(next)?;
        seen.push(next as i64);
        input = vec![next as i64];
    }
    Ok((out, Stop::Length))
}

/// What a model is asked to continue.
pub enum Prompt<'a> {
    /// Turns of a conversation, rendered with the chat template and its generation prompt.
    Chat(&'a [Message]),
    /// Plain text, tokenized as `tokenizer(text)` (with the special tokens it adds).
    Raw(&'a str),
}

impl Prompt<'_> {
    /// The prompt's token ids as the model reads them.
    pub fn ids(&self, encoder: &Encoder) -> Result<Vec<u32>> {
        let tokenizer = encoder.tokenizer();
        match self {
            Prompt::Chat(messages) => {
                let Some(template) = encoder.template() else {
                    bail!("the model has no chat template (tokenizer_config.json `chat_template` or chat_template.jinja)");
                };
                // the template writes BOS itself where the model wants one
                tokenizer.encode(&template.render(messages, true)?, false)
            }
            Prompt::Raw(text) => tokenizer.encode(text, true),
        }
    }

    /// Where the answer ends: the EOS the model generates with, and for a chat the
    /// template's end-of-turn token.
    pub fn stop_ids(&self, encoder: &Encoder) -> Vec<u32> {
        let mut stop = encoder.tokenizer().generation_eos_ids();
        if matches!(self, Prompt::Chat(_)) {
            stop.extend(encoder.end_of_turn_id());
        }
        stop
    }
}

/// Generates after each prompt of a batch, the prompts left-padded to one length: a pad
/// slot is no key for any query (and attends only to itself, so nothing is undefined), and
/// positions count each row's own tokens. Rows leave the batch as they finish. Each row
/// samples from its own generator seeded with `sampling.seed`, as [`generate`] does, so a
/// row's answer is the one [`generate`] gives to its prompt up to float rounding (the
/// batched matrix products sum in another order); the tests check greedy answers are equal.
pub fn generate_batch(
    lm: &CausalLm,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    stop_ids: &[Vec<u32>],
    sampling: Sampling,
) -> Result<Vec<(Vec<u32>, Stop)>> {
    let mut results: Vec<(Vec<u32>, Stop)> = vec![(Vec::new(), Stop::Length); prompts.len()];
    if prompts.is_empty() || max_new_tokens == 0 {
        return Ok(results);
    }
    if prompts.iter().any(|p| p.is_empty()) {
        bail!("a prompt encodes to no tokens: there is nothing to continue");
    }
    let _guard = tch::no_grad_guard();
    let device = lm.device;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let (mut ids, mut valid, mut positions) = (Vec::new(), Vec::new(), Vec::new());
    for p in prompts {
        let pad = longest as usize - p.len();
        ids.extend(std::iter::repeat_n(0i64, pad).chain(p.iter().map(|&t| t as i64)));
        valid.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())));
        positions.extend((0..longest).map(|s| (s - pad as i64).max(0)));
    }
    let rows = prompts.len() as i64;
    let shape = [rows, longest];
    let mut valid = Tensor::from_slice(&valid).view(shape).to_device(device);
    let positions = Tensor::from_slice(&positions).view(shape).to_device(device);
    let ids = Tensor::from_slice(&ids).view(shape).to_device(device);

    let mut cache = KvCache::new(lm);
    let mut logits = lm.forward_cached(
        &ids,
        &positions,
        |window| prompt_mask(&valid, window),
        &mut cache,
    );
    // Batch row → prompt index, the next position of each live row, and their generators.
    let mut live: Vec<usize> = (0..prompts.len()).collect();
    let mut next_pos: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
    let seed = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(sampling.seed);
    let mut rngs: Vec<ChaCha8Rng> = vec![seed; prompts.len()];
    loop {
        let picks: Vec<i64> = if sampling.temperature <= 0.0 {
            Vec::<i64>::try_from(logits.argmax(1, false).to_device(tch::Device::Cpu))?
        } else {
            (0..live.len())
                .map(|r| sampling.pick(&logits.get(r as i64), &mut rngs[live[r]]))
                .collect()
        };
        let mut keep = Vec::new();
        for (r, &next) in picks.iter().enumerate() {
            let i = live[r];
            let next = next as u32;
            if stop_ids[i].contains(&next) {
                results[i].1 = Stop::StopToken;
                continue;
            }
            results[i].0.push(next);
            if results[i].0.len() < max_new_tokens {
                keep.push(r as i64);
            }
        }
        if keep.is_empty() {
            return Ok(results);
        }
        if keep.len() < live.len() {
            let index = Tensor::from_slice(&keep).to_device(device);
            cache.keep_rows(&index);
            valid = valid.index_select(0, &index);
            live = keep.iter().map(|&r| live[r as usize]).collect();
            next_pos = keep.iter().map(|&r| next_pos[r as usize]).collect();
        }
        let a = live.len() as i64;
        let step_ids: Vec<i64> = live
            .iter()
            .map(|&i| *results[i].0.last().unwrap() as i64)
            .collect();
        let step_ids = Tensor::from_slice(&step_ids).view([a, 1]).to_device(device);
        let step_pos = Tensor::from_slice(&next_pos).view([a, 1]).to_device(device);
        valid = Tensor::cat(&[valid, Tensor::ones([a, 1], (tch::Kind::Bool, device))], 1);
        // A sliding layer's cache holds only its window's last keys: one mask per window.
        let width = valid.size()[1];
        let keys_valid: Vec<(Option<i64>, Tensor)> = lm
            .windows()
            .into_iter()
            .map(|window| {
                let keys = cache.keys_after(window, 1);
                (
                    window,
                    valid
                        .narrow(1, width - keys, keys)
                        .unsqueeze(1)
                        .unsqueeze(1),
                )
            })
            .collect();
        let step_mask = |window| {
            let (_, keys) = keys_valid
                .iter()
                .find(|(w, _)| *w == window)
                .expect("every window");
            AttentionMask::Fused(Some(keys.shallow_clone()))
        };
        logits = lm.forward_cached(&step_ids, &step_pos, step_mask, &mut cache);
        for p in &mut next_pos {
            *p += 1;
        }
    }
}

/// The prompt pass's mask `[B, 1, T, T]`: causal, real tokens only as keys (a pad slot
/// sees itself), within the sliding window.
fn prompt_mask(valid: &Tensor, window: Option<i64>) -> AttentionMask {
    let t = valid.size()[1];
    let device = valid.device();
    let i = Tensor::arange(t, (tch::Kind::Int64, device)).unsqueeze(1);
    let j = Tensor::arange(t, (tch::Kind::Int64, device)).unsqueeze(0);
    let mut allowed = j.less_equal_tensor(&i);
    if let Some(w) = window.filter(|&w| w < t) {
        allowed = allowed.logical_and(&(&i - &j).less(w));
    }
    let keys = valid.unsqueeze(1).logical_or(&i.eq_tensor(&j).unsqueeze(0));
    AttentionMask::Fused(Some(allowed.unsqueeze(0).logical_and(&keys).unsqueeze(1)))
}

/// Turns a growing list of token ids into text pieces to print: only text that is final,
/// never half a UTF-8 character that the next token completes.
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    printed: usize,
}

impl<'a> TextStream<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> TextStream<'a> {
        TextStream {
            tokenizer,
            ids: Vec::new(),
            printed: 0,
        }
    }

    /// The new text `id` makes final ("" while a character is incomplete).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.printed {
            return Ok(String::new());
        }
        let piece = text[self.printed..].to_string();
        self.printed = text.len();
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Tensor {
        Tensor::from_slice(&[1.0f32, 3.0, 2.0, 0.5])
    }

    fn rng(seed: u64) -> ChaCha8Rng {
        rand::SeedableRng::seed_from_u64(seed)
    }

    #[test]
    fn greedy_takes_the_argmax() {
        assert_eq!(Sampling::GREEDY.pick(&logits(), &mut rng(0)), 1);
    }

    #[test]
    fn top_k_1_and_a_tiny_top_p_are_greedy() {
        let mut rng = rng(0);
        for sampling in [
            Sampling {
                temperature: 1.0,
                top_k: 1,
                top_p: 1.0,
                seed: 0,
            },
            Sampling {
                temperature: 1.0,
                top_k: 0,
                top_p: 0.01,
                seed: 0,
            },
        ] {
            for _ in 0..20 {
                assert_eq!(sampling.pick(&logits(), &mut rng), 1, "{sampling:?}");
            }
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_head_reaching_p() {
        // probabilities ≈ [0.086, 0.631, 0.232, 0.052]: p = 0.8 keeps tokens 1 and 2
        let sampling = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.8,
            seed: 0,
        };
        let mut rng = rng(1);
        let picks: std::collections::BTreeSet<i64> = (0..200)
            .map(|_| sampling.pick(&logits(), &mut rng))
            .collect();
        assert_eq!(picks, [1, 2].into());
    }

    #[test]
    fn sampling_with_a_seed_repeats() {
        let sampling = Sampling {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        };
        let draw = || {
            let mut rng = rng(7);
            (0..30)
                .map(|_| sampling.pick(&logits(), &mut rng))
                .collect::<Vec<_>>()
        };
        let first = draw();
        assert_eq!(first, draw());
        assert!(
            first.iter().any(|&t| t != 1),
            "temperature 1.5 never left the argmax"
        );
    }
}

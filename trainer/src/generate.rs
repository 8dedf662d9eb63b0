//! Text generation with a KV cache: the prompt goes through the model once, then one token
//! at a time, each picked greedily or sampled (temperature, top-k, top-p, as transformers
//! applies them), until a stop token or the token budget.

use crate::model::{CausalLm, KvCache};
use anyhow::Result;
use loam_data::Tokenizer;
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

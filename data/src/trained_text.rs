//! How much text a row's loss-bearing tokens stand for: the denominator of bits per byte
//! (and per character), which compares models whatever their tokenizers.
//!
//! The trained text of a sample is a text row's whole text; a prompt/completion's (and an
//! alpaca row's) completion, with the prompt too under `train_on = "all"`; a chat's trained
//! messages' contents: every assistant turn (`assistant`, `completion`), the last one
//! (`last_assistant`), or every message (`all`). Template markup (role headers, end-of-turn
//! tokens) is not text: its tokens carry loss, but no bytes.
//!
//! A row cut short by the sequence length counts only the trained text inside the tokens it
//! keeps, found from the tokens' offsets in the text the model reads.

use std::ops::Range;

use anyhow::Result;

use crate::encode::{assistant_spans, Encoder, SpanMethod};
use crate::stream::EncodeOptions;
use crate::{Message, Sample, TrainOn};

/// UTF-8 bytes and Unicode code points (Python's `len(s.encode())` and `len(s)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TextSize {
    pub bytes: u64,
    pub chars: u64,
}

impl TextSize {
    pub fn of(text: &str) -> TextSize {
        TextSize {
            bytes: text.len() as u64,
            chars: text.chars().count() as u64,
        }
    }

    pub fn add(&mut self, other: TextSize) {
        self.bytes += other.bytes;
        self.chars += other.chars;
    }
}

/// The pieces of a sample's text whose tokens are trained under `train_on` (see the module).
pub fn trained_texts(sample: &Sample, train_on: TrainOn) -> Vec<&str> {
    match sample {
        Sample::Text { text } => vec![text],
        Sample::PromptCompletion { prompt, completion } => match train_on {
            TrainOn::All => vec![prompt, completion],
            _ => vec![completion],
        },
        Sample::Chat { messages } => messages
            .iter()
            .zip(trained_messages(messages, train_on))
            .filter(|(_, trained)| *trained)
            .map(|(m, _)| m.content.as_str())
            .collect(),
        // A pair trains on its two completions: the chosen one is the text it teaches.
        Sample::Preference { chosen, .. } => chosen.texts(),
    }
}

/// Whether each message of a chat is trained under `train_on`.
fn trained_messages(messages: &[Message], train_on: TrainOn) -> Vec<bool> {
    let last_assistant = messages.iter().rposition(|m| m.role == "assistant");
    let trained = |(i, m): (usize, &Message)| match train_on {
        TrainOn::All => true,
        TrainOn::Assistant | TrainOn::Completion => m.role == "assistant",
        TrainOn::LastAssistant => Some(i) == last_assistant,
    };
    messages.iter().enumerate().map(trained).collect()
}

impl Encoder {
    /// The size of the text behind the trained tokens of `sample` as [`Encoder::encode_with`]
    /// encodes it; `kept_tokens` when the row is cut to its first `kept_tokens` tokens.
    pub fn trained_text_size(
        &self,
        sample: &Sample,
        opts: &EncodeOptions,
        kept_tokens: Option<usize>,
    ) -> Result<TextSize> {
        let Some(kept) = kept_tokens else {
            let mut size = TextSize::default();
            for text in trained_texts(sample, opts.train_on) {
                size.add(TextSize::of(text));
            }
            return Ok(size);
        };
        let (text, trained) = self.trained_ranges(sample, opts.train_on)?;
        // The rendered text is tokenized without added tokens for chats, with them otherwise;
        // either way added tokens have empty offsets and add nothing to the cut.
        let add_special = !matches!(sample, Sample::Chat { .. });
        let offsets = self
            .tokenizer()
            .encode_with_offsets(&text, add_special)?
            .offsets;
        let cut = offsets
            .iter()
            .take(kept)
            .map(|&(_, end)| end)
            .max()
            .unwrap_or(0);
        let mut size = TextSize::default();
        for range in trained {
            let (start, end) = (range.start.min(cut), range.end.min(cut));
            size.add(TextSize::of(&text[start..end]));
        }
        Ok(size)
    }

    /// The text the tokenizer reads for `sample`, and the byte ranges in it of the trained text.
    fn trained_ranges(
        &self,
        sample: &Sample,
        train_on: TrainOn,
    ) -> Result<(String, Vec<Range<usize>>)> {
        Ok(match sample {
            Sample::Text { text } => (text.clone(), std::iter::once(0..text.len()).collect()),
            Sample::PromptCompletion { prompt, completion } => {
                let start = if train_on == TrainOn::All {
                    0
                } else {
                    prompt.len()
                };
                let text = format!("{prompt}{completion}");
                let end = text.len();
                (text, std::iter::once(start..end).collect())
            }
            Sample::Chat { messages } => {
                let template = self
                    .template()
                    .ok_or_else(|| anyhow::anyhow!("the model has no chat template"))?;
                let (text, spans) = match train_on {
                    // as `encode_chat` renders it: no turn needs locating
                    TrainOn::All => (template.render(messages, false)?, Vec::new()),
                    _ => assistant_spans(template, messages, SpanMethod::Auto)?,
                };
                let ranges = content_ranges(&text, &spans, messages, train_on);
                (text, ranges)
            }
            Sample::Preference { .. } => anyhow::bail!(
                "a preference pair is two sequences, not one trained text; it is scored by \
                 training with train.objective = \"dpo\" or \"orpo\""
            ),
        })
    }
}

/// Where each trained message's content sits in the rendered chat: searched for in order,
/// each after the previous message's (an assistant turn's inside its span). A content the
/// template rewrote (not found verbatim) is placed where the search stands, so it counts
/// whole when the cut is past that point.
fn content_ranges(
    rendered: &str,
    assistant_spans: &[Range<usize>],
    messages: &[Message],
    train_on: TrainOn,
) -> Vec<Range<usize>> {
    let trained = trained_messages(messages, train_on);
    let mut spans = assistant_spans.iter();
    let mut ranges = Vec::new();
    let mut cursor = 0;
    for (m, trained) in messages.iter().zip(trained) {
        if m.role == "assistant" {
            if let Some(span) = spans.next() {
                cursor = cursor.max(span.start).min(rendered.len());
            }
        }
        let found = rendered[cursor..]
            .find(m.content.as_str())
            .map(|i| cursor + i);
        let range = match found {
            Some(start) => start..start + m.content.len(),
            None => cursor..cursor,
        };
        if trained {
            ranges.push(match found {
                Some(_) => range.clone(),
                // Counted whole if the cut passes where it would start.
                None => cursor..cursor + m.content.len(),
            });
        }
        cursor = range.end.min(rendered.len());
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::fixtures::tokenizer;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    fn opts(train_on: TrainOn) -> EncodeOptions {
        EncodeOptions {
            add_eos: true,
            train_on,
        }
    }

    #[test]
    fn trained_text_is_the_text_completion_or_assistant_contents() {
        let text = Sample::Text {
            text: "Bore da! 你好 🙂".into(),
        };
        assert_eq!(
            trained_texts(&text, TrainOn::Assistant),
            ["Bore da! 你好 🙂"]
        );
        let pc = Sample::PromptCompletion {
            prompt: "Q: ".into(),
            completion: "ateb".into(),
        };
        assert_eq!(trained_texts(&pc, TrainOn::Completion), ["ateb"]);
        assert_eq!(trained_texts(&pc, TrainOn::All), ["Q: ", "ateb"]);
        let chat = Sample::Chat {
            messages: vec![
                msg("user", "Hi"),
                msg("assistant", "Shwmae"),
                msg("user", "Thanks"),
                msg("assistant", "Croeso 🙂"),
            ],
        };
        assert_eq!(
            trained_texts(&chat, TrainOn::Assistant),
            ["Shwmae", "Croeso 🙂"]
        );
        assert_eq!(trained_texts(&chat, TrainOn::LastAssistant), ["Croeso 🙂"]);
        assert_eq!(trained_texts(&chat, TrainOn::All).len(), 4);
        assert_eq!(
            TextSize::of("Croeso 🙂"),
            TextSize {
                bytes: 11,
                chars: 8
            }
        );
    }

    #[test]
    fn a_cut_row_counts_the_trained_text_inside_the_kept_tokens() {
        let enc = Encoder::new(tokenizer("chatml"), None, TrainOn::Assistant, true).unwrap();
        let tok = enc.tokenizer();
        let text = "Mae hen wlad fy nhadau yn annwyl i mi";
        let sample = Sample::Text { text: text.into() };
        let o = opts(TrainOn::All);
        let whole = enc.trained_text_size(&sample, &o, None).unwrap();
        assert_eq!(whole, TextSize::of(text));
        let encoded = tok.encode_with_offsets(text, true).unwrap();
        let kept = 4;
        let cut = encoded.offsets[kept - 1].1;
        assert!(cut < text.len());
        assert_eq!(
            enc.trained_text_size(&sample, &o, Some(kept)).unwrap(),
            TextSize::of(&text[..cut])
        );
        // Keeping every text token (only the EOS cut) keeps all the text.
        let all = enc
            .trained_text_size(&sample, &o, Some(encoded.ids.len()))
            .unwrap();
        assert_eq!(all, whole);

        // A chat cut inside its second assistant turn: the first whole, a prefix of the second.
        let chat = Sample::Chat {
            messages: vec![
                msg("user", "Hi"),
                msg("assistant", "Shwmae"),
                msg("user", "Thanks"),
                msg("assistant", "Croeso mawr iawn i chi"),
            ],
        };
        let a = opts(TrainOn::Assistant);
        let example = enc.encode_with(&chat, &a).unwrap();
        assert_eq!(
            enc.trained_text_size(&chat, &a, None).unwrap(),
            TextSize::of("ShwmaeCroeso mawr iawn i chi")
        );
        let cut = enc
            .trained_text_size(&chat, &a, Some(example.input_ids.len() - 4))
            .unwrap();
        assert!(
            cut.bytes > 6 && cut.bytes < 28,
            "the cut keeps part of the last turn: {cut:?}"
        );
        let full = enc
            .trained_text_size(&chat, &a, Some(example.input_ids.len()))
            .unwrap();
        assert_eq!(full.bytes, 28);
    }
}

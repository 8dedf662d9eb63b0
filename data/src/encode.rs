//! [`Sample`] → [`Example`]: token ids and the labels that say which tokens are trained.
//!
//! Chats are rendered with the chat template and tokenized without added special tokens, as
//! `apply_chat_template(tokenize=True)` does (the template writes its own BOS). Which tokens
//! are assistant text is found in the rendered string, then mapped to tokens by their offsets:
//! from the template's `{% generation %}` blocks when it has them (transformers'
//! `return_assistant_tokens_mask`), otherwise by rendering each prefix of the conversation.
//!
//! A preference pair becomes one [`Example`] holding both sequences (`preference`).

use std::ops::Range;
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::config::DataConfig;
use crate::stream::{Encode, EncodeOptions};
use crate::template::ChatTemplate;
use crate::tokenize::Tokenizer;
use crate::{Example, Message, Sample, TrainOn, IGNORE_INDEX};

/// Turns samples into token ids and labels: a tokenizer, a chat template and default
/// [`EncodeOptions`] ([`Encoder::encode_with`] takes another source's options).
#[derive(Debug)]
pub struct Encoder {
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    /// Why the model's own template could not be compiled, reported on the first chat.
    template_error: Option<String>,
    opts: EncodeOptions,
    end_of_turn: Option<u32>,
    warnings: Vec<String>,
}

/// How assistant spans of a chat are located in its rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanMethod {
    /// The template's `{% generation %}` blocks when it has them, else prefix rendering.
    Auto,
    /// Render `messages[..i]` with the generation prompt and `messages[..=i]`; the difference
    /// is turn i.
    PrefixRendering,
    /// Only the `{% generation %}` blocks (an error when the template has none).
    GenerationMarkers,
}

impl Encoder {
    /// `template`: a recipe's template, or `None` for the model's own (needed only for chats).
    /// `add_eos` applies to text and prompt/completion samples; chats end as the template
    /// ends them.
    pub fn new(
        tokenizer: impl Into<Arc<Tokenizer>>,
        template: Option<ChatTemplate>,
        train_on: TrainOn,
        add_eos: bool,
    ) -> Result<Encoder> {
        let tokenizer = tokenizer.into();
        let mut template_error = None;
        let supplied = template.is_some();
        let template = match template {
            Some(t) => Some(t),
            // The model's own template matters only for chats: a broken one fails chat rows,
            // not text or prompt/completion rows.
            None => match ChatTemplate::from_tokenizer(&tokenizer) {
                Ok(t) => t,
                Err(e) => {
                    template_error = Some(format!("{e:#}"));
                    None
                }
            },
        };
        let mut encoder = Encoder {
            tokenizer,
            template,
            template_error,
            opts: EncodeOptions { add_eos, train_on },
            end_of_turn: None,
            warnings: Vec::new(),
        };
        let (end_of_turn, warning) = encoder.check_end_of_turn(supplied);
        encoder.end_of_turn = end_of_turn;
        if let Some(w) = warning {
            tracing::warn!("{w}");
            encoder.warnings.push(w);
        }
        Ok(encoder)
    }

    /// The encoder a recipe's `[data]` asks for: its `train_on`, and its `chat_template`
    /// (a built-in template's name, a `.jinja` file or inline Jinja) in place of the model's
    /// own when set.
    pub fn for_data_config(tokenizer: Tokenizer, cfg: &DataConfig) -> Result<Encoder> {
        let template = cfg
            .chat_template
            .as_deref()
            .map(|value| ChatTemplate::from_setting("data.chat_template", value, &tokenizer))
            .transpose()?;
        Encoder::new(tokenizer, template, cfg.train_on, true)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// The options [`Encoder::encode`] uses.
    pub fn options(&self) -> EncodeOptions {
        self.opts
    }

    /// The token the template closes an assistant turn with (`<|im_end|>`, `<|eot_id|>`,
    /// `</s>`), when it closes it with an added token.
    pub fn end_of_turn_id(&self) -> Option<u32> {
        self.end_of_turn
    }

    /// Problems with the template found at construction (already logged with `tracing`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Token ids and labels of one sample.
    pub fn encode(&self, sample: &Sample) -> Result<Example> {
        self.encode_with(sample, &self.opts)
    }

    /// Token ids and labels of one sample, with another source's options.
    pub fn encode_with(&self, sample: &Sample, opts: &EncodeOptions) -> Result<Example> {
        match sample {
            Sample::Text { text } => {
                let input_ids = self.tokenizer.try_encode_text(text, opts.add_eos)?;
                let labels = input_ids.iter().map(|&id| i64::from(id)).collect();
                Ok(Example {
                    input_ids,
                    labels,
                    rejected_start: None,
                })
            }
            Sample::PromptCompletion { prompt, completion } => {
                self.encode_prompt_completion(prompt, completion, opts)
            }
            Sample::Chat { messages } => {
                self.encode_chat(messages, opts.train_on, SpanMethod::Auto)
            }
            Sample::Preference {
                prompt,
                chosen,
                rejected,
            } => crate::preference::encode(self, [prompt, chosen, rejected], opts),
        }
    }

    /// A chat, with the assistant spans found by `method` (tests compare the methods).
    pub fn encode_chat(
        &self,
        messages: &[Message],
        train_on: TrainOn,
        method: SpanMethod,
    ) -> Result<Example> {
        let template = self.require_template()?;
        if messages.is_empty() {
            bail!("the conversation has no messages");
        }
        let (text, spans) = match train_on {
            TrainOn::All => (template.render(messages, false)?, None),
            TrainOn::Assistant | TrainOn::Completion | TrainOn::LastAssistant => {
                let (text, mut spans) = assistant_spans(template, messages, method)?;
                if train_on == TrainOn::LastAssistant && spans.len() > 1 {
                    spans.drain(..spans.len() - 1);
                }
                (text, Some(spans))
            }
        };
        let enc = self.tokenizer.encode_with_offsets(&text, false)?;
        let labels = match spans {
            None => enc.ids.iter().map(|&id| i64::from(id)).collect(),
            Some(spans) => labels_from_spans(&enc.ids, &enc.offsets, &spans),
        };
        let input_ids = enc.ids;
        Ok(Example {
            input_ids,
            labels,
            rejected_start: None,
        })
    }

    fn encode_prompt_completion(
        &self,
        prompt: &str,
        completion: &str,
        opts: &EncodeOptions,
    ) -> Result<Example> {
        let text = format!("{prompt}{completion}");
        let enc = self
            .tokenizer
            .inner()
            .encode(text.as_str(), true)
            .map_err(|e| anyhow::anyhow!("the tokenizer cannot encode this text: {e}"))?;
        let input_ids = enc.get_ids().to_vec();
        let offsets = enc.get_offsets();
        let added = enc.get_special_tokens_mask();
        // Tokens the post-processor added (BOS, EOS) have no text: those before the first
        // text token belong to the prompt, those after it to the completion.
        let first_text = added
            .iter()
            .position(|&a| a == 0)
            .unwrap_or(input_ids.len());
        let mut trained: Vec<bool> = (0..input_ids.len())
            .map(|i| {
                if added[i] == 1 {
                    i > first_text
                } else {
                    offsets[i].1 > prompt.len()
                }
            })
            .collect();
        let mut input_ids = input_ids;
        if opts.add_eos {
            if let Some(eos) = self.tokenizer.eos_token_id() {
                if input_ids.last() != Some(&eos) {
                    input_ids.push(eos);
                    trained.push(true);
                }
            }
        }
        let all = opts.train_on == TrainOn::All;
        let labels = input_ids
            .iter()
            .zip(&trained)
            .map(|(&id, &t)| {
                if all || t {
                    i64::from(id)
                } else {
                    IGNORE_INDEX
                }
            })
            .collect();
        Ok(Example {
            input_ids,
            labels,
            rejected_start: None,
        })
    }

    /// The chat template, or why there is none (for a chat row's error).
    pub(crate) fn require_template(&self) -> Result<&ChatTemplate> {
        match &self.template {
            Some(t) => Ok(t),
            None if self.template_error.is_some() => {
                bail!(
                    "{}; set `chat_template` in the recipe's [data] section to a working template",
                    self.template_error.as_deref().unwrap_or_default()
                )
            }
            None => {
                let dir = self
                    .tokenizer
                    .dir()
                    .map(|d| format!("{}: ", d.display()))
                    .unwrap_or_default();
                bail!(
                    "{dir}the model has no chat template (no chat_template in \
                     tokenizer_config.json, no chat_template.jinja): set `chat_template` in the \
                     recipe's [data] section (or --chat-template) to a built-in one ({}), a \
                     .jinja file or Jinja, or use the `text` or `prompt_completion` format",
                    crate::template::builtin::names()
                )
            }
        }
    }

    /// Finds the end-of-turn token on a probe conversation, and what is wrong with it: a
    /// template whose turns end with a token generation does not stop on makes a tuned model
    /// that never stops.
    ///
    /// A `supplied` template (a recipe's, a flag's) is not the model's: loam's generation
    /// stops on its end of turn anyway, and `loam merge` / `loam gguf import` write that stop
    /// into the directories they make, so a missing stop is no warning then.
    fn check_end_of_turn(&self, supplied: bool) -> (Option<u32>, Option<String>) {
        let Some(template) = self.template.as_ref() else {
            return (None, None);
        };
        let probe = [
            Message {
                role: "user".into(),
                content: "Hi".into(),
            },
            Message {
                role: "assistant".into(),
                content: "Hello".into(),
            },
        ];
        let (text, spans) = match assistant_spans(template, &probe, SpanMethod::Auto) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!("cannot probe the chat template's end-of-turn token: {e:#}");
                return (None, None);
            }
        };
        let Some(span) = spans.last() else {
            return (None, None);
        };
        let Ok(enc) = self.tokenizer.encode_with_offsets(&text, false) else {
            return (None, None);
        };
        let Some(last) = enc
            .ids
            .iter()
            .zip(&enc.offsets)
            .rev()
            .find(|(_, &(s, e))| s < span.end && e > span.start)
            .map(|(&id, _)| id)
        else {
            return (None, None);
        };
        let name = |id: u32| {
            self.tokenizer
                .id_to_token(id)
                .unwrap_or_else(|| id.to_string())
        };
        if !self.tokenizer.is_special_id(last) {
            let w = format!(
                "chat template {} ends assistant turns without a special token (last trained \
                 token: {:?}); a tuned model may not learn to stop",
                template.origin(),
                name(last)
            );
            return (None, Some(w));
        }
        let stops = self.tokenizer.generation_eos_ids();
        if stops.contains(&last) {
            return (Some(last), None);
        }
        if supplied {
            tracing::debug!(
                "{} ends turns with {:?} (id {last}): generation stops on it too",
                template.origin(),
                name(last)
            );
            return (Some(last), None);
        }
        let stop_names: Vec<String> = stops.iter().map(|&id| name(id)).collect();
        let w = format!(
            "chat template {} ends assistant turns with {:?} (id {last}) but generation stops \
             on {stop_names:?} (generation_config.json eos_token_id, else the tokenizer's \
             eos_token): a tuned model will not stop; add {last} to eos_token_id in the model's \
             generation_config.json",
            template.origin(),
            name(last),
        );
        (Some(last), Some(w))
    }
}

/// The stream encodes each source's rows with that source's options.
impl Encode for Encoder {
    fn encode(&self, sample: &Sample, opts: &EncodeOptions) -> Result<Example> {
        self.encode_with(sample, opts)
    }
}

/// The rendered conversation and the byte ranges of its assistant turns (content and the
/// end-of-turn marker).
///
/// By prefix rendering, turn i lies in `render(messages[..=i])` after `render(messages[..i])`
/// and after the generation prompt (what `add_generation_prompt` adds; searched for, since a
/// template may put a default system prompt before the first turn), and ends where that
/// rendering ends, less the whitespace the template puts between turns. What a template
/// writes after a finished conversation in place of the generation prompt (Phi-3's EOS) is
/// taken off each rendering first: it belongs to no turn.
pub fn assistant_spans(
    template: &ChatTemplate,
    messages: &[Message],
    method: SpanMethod,
) -> Result<(String, Vec<Range<usize>>)> {
    let use_markers = match method {
        SpanMethod::Auto => template.has_generation_markers(),
        SpanMethod::GenerationMarkers => {
            if !template.has_generation_markers() {
                bail!(
                    "chat template {} has no {{% generation %}} blocks",
                    template.origin()
                );
            }
            true
        }
        SpanMethod::PrefixRendering => false,
    };
    if use_markers {
        return template.render_with_generation_spans(messages, false);
    }
    let conversation = template.conversation(messages)?;
    let render = |len: usize, add_generation_prompt: bool| {
        template
            .render_prefix(&conversation, len, add_generation_prompt)
            .map(|(text, _)| text)
    };
    let full = render(messages.len(), false)?;
    let ending = match render(messages.len(), true) {
        Ok(with_prompt) => full[template.divergence(&full, &with_prompt)..].to_string(),
        Err(_) => String::new(),
    };
    // A template whose generation prompt changes more than the end renders no such ending:
    // where the turns cannot be found without it, they are looked for with it left on.
    let spans = match locate_turns(template, messages, &render, &full, &ending) {
        Err(_) if !ending.is_empty() => locate_turns(template, messages, &render, &full, ""),
        found => found,
    }?;
    Ok((full, spans))
}

/// The spans of [`assistant_spans`] by prefix rendering, `ending` taken off each rendering.
fn locate_turns(
    template: &ChatTemplate,
    messages: &[Message],
    render: &dyn Fn(usize, bool) -> Result<String>,
    full: &str,
    ending: &str,
) -> Result<Vec<Range<usize>>> {
    let without_ending = |text: String| match text.strip_suffix(ending) {
        Some(body) => body.to_string(),
        None => text,
    };
    let full_body = without_ending(full.to_string());
    let cannot_locate = |i: usize, why: &str| {
        anyhow::anyhow!(
            "chat template {}: {why}, so assistant turn {i} cannot be located; use train_on = \
             \"all\", or a template with {{% generation %}} blocks",
            template.origin()
        )
    };
    let mut spans = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let upto = if i + 1 == messages.len() {
            full_body.clone()
        } else {
            without_ending(render(i + 1, false)?)
        };
        if !full_body.starts_with(&upto) {
            return Err(cannot_locate(
                i,
                "rendering the conversation up to this turn is not a prefix of rendering all of \
                 it (the template rewrites earlier turns)",
            ));
        }
        // Nothing precedes turn 0 (and templates that read messages[0] fail on no messages).
        let (base, prompt) = if i == 0 {
            (String::new(), None)
        } else {
            let base = without_ending(render(i, false)?);
            let prompt = match render(i, true) {
                Ok(with) => with.strip_prefix(base.as_str()).map(str::to_string),
                Err(_) => None,
            };
            (base, prompt)
        };
        if !upto.starts_with(&base) {
            return Err(cannot_locate(
                i,
                "the turn is not rendered after the turns before it",
            ));
        }
        let prompt = prompt.unwrap_or_else(|| probe_generation_prompt(template));
        let mut start = base.len();
        if !prompt.is_empty() {
            if let Some(at) = upto[start..].find(&prompt) {
                start += at + prompt.len();
            }
        }
        let end = upto.trim_end().len().max(start);
        spans.push(start..end);
    }
    Ok(spans)
}

/// What `add_generation_prompt` appends to a one-message conversation (for turns whose
/// preceding messages cannot be rendered alone, e.g. none).
fn probe_generation_prompt(template: &ChatTemplate) -> String {
    let probe = [Message {
        role: "user".into(),
        content: "x".into(),
    }];
    match (
        template.render(&probe, true),
        template.render(&probe, false),
    ) {
        (Ok(with), Ok(without)) => with[template.divergence(&without, &with)..].to_string(),
        _ => String::new(),
    }
}

/// Labels: a token is trained when its text overlaps a span (transformers maps a span's first
/// and last characters to tokens and trains everything between).
pub fn labels_from_spans(
    input_ids: &[u32],
    offsets: &[(usize, usize)],
    spans: &[Range<usize>],
) -> Vec<i64> {
    input_ids
        .iter()
        .zip(offsets)
        .map(|(&id, &(s, e))| {
            let trained = spans
                .iter()
                .any(|sp| !sp.is_empty() && s < sp.end && e > sp.start);
            if trained {
                i64::from(id)
            } else {
                IGNORE_INDEX
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::tokenize::fixtures::{json, tokenizer, u32s};

    fn mask(labels: &[i64]) -> Vec<u64> {
        labels
            .iter()
            .map(|&l| u64::from(l != IGNORE_INDEX))
            .collect()
    }

    fn u64s(v: &serde_json::Value) -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    }

    fn encoders() -> HashMap<String, Encoder> {
        let expected = json("expected_text.json");
        expected["tokenizers"]
            .as_object()
            .unwrap()
            .keys()
            .map(|name| {
                let enc = Encoder::new(tokenizer(name), None, TrainOn::Assistant, true).unwrap();
                (name.clone(), enc)
            })
            .collect()
    }

    fn show(enc: &Encoder, ids: &[u32], got: &[u64], want: &[u64]) -> String {
        ids.iter()
            .zip(got.iter().zip(want))
            .map(|(&id, (g, w))| {
                let tok = enc.tokenizer().id_to_token(id).unwrap_or_default();
                format!(
                    "{tok:?} got {g} want {w}{}\n",
                    if g != w { "  <<<" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn chat_ids_and_masks_match_transformers() {
        let expected = json("expected_chat.json");
        let encoders = encoders();
        let mut checked = 0;
        for case in expected["cases"].as_array().unwrap() {
            if case.get("error").is_some() || case.get("input_ids").is_none() {
                continue;
            }
            let name = case["template"].as_str().unwrap();
            let ctx = format!("{name} / {}", case["conversation"]);
            let enc = &encoders[name];
            let msgs: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            let ids = u32s(&case["input_ids"]);

            let all = enc
                .encode_chat(&msgs, TrainOn::All, SpanMethod::Auto)
                .unwrap();
            assert_eq!(all.input_ids, ids, "{ctx}: ids");
            assert!(all
                .labels
                .iter()
                .zip(&ids)
                .all(|(&l, &i)| l == i64::from(i)));
            if case.get("mask_error").is_some() {
                // A template that renders earlier turns differently once later ones follow.
                let err = enc
                    .encode_chat(&msgs, TrainOn::Assistant, SpanMethod::Auto)
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("rewrites earlier turns"), "{ctx}: {err}");
                checked += 1;
                continue;
            }
            if case.get("assistant_mask").is_none() {
                continue;
            }

            for (train_on, key) in [
                (TrainOn::Assistant, "assistant_mask"),
                (TrainOn::LastAssistant, "last_assistant_mask"),
            ] {
                let want = u64s(&case[key]);
                let ex = enc
                    .encode_chat(&msgs, train_on, SpanMethod::PrefixRendering)
                    .unwrap();
                assert_eq!(ex.input_ids, ids, "{ctx}");
                let got = mask(&ex.labels);
                assert_eq!(got, want, "{ctx} {key}:\n{}", show(enc, &ids, &got, &want));
            }
            if let Some(hf) = case.get("hf_assistant_mask") {
                // transformers' return_assistant_tokens_mask on the {% generation %} template.
                let want = u64s(hf);
                let ex = enc
                    .encode_chat(&msgs, TrainOn::Assistant, SpanMethod::GenerationMarkers)
                    .unwrap();
                let got = mask(&ex.labels);
                assert_eq!(
                    got,
                    want,
                    "{ctx} hf mask:\n{}",
                    show(enc, &ids, &got, &want)
                );
                let by_prefix = mask(
                    &enc.encode_chat(&msgs, TrainOn::Assistant, SpanMethod::PrefixRendering)
                        .unwrap()
                        .labels,
                );
                assert_eq!(
                    by_prefix, want,
                    "{ctx}: prefix rendering vs generation markers"
                );
            }
            checked += 1;
        }
        assert!(checked >= 50, "only {checked} cases checked");
    }

    #[test]
    fn assistant_mask_trains_content_and_end_of_turn_only() {
        let encoders = encoders();
        let msgs = [
            Message {
                role: "user".into(),
                content: "Hi".into(),
            },
            Message {
                role: "assistant".into(),
                content: "Hello there".into(),
            },
        ];
        for (name, eot) in [
            ("chatml", "<|im_end|>"),
            ("llama3", "<|eot_id|>"),
            ("qwen25", "<|im_end|>"),
            ("mistral", "</s>"),
            ("gemma", "<end_of_turn>"),
            ("gemma3", "<end_of_turn>"),
            ("phi3", "<|end|>"),
            ("phi4", "<|end|>"),
        ] {
            let enc = &encoders[name];
            let ex = enc
                .encode(&Sample::Chat {
                    messages: msgs.to_vec(),
                })
                .unwrap();
            let trained: Vec<u32> = ex
                .input_ids
                .iter()
                .zip(&ex.labels)
                .filter(|(_, &l)| l != IGNORE_INDEX)
                .map(|(&i, _)| i)
                .collect();
            let text = enc.tokenizer().decode(&trained, false).unwrap();
            assert_eq!(text.trim_start(), format!("Hello there{eot}"), "{name}");
            assert_eq!(
                enc.end_of_turn_id(),
                enc.tokenizer().token_to_id(eot),
                "{name}"
            );
        }
    }

    #[test]
    fn chat_has_exactly_one_bos() {
        for name in ["llama3", "mistral"] {
            let enc = Encoder::new(tokenizer(name), None, TrainOn::All, true).unwrap();
            let bos = enc.tokenizer().bos_token_id().unwrap();
            let msgs = vec![
                Message {
                    role: "user".into(),
                    content: "Hi".into(),
                },
                Message {
                    role: "assistant".into(),
                    content: "Yo".into(),
                },
            ];
            let ex = enc.encode(&Sample::Chat { messages: msgs }).unwrap();
            assert_eq!(ex.input_ids[0], bos, "{name}");
            assert_eq!(
                ex.input_ids.iter().filter(|&&i| i == bos).count(),
                1,
                "{name}"
            );
        }
    }

    #[test]
    fn end_of_turn_that_generation_does_not_stop_on_is_warned() {
        let ok = Encoder::new(tokenizer("llama3"), None, TrainOn::Assistant, true).unwrap();
        assert!(ok.warnings().is_empty(), "{:?}", ok.warnings());
        let bad =
            Encoder::new(tokenizer("llama3-base-eos"), None, TrainOn::Assistant, true).unwrap();
        let eot = bad.tokenizer().token_to_id("<|eot_id|>").unwrap();
        assert_eq!(bad.end_of_turn_id(), Some(eot));
        assert_eq!(bad.warnings().len(), 1);
        let w = &bad.warnings()[0];
        assert!(
            w.contains("<|eot_id|>")
                && w.contains("<|end_of_text|>")
                && w.contains("generation_config.json"),
            "{w}"
        );
        // A template loam supplies: generation stops on its end of turn, and merge / import
        // write that stop, so nothing is for the user to fix.
        let tok = tokenizer("llama3-base-eos");
        let supplied = ChatTemplate::from_setting("test", "llama3", &tok).unwrap();
        let quiet = Encoder::new(tok, Some(supplied), TrainOn::Assistant, true).unwrap();
        assert_eq!(quiet.end_of_turn_id(), Some(eot));
        assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
    }

    #[test]
    fn text_rows_are_encode_text_all_trained() {
        let tok = tokenizer("chatml");
        let text = "Bore da! 你好 🙂";
        let want = tok.encode_text(text, true);
        let enc = Encoder::new(tok, None, TrainOn::Assistant, true).unwrap();
        let ex = enc.encode(&Sample::Text { text: text.into() }).unwrap();
        assert_eq!(ex.input_ids, want);
        assert_eq!(
            ex.labels,
            want.iter().map(|&i| i64::from(i)).collect::<Vec<_>>()
        );
        let opts = EncodeOptions {
            train_on: TrainOn::All,
            add_eos: false,
        };
        let ex = enc
            .encode_with(&Sample::Text { text: text.into() }, &opts)
            .unwrap();
        assert_eq!(ex.input_ids, want[..want.len() - 1]);
    }

    #[test]
    fn prompt_completion_trains_completion_and_eos() {
        let enc = Encoder::new(tokenizer("llama3"), None, TrainOn::Completion, true).unwrap();
        let tok = enc.tokenizer();
        let (bos, eos) = (tok.bos_token_id().unwrap(), tok.eos_token_id().unwrap());
        let sample = Sample::PromptCompletion {
            prompt: "Translate to Welsh: good morning\n".into(),
            completion: "Bore da".into(),
        };
        let ex = enc.encode(&sample).unwrap();
        let full = tok.encode_text("Translate to Welsh: good morning\nBore da", true);
        assert_eq!(ex.input_ids, full);
        assert_eq!(ex.input_ids[0], bos);
        assert_eq!(*ex.input_ids.last().unwrap(), eos);
        let trained: Vec<u32> = ex
            .input_ids
            .iter()
            .zip(&ex.labels)
            .filter(|(_, &l)| l != IGNORE_INDEX)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(tok.decode(&trained, false).unwrap(), "Bore da<|eot_id|>");
        for train_on in [TrainOn::Assistant, TrainOn::LastAssistant] {
            let opts = EncodeOptions {
                train_on,
                add_eos: true,
            };
            assert_eq!(enc.encode_with(&sample, &opts).unwrap(), ex);
        }
        let all = EncodeOptions {
            train_on: TrainOn::All,
            add_eos: false,
        };
        let ex = enc.encode_with(&sample, &all).unwrap();
        assert_eq!(ex.input_ids, full[..full.len() - 1]);
        assert!(ex.labels.iter().all(|&l| l != IGNORE_INDEX));
    }

    #[test]
    fn chat_without_template_is_a_clear_error() {
        let expected = json("expected_text.json");
        assert!(expected["tokenizers"].get("chatml").is_some());
        let tok = crate::Tokenizer::from_parts(
            tokenizer("chatml").inner().clone(),
            &serde_json::json!({"eos_token": "<|im_end|>"}),
            None,
            None,
            None,
        )
        .unwrap();
        let enc = Encoder::new(tok, None, TrainOn::Assistant, true).unwrap();
        let msgs = vec![Message {
            role: "user".into(),
            content: "Hi".into(),
        }];
        let err = enc
            .encode(&Sample::Chat { messages: msgs })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no chat template") && err.contains("chat_template"),
            "{err}"
        );
    }

    #[test]
    fn a_broken_model_template_fails_only_chats() {
        let tok = crate::Tokenizer::from_parts(
            tokenizer("chatml").inner().clone(),
            &serde_json::json!({"eos_token": "<|im_end|>", "chat_template": "{% if %}"}),
            None,
            None,
            Some(crate::tokenize::TemplateSource {
                origin: "model/tokenizer_config.json chat_template".into(),
                text: "{% if %}".into(),
            }),
        )
        .unwrap();
        let enc = Encoder::new(tok, None, TrainOn::Assistant, true).unwrap();
        assert!(enc.encode(&Sample::Text { text: "hi".into() }).is_ok());
        let msgs = vec![Message {
            role: "user".into(),
            content: "Hi".into(),
        }];
        let err = enc
            .encode(&Sample::Chat { messages: msgs })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model/tokenizer_config.json chat_template")
                && err.contains("does not parse"),
            "{err}"
        );
    }

    #[test]
    fn template_errors_name_the_template() {
        let enc = Encoder::new(tokenizer("mistral"), None, TrainOn::Assistant, true).unwrap();
        let msgs = vec![
            Message {
                role: "user".into(),
                content: "a".into(),
            },
            Message {
                role: "user".into(),
                content: "b".into(),
            },
        ];
        let err = enc
            .encode(&Sample::Chat { messages: msgs })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chat_template.jinja") && err.contains("must alternate"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod recipe_template_tests {
    use super::*;
    use crate::testutil::word_tokenizer;

    fn spans_of(template: &str, eos: &str) -> Vec<String> {
        let tokens = [("eos_token".to_string(), eos.to_string())].into();
        let source = crate::tokenize::TemplateSource {
            origin: "test".into(),
            text: template.into(),
        };
        let template = ChatTemplate::new(&source, &tokens).unwrap();
        let msg = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let messages = [
            msg("user", "a"),
            msg("assistant", "b"),
            msg("user", "c"),
            msg("assistant", "d"),
        ];
        let (text, spans) =
            assistant_spans(&template, &messages, SpanMethod::PrefixRendering).unwrap();
        spans.into_iter().map(|r| text[r].to_string()).collect()
    }

    #[test]
    fn an_ending_in_place_of_the_generation_prompt_is_in_no_turn() {
        // Phi-3's shape: EOS closes the conversation unless a reply is asked for, and the
        // EOS and the prompt share their first characters.
        let phi = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}\
                   {% if add_generation_prompt %}<|assistant|>{% else %}{{ eos_token }}{% endif %}";
        assert_eq!(spans_of(phi, "<|endoftext|>"), ["b<|end|>", "d<|end|>"]);
        // A generation prompt that changes the start too: no ending, and the turns are found
        // as without one (the prompt cannot be told apart there, so the role tag stays in).
        let odd = "{% if add_generation_prompt %}GEN {% endif %}{% for m in messages %}\
                   [{{ m.role }}] {{ m.content }} END {% endfor %}\
                   {% if add_generation_prompt %}[assistant] {% endif %}";
        assert_eq!(
            spans_of(odd, "</s>"),
            ["[assistant] b END", "[assistant] d END"]
        );
    }

    fn chat() -> Sample {
        let msg = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        Sample::Chat {
            messages: vec![msg("user", "hello"), msg("assistant", "world")],
        }
    }

    #[test]
    fn a_recipe_template_replaces_the_models_and_masks_the_assistant() {
        let tokenizer = word_tokenizer(&["USER", "BOT", "END", "hello", "world"]);
        let cfg = DataConfig {
            chat_template: Some(
                "{% for m in messages %}{{ 'USER' if m.role == 'user' else 'BOT' }} {{ m.content }} END {% endfor %}\
                 {% if add_generation_prompt %}BOT {% endif %}"
                    .into(),
            ),
            ..DataConfig::default()
        };
        let encoder = Encoder::for_data_config(tokenizer.clone(), &cfg).unwrap();
        let example = encoder.encode(&chat()).unwrap();
        let words: Vec<String> = example
            .input_ids
            .iter()
            .map(|&id| tokenizer.id_to_token(id).unwrap())
            .collect();
        assert_eq!(words, ["USER", "hello", "END", "BOT", "world", "END"]);
        let trained: Vec<&str> = words
            .iter()
            .zip(&example.labels)
            .filter(|(_, &l)| l != IGNORE_INDEX)
            .map(|(w, _)| w.as_str())
            .collect();
        assert_eq!(
            trained,
            ["world", "END"],
            "assistant content and its end-of-turn word"
        );
    }

    #[test]
    fn a_missing_template_file_is_named() {
        let cfg = DataConfig {
            chat_template: Some("/no/such/template.jinja".into()),
            ..DataConfig::default()
        };
        let err = Encoder::for_data_config(word_tokenizer(&["a"]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/template.jinja"), "{err}");
    }
}

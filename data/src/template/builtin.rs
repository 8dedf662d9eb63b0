//! Chat templates loam ships, by name, for models that carry none (a base model, an imported
//! GGUF without `tokenizer.chat_template`): `data.chat_template = "gemma"` in a recipe,
//! `--chat-template gemma` on `loam eval` / `loam generate`.
//!
//! Each renders a conversation exactly as llama.cpp's built-in template of the same name
//! (`llama_chat_apply_template`) does, with the BOS the model's tokenizer would add written
//! first (loam's templates write their own BOS, as transformers' do), and marks each
//! assistant turn — its content and the end-of-turn token that closes it — with
//! `{% generation %}`, so `train_on = "assistant"` trains exactly the answer and its stop.
//! Whitespace control is explicit (`{%-`, `-%}`) so the renders do not depend on
//! `trim_blocks` / `lstrip_blocks`.

/// A built-in chat template.
pub struct Builtin {
    pub name: &'static str,
    /// The model families it is written for (for the documentation and errors).
    pub families: &'static str,
    /// The token that closes every turn: generation stops on it.
    pub end_of_turn: &'static str,
    pub jinja: &'static str,
}

/// ChatML (`<|im_start|>role … <|im_end|>`): SmolLM2, Qwen 2/2.5/3, many others.
const CHATML: &str = r#"{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' -}}
{%- if message['role'] == 'assistant' -%}
{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}
{{- '\n' -}}
{%- else -%}
{{- message['content'] + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"#;

/// Gemma (1, 2, 3): `<start_of_turn>user|model … <end_of_turn>`. Gemma has no system turn:
/// system messages go before the next user message, as llama.cpp does (and Gemma 3's own
/// template, for a leading one). Contents are trimmed, as both do.
const GEMMA: &str = r#"{{- bos_token -}}
{%- set ns = namespace(prefix='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{%- set ns.prefix = ns.prefix + message['content'] | trim -%}
{%- else -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<start_of_turn>' + role + '\n' -}}
{%- if ns.prefix and role != 'model' -%}
{{- ns.prefix + '\n\n' -}}
{%- set ns.prefix = '' -%}
{%- endif -%}
{%- if role == 'model' -%}
{%- generation -%}{{- message['content'] | trim + '<end_of_turn>' -}}{%- endgeneration -%}
{{- '\n' -}}
{%- else -%}
{{- message['content'] | trim + '<end_of_turn>\n' -}}
{%- endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"#;

/// Llama 3 (3, 3.1, 3.2, 3.3): `<|start_header_id|>role<|end_header_id|>` … `<|eot_id|>`.
const LLAMA3: &str = r#"{{- bos_token -}}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' -}}
{%- if message['role'] == 'assistant' -%}
{%- generation -%}{{- message['content'] | trim + '<|eot_id|>' -}}{%- endgeneration -%}
{%- else -%}
{{- message['content'] | trim + '<|eot_id|>' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}"#;

/// Phi-3 (3, 3.5): `<|role|>\n … <|end|>\n`.
const PHI3: &str = r#"{%- for message in messages -%}
{{- '<|' + message['role'] + '|>\n' -}}
{%- if message['role'] == 'assistant' -%}
{%- generation -%}{{- message['content'] + '<|end|>' -}}{%- endgeneration -%}
{{- '\n' -}}
{%- else -%}
{{- message['content'] + '<|end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"#;

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "chatml",
        families: "SmolLM2, Qwen2, Qwen3",
        end_of_turn: "<|im_end|>",
        jinja: CHATML,
    },
    Builtin {
        name: "gemma",
        families: "Gemma, Gemma 2, Gemma 3",
        end_of_turn: "<end_of_turn>",
        jinja: GEMMA,
    },
    Builtin {
        name: "llama3",
        families: "Llama 3.x",
        end_of_turn: "<|eot_id|>",
        jinja: LLAMA3,
    },
    Builtin {
        name: "phi3",
        families: "Phi-3, Phi-3.5",
        end_of_turn: "<|end|>",
        jinja: PHI3,
    },
];

/// The built-in template called `name`.
pub fn by_name(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// `chatml, gemma, llama3, phi3`: for messages that list the choices.
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Encoder, SpanMethod};
    use crate::template::ChatTemplate;
    use crate::tokenize::fixtures::{json, tokenizer};
    use crate::{Message, TrainOn, IGNORE_INDEX};

    /// Each built-in template renders every fixture conversation exactly as llama.cpp's
    /// template of the same name does (`llama_chat_apply_template`, after the BOS the
    /// template writes), with and without the generation prompt.
    #[test]
    fn renders_equal_llama_cpps_built_in_templates() {
        let expected = json("expected_builtin_templates.json");
        let mut checked = std::collections::BTreeSet::new();
        for case in expected["cases"].as_array().unwrap() {
            let name = case["template"].as_str().unwrap();
            let tok = tokenizer(case["tokenizer"].as_str().unwrap());
            let ctx = format!("{name} / {}", case["conversation"]);
            let t = ChatTemplate::from_setting("test", name, &tok).unwrap();
            let msgs: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            let bos = case["bos"].as_str().unwrap_or_default();
            for (generation_prompt, key) in
                [(false, "llama_cpp"), (true, "llama_cpp_generation_prompt")]
            {
                let want = format!("{bos}{}", case[key].as_str().unwrap());
                assert_eq!(
                    t.render(&msgs, generation_prompt).unwrap(),
                    want,
                    "{ctx} {key}"
                );
            }
            checked.insert(name);
        }
        let all: std::collections::BTreeSet<&str> = BUILTINS.iter().map(|b| b.name).collect();
        assert_eq!(checked, all, "every built-in template is checked");
    }

    /// Where a shipped model carries the template itself, the built-in one renders as
    /// transformers renders the model's: ChatML as SmolLM2's own (whose template adds a
    /// default system message, so on conversations that have one).
    #[test]
    fn chatml_renders_as_smollm2s_own_template() {
        let expected = json("expected_chat.json");
        let t = ChatTemplate::from_setting("test", "chatml", &tokenizer("chatml")).unwrap();
        let mut checked = 0;
        for case in expected["cases"].as_array().unwrap() {
            if case["template"] != "chatml" || case["messages"][0]["role"] != "system" {
                continue;
            }
            let msgs: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            assert_eq!(
                t.render(&msgs, false).unwrap(),
                case["rendered"],
                "{}",
                case["conversation"]
            );
            assert_eq!(
                t.render(&msgs, true).unwrap(),
                case["rendered_generation_prompt"],
                "{}",
                case["conversation"]
            );
            checked += 1;
        }
        assert!(checked >= 2, "only {checked} conversations checked");
    }

    /// `train_on = "assistant"` trains each answer (trimmed where the template trims it) and
    /// the end-of-turn token that closes it, nothing else; the generation markers and
    /// rendering prefixes of the conversation find the same tokens; generation stops on the
    /// template's end-of-turn token; a template that writes the BOS starts with one BOS.
    #[test]
    fn assistant_masks_train_each_answer_and_its_end_of_turn() {
        let expected = json("expected_builtin_templates.json");
        for case in expected["cases"].as_array().unwrap() {
            let name = case["template"].as_str().unwrap();
            let b = by_name(name).unwrap();
            let tok = tokenizer(case["tokenizer"].as_str().unwrap());
            let template = ChatTemplate::from_setting("test", name, &tok).unwrap();
            let enc = Encoder::new(tok, Some(template), TrainOn::Assistant, true).unwrap();
            let ctx = format!("{name} / {}", case["conversation"]);
            let msgs: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            let trims = b.jinja.contains("| trim");
            let want: String = msgs
                .iter()
                .filter(|m| m.role == "assistant")
                .map(|m| {
                    let content = if trims { m.content.trim() } else { &m.content };
                    format!("{content}{}", b.end_of_turn)
                })
                .collect();
            let markers = enc
                .encode_chat(&msgs, TrainOn::Assistant, SpanMethod::GenerationMarkers)
                .unwrap();
            let trained: Vec<u32> = markers
                .input_ids
                .iter()
                .zip(&markers.labels)
                .filter(|(_, &l)| l != IGNORE_INDEX)
                .map(|(&i, _)| i)
                .collect();
            let text = enc.tokenizer().decode(&trained, false).unwrap();
            // Whitespace aside: a token may join the newline after a role to an answer that
            // starts with one.
            let squeeze = |s: &str| s.split_whitespace().collect::<String>();
            assert_eq!(squeeze(&text), squeeze(&want), "{ctx}: {text:?}");
            let prefixes = enc
                .encode_chat(&msgs, TrainOn::Assistant, SpanMethod::PrefixRendering)
                .unwrap();
            assert_eq!(
                prefixes.labels, markers.labels,
                "{ctx}: prefixes vs markers"
            );
            assert_eq!(
                enc.end_of_turn_id(),
                enc.tokenizer().token_to_id(b.end_of_turn),
                "{ctx}"
            );
            if b.jinja.contains("bos_token") {
                // the template's BOS, and not the tokenizer's again
                let bos = enc.tokenizer().bos_token_id();
                assert_eq!(markers.input_ids.first().copied(), bos, "{ctx}");
                assert_ne!(markers.input_ids.get(1).copied(), bos, "{ctx}: two BOS");
            }
        }
    }

    #[test]
    fn a_setting_that_is_no_template_lists_the_built_in_ones() {
        let err = ChatTemplate::from_setting("data.chat_template", "gemma4", &tokenizer("chatml"))
            .unwrap_err()
            .to_string();
        for needle in [
            "data.chat_template",
            "gemma4",
            "chatml, gemma, llama3, phi3",
        ] {
            assert!(err.contains(needle), "{err}");
        }
    }
}

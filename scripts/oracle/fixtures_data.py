#!/usr/bin/env python3
"""Build the tokenizer and chat-template fixtures the loam-data tests compare against.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_data.py [--out DIR] [--force]

DIR defaults to $LOAM_FIXTURES or ~/.cache/loam/fixtures. It needs SmolLM2's tokenizer
from DIR/models/smollm2-135m/ (written by fixtures_models.py, which build.sh runs first).

Writes DIR/templates/:
  <name>/            tokenizer dirs (tokenizer.json, tokenizer_config.json, maybe
                     chat_template.jinja, generation_config.json): SmolLM2's tokenizer with
                     the special tokens of a model family added and a chat template written
                     in that family's style: chatml (SmolLM2's own files), llama3,
                     llama3-base-eos (generation stops only on <|end_of_text|>), qwen25
                     (template as a list of named templates), qwen3 (reasoning shown only
                     after the last user turn), mistral (chat_template.jinja, BOS from the
                     post-processor), gemma, gemma3, phi3 (EOS after the conversation),
                     phi4, chatml-generation and phi3-generation ({% generation %} markers
                     on chatml's and phi3's renderings), features (Python string methods,
                     tojson, namespace, loop controls)
  expected_text.json {"tokenizers": {name: {special_tokens_map, bos/eos/pad_token_id,
                     vocab_size}}, "texts": {name: [{text, input_ids (tokenizer(text)),
                     input_ids_no_special, text_row (+EOS unless already last), decoded}]}}
  expected_chat.json {"cases": [{template, conversation, messages, and either error (the
                     template's exception) or rendered, rendered_generation_prompt,
                     input_ids (apply_chat_template(tokenize=True)), and either mask_error
                     or assistant_mask / last_assistant_mask (0/1 per token, by prefix
                     rendering) and, for the *-generation templates, hf_assistant_mask
                     (return_assistant_tokens_mask=True)}]}
  expected_builtin_templates.json {"cases": [{template (a loam built-in template's name),
                     tokenizer (the family dir it is rendered with), conversation, messages,
                     bos (the BOS the template writes first: llama.cpp's tokenizer adds it
                     for gemma and llama3), llama_cpp and llama_cpp_generation_prompt
                     (llama_chat_apply_template of llama.cpp's built-in template of that
                     name, without and with the assistant prompt)}]}

Idempotent: DIR/data.stamp holds a hash of this file, common.py, the llama-cpp-python pin,
SmolLM2's tokenizer files and the reference package versions; when it matches nothing is
done. Otherwise everything is built under DIR/.tmp-data-<pid>/ and renamed into place; the stamp is written last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import common  # noqa: E402
from common import log  # noqa: E402

STAMP_NAME = "data.stamp"
OWNED = "templates"
SMOL = Path("models") / "smollm2-135m"

# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------

TEXTS = [
    "Hello, world!",
    "",
    " leading space and trailing space ",
    "Bore da! Sut wyt ti heddiw? Mae'r tywydd yn braf yng Nghymru — ŵ ŷ â ê.",
    "Habari za asubuhi? Ninafurahi kukutana nawe; tutaonana kesho.",
    "ሰላም እንደምን አደርክ? ኢትዮጵያ ውብ አገር ናት።",
    "你好，世界！今天天气很好，我们去公园散步吧。",
    "Emoji: 🙂👍🏽 👨‍👩‍👧‍👦 🇨🇾 — and a zero-width joiner\u200d.",
    "Numbers 1234567 and 3.14159, code: fn main() { println!(\"hi\"); }",
    "Tabs\tand\nnewlines\n\n  indented\r\nCRLF",
    "A literal special token <|im_end|> inside text",
    "Ends with the eos token<|im_end|>",
    "Mixed: Croeso! Karibu! እንኳን ደህና መጡ! 欢迎! 🎉",
]

C = lambda role, content: {"role": role, "content": content}  # noqa: E731

CONVERSATIONS = {
    "single_turn": [C("user", "Hi there!"), C("assistant", "Hello! How can I help?")],
    "system": [
        C("system", "You are a concise assistant."),
        C("user", "What is 2+2?"),
        C("assistant", "4."),
    ],
    "multi_turn": [
        C("system", "Answer in one short sentence."),
        C("user", "Name a planet."),
        C("assistant", "Mars."),
        C("user", "Another one?"),
        C("assistant", "Jupiter is the largest."),
        C("user", "And the smallest?"),
        C("assistant", "Mercury is the smallest planet."),
    ],
    "unicode": [
        C("user", "Sut mae? Habari? ሰላም? 你好？"),
        C("assistant", "Da iawn diolch! Nzuri sana. ደህና ነኝ። 我很好 🙂👍🏽"),
        C("user", "Emoji family: 👨‍👩‍👧‍👦"),
        C("assistant", "🇨🇾 ŵŷ — 欢迎!"),
    ],
    "whitespace": [
        C("user", "  padded question \n"),
        C("assistant", "\n  padded answer\n\nwith blank line  "),
    ],
    "ends_with_user": [
        C("user", "First."),
        C("assistant", "Reply."),
        C("user", "Second, unanswered."),
    ],
    "empty_assistant": [C("user", "Say nothing."), C("assistant", "")],
    "template_syntax_in_content": [
        C("user", "Render {{ this }} and {% if x %}that{% endif %} literally."),
        C("assistant", "Sure: {{ this }} {% raw %} <|im_start|> stays text? {# no #}"),
    ],
    "special_token_in_content": [
        C("user", "What does <|im_end|> mean?"),
        C("assistant", "It ends a turn: <|im_end|> or <|eot_id|> or </s>."),
    ],
    "assistant_first": [C("assistant", "I speak first."), C("user", "OK.")],
    "thinking": [
        C("user", "What is 7*6?"),
        C("assistant", "<think>\n7 times 6 is 42.\n</think>\n\n42"),
    ],
    "thinking_multi_turn": [
        C("user", "What is 7*6?"),
        C("assistant", "<think>\nEasy.\n</think>\n\n42"),
        C("user", "And 6*7?"),
        C("assistant", "<think>\nSame.\n</think>\n\nAlso 42"),
    ],
    "bad_roles": [C("user", "One."), C("user", "Two in a row.")],
}

# ---------------------------------------------------------------------------------------
# Templates, written in the style of each family (not copied from any model)
# ---------------------------------------------------------------------------------------

LLAMA3 = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if system_message %}
    {{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system_message + '<|eot_id|>' }}
{%- endif %}
{%- for message in loop_messages %}
    {%- if message['role'] not in ['user', 'assistant'] %}
        {{- raise_exception('Llama-3 style template: only user and assistant roles may follow the system message, got ' + message['role']) }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {{- messages[0]['content'] if messages[0]['role'] == 'system' else 'You are Qwen, a helpful assistant.' }}
    {{- '\\n\\n# Tools\\n<tools>' }}
    {%- for tool in tools %}
        {{- '\\n' + tool | tojson }}
    {%- endfor %}
    {{- '\\n</tools><|im_end|>\\n' }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "tool" %}
        {{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported!') }}
    {%- endif %}
{%- endfor %}
"""

# Qwen3-style: reasoning (<think>) is shown only for turns after the last user query, so a
# later turn changes how earlier ones render, and prefix rendering cannot find the turns of a
# multi-turn chat (loam reports that; the expectation records it as mask_error).
QWEN3 = """{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == "system" or message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
"""

# ChatML with transformers' {% generation %} markers, written with plain block tags and
# indentation so that trim_blocks / lstrip_blocks decide the output. Renders exactly like
# SmolLM2's template when the first message is a system message (checked below).
CHATML_GENERATION = """{% for message in messages %}
    {% if loop.first and messages[0]['role'] != 'system' %}
<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
    {% endif %}
<|im_start|>{{ message['role'] }}
    {% if message['role'] == 'assistant' %}
        {% generation %}
{{ message['content'] }}<|im_end|>
        {%- endgeneration %}

    {% else %}
{{ message['content'] }}<|im_end|>
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""

# Exercises the Python semantics a minijinja port has to get right: string methods,
# tojson (ensure_ascii=False, Python separators), namespace, loop controls, tests, None /
# True printing, whitespace control, slicing, dict access styles.
FEATURES = """{%- set ns = namespace(n_user=0, last='') %}
{%- for message in messages %}
    {%- if message.role == 'user' %}{% set ns.n_user = ns.n_user + 1 %}{% endif %}
    {%- if message['content'] is string and message.content.strip() == '' %}{% continue %}{% endif %}
    {%- if loop.index > 6 %}{% break %}{% endif %}
<{{ message.role.upper() }}|{{ loop.index0 }}|{{ loop.last }}>
{{ message.content.strip() }}
    {%- if message.role == 'assistant' %}
 [{{ message.content.split(' ') | length }} words, starts {{ message.content.lstrip()[:3] | tojson }}]
    {%- endif %}
{%- set ns.last = message.role %}
{% endfor %}
meta={{ {'roles': messages | map(attribute='role') | list, 'n': ns.n_user, 'ok': true, 'none': none, 'x': 1.5} | tojson }}
indented={{ {'a': [1, 2]} | tojson(indent=2) }}
{{ none }} {{ true }} {{ false }} {{ ns.last.title() }} {{ 'a,b,,c'.split(',') }} {{ 'xxhixx'.strip('x') }} {{ 'Hello'.startswith('He') }} {{ 'Hi {0}'.replace('{0}', eos_token) }}
{%- if add_generation_prompt %}
<ASSISTANT>
{%- endif %}
"""


# Gemma 1/2: no system role (the template raises on one), the assistant is `model`, each
# turn trimmed.
GEMMA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}
{%- for message in messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}
    {{- '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}
"""

# Gemma 3: a system message is folded into the first user turn.
GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set first_user_prefix = '' %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}
    {{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}
"""

# Phi-3 / 3.5: role tags on their own line, an empty system message left out, EOS after
# the conversation unless a reply is asked for.
PHI3 = """{%- for message in messages %}
    {%- if message['role'] == 'system' and message['content'] %}
        {{- '<|system|>\n' + message['content'] + '<|end|>\n' }}
    {%- elif message['role'] == 'user' or message['role'] == 'assistant' %}
        {{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}
"""

# Phi-3 with transformers' {% generation %} markers around each reply and its <|end|>;
# renders exactly like PHI3 (checked below), so its masks check prefix rendering where a
# template closes the conversation with EOS.
PHI3_GENERATION = """{%- for message in messages %}
    {%- if message['role'] == 'system' and message['content'] %}
        {{- '<|system|>\n' + message['content'] + '<|end|>\n' }}
    {%- elif message['role'] == 'user' %}
        {{- '<|user|>\n' + message['content'] + '<|end|>\n' }}
    {%- elif message['role'] == 'assistant' %}
        {{- '<|assistant|>\n' }}
        {%- generation %}{{- message['content'] + '<|end|>' }}{%- endgeneration %}
        {{- '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}
"""

# Phi-4-mini: role tags glued to the content, a system message may carry tools.
PHI4 = """{%- for message in messages %}
    {%- if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}
        {{- '<|system|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|><|end|>' }}
    {%- else %}
        {{- '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}
"""


def family_dirs():
    """name -> (tokens to add, tokenizer_config overrides, template placement, template,
    post-processor (None = keep SmolLM2's), generation eos tokens)."""
    dirs = {
        "chatml": dict(
            add=[], config={}, template=None, placement="copy", bos_post=False,
            gen_eos=["<|im_end|>"],
        ),
        "llama3": dict(
            add=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                 "<|end_header_id|>", "<|eot_id|>"],
            config={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                    "pad_token": None, "unk_token": None},
            template=LLAMA3, placement="config_string", bos_post=True,
            gen_eos=["<|end_of_text|>", "<|eot_id|>"],
        ),
        # Same files, but generation stops only on <|end_of_text|>: the classic base-model
        # generation_config that never stops on the template's <|eot_id|>.
        "llama3-base-eos": dict(
            add=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                 "<|end_header_id|>", "<|eot_id|>"],
            config={"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                    "pad_token": None, "unk_token": None},
            template=LLAMA3, placement="config_string", bos_post=True,
            gen_eos=["<|end_of_text|>"],
        ),
        "qwen25": dict(
            add=[],
            config={"bos_token": None, "eos_token": "<|im_end|>",
                    "pad_token": "<|endoftext|>", "unk_token": None,
                    "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]},
            template=QWEN25, placement="config_list", bos_post=False,
            gen_eos=["<|im_end|>", "<|endoftext|>"],
        ),
        "mistral": dict(
            add=["<s>", "</s>", "[INST]", "[/INST]"],
            config={"bos_token": {"content": "<s>", "lstrip": False, "normalized": False,
                                  "rstrip": False, "single_word": False, "__type": "AddedToken"},
                    "eos_token": {"content": "</s>", "lstrip": False, "normalized": False,
                                  "rstrip": False, "single_word": False, "__type": "AddedToken"},
                    "unk_token": None, "pad_token": None,
                    # Ignored by transformers 5 when tokenizer.json exists (its
                    # post-processor decides); here it would contradict it.
                    "add_bos_token": False, "add_eos_token": True},
            template=MISTRAL, placement="jinja_file", bos_post=True,
            gen_eos=["</s>"],
        ),
        "qwen3": dict(
            add=["<think>", "</think>"],
            config={"bos_token": None, "eos_token": "<|im_end|>",
                    "pad_token": "<|endoftext|>", "unk_token": None},
            template=QWEN3, placement="jinja_file", bos_post=False,
            gen_eos=["<|im_end|>", "<|endoftext|>"],
        ),
        "gemma": dict(
            add=["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
            config={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": None,
                    "unk_token": None},
            template=GEMMA, placement="config_string", bos_post=True,
            gen_eos=["<eos>", "<end_of_turn>"],
        ),
        "gemma3": dict(
            add=["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
            config={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": None,
                    "unk_token": None},
            template=GEMMA3, placement="jinja_file", bos_post=True,
            gen_eos=["<eos>", "<end_of_turn>"],
        ),
        "phi3": dict(
            add=["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
            config={"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": None,
                    "unk_token": None},
            template=PHI3, placement="config_string", bos_post=False,
            gen_eos=["<|end|>", "<|endoftext|>"],
        ),
        "phi4": dict(
            add=["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
                 "<|tool|>", "<|/tool|>"],
            config={"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": None,
                    "unk_token": None},
            template=PHI4, placement="jinja_file", bos_post=False,
            gen_eos=["<|end|>", "<|endoftext|>"],
        ),
        "chatml-generation": dict(
            add=[], config={}, template=CHATML_GENERATION, placement="jinja_file",
            bos_post=False, gen_eos=["<|im_end|>"],
        ),
        "features": dict(
            add=[], config={}, template=FEATURES, placement="jinja_file", bos_post=False,
            gen_eos=["<|im_end|>"],
        ),
    }
    dirs["phi3-generation"] = dict(dirs["phi3"], template=PHI3_GENERATION,
                                   placement="jinja_file")
    return dirs


# ---------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------


def write_tokenizer_dir(smol: Path, dst: Path, spec: dict) -> None:
    from tokenizers import AddedToken, Tokenizer, processors

    dst.mkdir(parents=True)
    if spec["placement"] == "copy":
        for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                  "generation_config.json"):
            shutil.copy2(smol / f, dst / f)
        return

    tok = Tokenizer.from_file(str(smol / "tokenizer.json"))
    if spec["add"]:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec["add"]])
    if spec["bos_post"]:
        # Llama-3's and Mistral's tokenizer.json: the post-processor adds the BOS.
        bos = spec["add"][0]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
            special_tokens=[(bos, tok.token_to_id(bos))])
    tok.save(str(dst / "tokenizer.json"))

    config = common.read_json(smol / "tokenizer_config.json")
    config.pop("chat_template", None)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    for k, v in spec["config"].items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    if spec["placement"] == "config_string":
        config["chat_template"] = spec["template"]
    elif spec["placement"] == "config_list":
        config["chat_template"] = [
            {"name": "default", "template": spec["template"]},
            {"name": "tool_use", "template": "{{ raise_exception('not this one') }}"},
        ]
    elif spec["placement"] == "jinja_file":
        (dst / "chat_template.jinja").write_text(spec["template"], encoding="utf-8")
    common.write_json(dst / "tokenizer_config.json", config)

    ids = [tok.token_to_id(t) for t in spec["gen_eos"]]
    bos = config.get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    gen = {"bos_token_id": tok.token_to_id(bos) if bos else None,
           "eos_token_id": ids[0] if len(ids) == 1 else ids}
    common.write_json(dst / "generation_config.json", gen)


def divergence(tokenizer, a: str, b: str) -> int:
    """Where two renderings part: the end of their common prefix, moved back to the start of
    a named special token it would cut (Phi-3's <|endoftext|> and <|assistant|> share "<|")."""
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    names = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
             "mask_token")
    tokens = [t for t in (getattr(tokenizer, n) for n in names) if t]
    moved = True
    while moved:
        moved = False
        for text in (a, b):
            for t in tokens:
                p = text.find(t, max(at - len(t) + 1, 0))
                if 0 <= p < at:
                    at, moved = p, True
    return at


def prefix_spans(tokenizer, messages: list[dict]) -> list[tuple[int, int]]:
    """Character spans of each assistant turn (content + end-of-turn marker), found by
    rendering prefixes of the conversation. Turn i lies in render(messages[:i+1]) after
    render(messages[:i]) and after the generation prompt (what add_generation_prompt adds,
    searched for there since a template may put a default system prompt first); it ends
    where render(messages[:i+1]) ends, less the whitespace the template puts between turns.
    What a template writes after a finished conversation in place of the generation prompt
    (Phi-3's EOS) is taken off each rendering first: it belongs to no turn."""

    def render(msgs, gen):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    full = render(messages, False)
    try:
        ending = full[divergence(tokenizer, full, render(messages, True)):]
    except Exception:  # noqa: BLE001 - a template that refuses a generation prompt here
        ending = ""
    try:
        return locate_turns(tokenizer, messages, render, full, ending)
    except AssertionError:
        # A template whose generation prompt changes more than the end has no such ending.
        if not ending:
            raise
        return locate_turns(tokenizer, messages, render, full, "")


def locate_turns(tokenizer, messages, render, full: str, ending: str) -> list[tuple[int, int]]:
    """prefix_spans with `ending` taken off each rendering."""

    def body(text):
        return text[: len(text) - len(ending)] if ending and text.endswith(ending) else text

    def generation_prompt(before):
        for msgs in (before, [{"role": "user", "content": "x"}]):
            if msgs is None:
                continue
            try:
                with_gp, without = render(msgs, True), render(msgs, False)
            except Exception:  # noqa: BLE001 - e.g. an empty conversation
                continue
            if msgs is before:
                if with_gp.startswith(body(without)):
                    return with_gp[len(body(without)):]
            else:
                return with_gp[divergence(tokenizer, without, with_gp):]
        return ""

    full_body = body(full)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        upto = body(render(messages[: i + 1], False))
        assert full_body.startswith(upto), "template rewrites earlier turns"
        # Nothing precedes turn 0 (templates that read messages[0] fail on no messages).
        base = body(render(messages[:i], False)) if i > 0 else ""
        assert upto.startswith(base), "turn is not appended to the previous ones"
        start = len(base)
        gp = generation_prompt(messages[:i] if i > 0 else None)
        if gp and gp in upto[start:]:
            start += upto[start:].index(gp) + len(gp)
        end = max(len(upto.rstrip()), start)
        spans.append((start, end))
    return spans


def mask_from_spans(offsets, spans) -> list[int]:
    return [int(any(s < e_ and e > s_ for (s_, e_) in spans if e_ > s_)) for (s, e) in offsets]


def chat_cases(tokenizer, name: str) -> list[dict]:
    cases = []
    for conv_name, messages in CONVERSATIONS.items():
        case = {"template": name, "conversation": conv_name, "messages": messages}
        try:
            rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception as e:  # noqa: BLE001 - the template's own error is the expectation
            case["error"] = str(e)
            cases.append(case)
            continue
        case["rendered"] = rendered
        case["rendered_generation_prompt"] = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True)
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
        ids = list(out["input_ids"])
        enc = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        assert list(enc["input_ids"]) == ids
        case["input_ids"] = ids
        if name == "features":
            cases.append(case)
            continue
        try:
            spans = prefix_spans(tokenizer, messages)
        except AssertionError as e:
            case["mask_error"] = str(e)
            cases.append(case)
            continue
        case["assistant_mask"] = mask_from_spans(enc["offset_mapping"], spans)
        case["last_assistant_mask"] = mask_from_spans(enc["offset_mapping"], spans[-1:])
        if name.endswith("-generation"):
            hf = tokenizer.apply_chat_template(
                messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
            assert list(hf["input_ids"]) == ids
            case["hf_assistant_mask"] = list(hf["assistant_masks"])
        cases.append(case)
    return cases


# loam's built-in chat templates (data/src/template/builtin.rs), the family fixture dir each
# is rendered with, and whether llama.cpp's tokenizer puts a BOS before the rendered text.
BUILTIN_TEMPLATES = {
    "chatml": ("chatml", False),
    "gemma": ("gemma3", True),
    "llama3": ("llama3", True),
    "phi3": ("phi3", False),
}


def llama_cpp_chat(template: str, messages: list[dict], add_assistant: bool) -> str:
    """llama.cpp's own rendering of its built-in template `template` (no model needed)."""
    import ctypes

    import llama_cpp
    chat = (llama_cpp.llama_chat_message * len(messages))()
    keep = []  # the C strings must outlive the call
    for i, m in enumerate(messages):
        role, content = m["role"].encode(), m["content"].encode()
        keep += [role, content]
        chat[i].role, chat[i].content = role, content
    size = 1 << 14
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(template.encode(), chat, len(messages),
                                                add_assistant, buf, size)
        if n < 0:
            raise RuntimeError(f"llama.cpp does not know the chat template {template!r}")
        if n <= size:
            return buf.raw[:n].decode()
        size = n


def builtin_template_cases(tokenizer_dirs: Path) -> list[dict]:
    from transformers import AutoTokenizer
    cases = []
    for name, (family, writes_bos) in BUILTIN_TEMPLATES.items():
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dirs / family))
        for conversation, messages in CONVERSATIONS.items():
            cases.append({
                "template": name,
                "tokenizer": family,
                "conversation": conversation,
                "messages": messages,
                "bos": tokenizer.bos_token if writes_bos else "",
                "llama_cpp": llama_cpp_chat(name, messages, False),
                "llama_cpp_generation_prompt": llama_cpp_chat(name, messages, True),
            })
    return cases


def build(out_dir: Path, tmp: Path) -> None:
    from transformers import AutoTokenizer

    smol = out_dir / SMOL
    dirs = family_dirs()
    for name, spec in dirs.items():
        write_tokenizer_dir(smol, tmp / name, spec)
        log(f"wrote {name}/")

    expected_text = {}
    expected_chat = []
    special_tokens = {}
    for name in dirs:
        tokenizer = AutoTokenizer.from_pretrained(str(tmp / name))
        special_tokens[name] = {
            "special_tokens_map": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "vocab_size": len(tokenizer),
        }
        if name in ("chatml", "llama3", "mistral", "qwen25"):
            rows = []
            for text in TEXTS:
                with_special = list(tokenizer(text)["input_ids"])
                eos = tokenizer.eos_token_id
                text_row = with_special + ([eos] if not with_special or with_special[-1] != eos else [])
                rows.append({
                    "text": text,
                    "input_ids": with_special,
                    "input_ids_no_special": list(tokenizer(text, add_special_tokens=False)["input_ids"]),
                    "text_row": text_row,
                    "decoded": tokenizer.decode(with_special),
                })
            expected_text[name] = rows
        expected_chat.extend(chat_cases(tokenizer, name))
        log(f"expectations for {name}")

    # Each generation-marker template renders like the template it marks up, and prefix
    # rendering finds exactly what transformers' generation markers mark.
    for plain, marked in (("chatml", "chatml-generation"), ("phi3", "phi3-generation")):
        gen_cases = {c["conversation"]: c for c in expected_chat if c["template"] == marked}
        for c in expected_chat:
            if c["template"] != plain or "rendered" not in c:
                continue
            g = gen_cases[c["conversation"]]
            assert g["rendered"] == c["rendered"], (marked, c["conversation"], g["rendered"],
                                                    c["rendered"])
            assert g["assistant_mask"] == g["hf_assistant_mask"], (marked, c["conversation"])
            if plain == "phi3":
                assert c["assistant_mask"] == g["hf_assistant_mask"], c["conversation"]

    common.write_json(tmp / "expected_text.json", {
        "generated_by": "scripts/oracle/fixtures_data.py",
        "versions": common.package_versions(),
        "tokenizers": special_tokens,
        "texts": expected_text,
    })
    common.write_json(tmp / "expected_chat.json", {
        "generated_by": "scripts/oracle/fixtures_data.py",
        "versions": common.package_versions(),
        "cases": expected_chat,
    })
    common.write_json(tmp / "expected_builtin_templates.json", {
        "generated_by": "scripts/oracle/fixtures_data.py",
        "versions": common.package_versions(),
        "cases": builtin_template_cases(tmp),
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="fixtures dir (default $LOAM_FIXTURES or ~/.cache/loam/fixtures)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    args = ap.parse_args()
    out_dir = (args.out or common.default_out_dir()).resolve()
    smol = out_dir / SMOL
    if not (smol / "tokenizer.json").is_file():
        print(f"error: {smol}/tokenizer.json is missing: run scripts/oracle/fixtures_models.py "
              f"--out {out_dir} first (scripts/oracle/build.sh runs both)", file=sys.stderr)
        return 1
    stamp_file = out_dir / STAMP_NAME
    stamp = common.source_stamp([
        Path(__file__).resolve(), HERE / "common.py",
        HERE.parent / "requirements-llama-cpp.txt",  # llama.cpp renders the built-in templates
        smol / "tokenizer.json", smol / "tokenizer_config.json", smol / "chat_template.jinja",
    ])
    if (not args.force and common.stamp_matches(stamp_file, stamp)
            and (out_dir / OWNED / "expected_builtin_templates.json").is_file()):
        print(f"fixtures up to date: {out_dir}/{OWNED} (stamp {stamp[:12]})")
        return 0
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = out_dir / f".tmp-data-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        build(out_dir, tmp / OWNED)
        common.replace_path(tmp / OWNED, out_dir / OWNED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp_file.write_text(stamp + "\n")
    log(f"wrote {out_dir / OWNED} (stamp {stamp[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

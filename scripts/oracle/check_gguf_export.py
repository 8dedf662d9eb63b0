#!/usr/bin/env python3
"""Check a GGUF written by `loam gguf export` against the model directory it came from.

usage: check_gguf_export.py FILE.gguf MODEL_DIR [--transformers]

With gguf-py (the `gguf` package) as the reader:
  - llama.cpp's metadata keys are present and agree with config.json / tokenizer.json /
    tokenizer_config.json (architecture, hyper-parameters, rope, tokens, merges, special ids,
    chat template);
  - tensor names are llama.cpp's, 1-D tensors are F32, and every tensor dequantizes back to
    the source tensor (the llama Q/K row permutation undone here, independently of loam)
    within its type's tolerance: F32 exact, F16 rel 1e-3, BF16 rel 1e-2, Q8_0 one quantization
    step (block amax / 127: half a step of rounding plus the f16-rounded scale) per block of 32.
With --transformers, transformers itself loads the GGUF (`gguf_file=`), its tokenizer gives
the source tokenizer's ids and its next-token argmax agrees with the source model's on
>= 97% of positions over a few multilingual texts.

Prints "ok: ..." and exits 0, or prints every mismatch and exits 1.
"""

import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file

TEXTS = [
    "The quick brown fox jumps over the lazy dog. In 1969, 3 astronauts flew to the Moon.",
    "Mae'r tywydd yn braf heddiw, ac rydw i'n mynd i'r traeth gyda fy ffrindiau.",
    "La inteligencia artificial está cambiando la forma en que trabajamos y aprendemos.",
    "Die Katze sitzt auf der Matte und schaut aus dem Fenster, während es regnet.",
    "Привет! Как дела? Сегодня мы поговорим о машинном обучении и языковых моделях.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
]

GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
LAYER = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
         "post_attention_layernorm": "ffn_norm"}
FILE_TYPES = {Q.F32: 0, Q.F16: 1, Q.Q8_0: 7, Q.BF16: 32, Q.Q4_0: 2, Q.Q4_1: 3}

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


def gguf_name(hf):
    stem, param = hf.rsplit(".", 1)
    if stem in GLOBAL:
        return f"{GLOBAL[stem]}.{param}"
    _, _, layer, module = stem.split(".", 3)
    return f"blk.{layer}.{LAYER[module]}.{param}"


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def load_json(path):
    return json.loads(path.read_text()) if path.exists() else {}


def unpermute(w, n_head):
    """llama.cpp's permute, undone: interleaved (x0, y0, x1, y1) rows back to halves."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tolerance_ok(ty, got, want):
    if ty == Q.F32:
        return np.array_equal(got, want), float(np.abs(got - want).max(initial=0))
    err = np.abs(got - want)
    if ty == Q.F16:
        bound = 1e-3 * np.abs(want) + 1e-7
    elif ty == Q.BF16:
        bound = 1e-2 * np.abs(want) + 1e-30
    elif ty in (Q.Q8_0, Q.Q4_0, Q.Q4_1):
        block = 32
        blocks = np.abs(want.reshape(-1, block)).max(axis=1, keepdims=True)
        steps = {Q.Q8_0: 127.0, Q.Q4_0: 7.0, Q.Q4_1: 7.5}[ty]
        # Half a step, plus the f16 rounding of the stored scale: within one step.
        bound = np.broadcast_to(blocks / steps + 1e-7, (blocks.shape[0], block)).reshape(want.shape)
    else:
        return False, float("nan")
    return bool((err <= bound).all()), float(err.max(initial=0))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    path, model_dir = Path(args[0]), Path(args[1])
    with_transformers = "--transformers" in sys.argv
    config = json.loads((model_dir / "config.json").read_text())
    tok_json = json.loads((model_dir / "tokenizer.json").read_text())
    tok_config = load_json(model_dir / "tokenizer_config.json")
    reader = gguf.GGUFReader(path)

    # Metadata.
    arch = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama",
            "Qwen2ForCausalLM": "qwen2"}[config["architectures"][0]]
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or hidden // heads
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    expect = {
        "general.architecture": arch,
        f"{arch}.context_length": config["max_position_embeddings"],
        f"{arch}.embedding_length": hidden,
        f"{arch}.block_count": config["num_hidden_layers"],
        f"{arch}.feed_forward_length": config["intermediate_size"],
        f"{arch}.attention.head_count": heads,
        f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.rope.dimension_count": head_dim,
        f"{arch}.vocab_size": config["vocab_size"],
        "tokenizer.ggml.model": "gpt2",
    }
    for key, want in expect.items():
        check(field(reader, key) == want, f"{key}: {field(reader, key)!r} != {want!r}")
    for key, want in [(f"{arch}.attention.layer_norm_rms_epsilon", config["rms_norm_eps"]),
                      (f"{arch}.rope.freq_base", theta)]:
        got = field(reader, key)
        check(got is not None and np.isclose(got, want, rtol=1e-6), f"{key}: {got!r} != {want!r}")
    for key in ["general.name", "general.file_type", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token"]:
        check(key in reader.fields, f"metadata key {key} missing")
    if rope.get("rope_type") == "linear":
        check(field(reader, f"{arch}.rope.scaling.type") == "linear", "rope.scaling.type missing")
        check(np.isclose(field(reader, f"{arch}.rope.scaling.factor"), rope["factor"]), "rope.scaling.factor")
    if rope.get("rope_type") == "llama3":
        check("rope_freqs.weight" in {t.name for t in reader.tensors}, "llama3 rope: rope_freqs.weight missing")

    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    vocab = dict(tok_json["model"]["vocab"])
    for t in tok_json.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
    check(len(tokens) == config["vocab_size"], f"{len(tokens)} tokens, vocab_size {config['vocab_size']}")
    bad = [tok for tok, i in vocab.items() if i >= len(tokens) or tokens[i] != tok]
    check(not bad, f"{len(bad)} tokens differ from tokenizer.json, e.g. {bad[:3]}")
    for t in tok_json.get("added_tokens", []):
        if t["special"]:
            check(types[t["id"]] == 3, f"special token {t['content']} is not CONTROL")
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"]["merges"]]
    check(field(reader, "tokenizer.ggml.merges") == merges, "merges differ from tokenizer.json")
    for name, key in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id")]:
        if isinstance(tok_config.get(name), str):
            got = field(reader, f"tokenizer.ggml.{key}")
            check(got == vocab[tok_config[name]], f"tokenizer.ggml.{key} {got} != {tok_config[name]}")
    template = tok_config.get("chat_template")
    if template is None and (model_dir / "chat_template.jinja").exists():
        template = (model_dir / "chat_template.jinja").read_text()
    if template is not None:
        check(field(reader, "tokenizer.chat_template") == template, "chat template differs")

    # Tensors.
    source = {}
    index = model_dir / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    for f in files:
        source.update(load_file(model_dir / f))
    tied = config.get("tie_word_embeddings", False)
    if tied:
        source.pop("lm_head.weight", None)
    by_name = {t.name: t for t in reader.tensors}
    main_types = set()
    worst = {}
    for hf, want in source.items():
        if hf.endswith("rotary_emb.inv_freq"):
            continue
        name = gguf_name(hf)
        t = by_name.pop(name, None)
        if t is None:
            errors.append(f"tensor {name} (from {hf}) missing")
            continue
        ty = Q(t.tensor_type)
        got = gguf.quants.dequantize(t.data, ty).reshape(want.shape).astype(np.float32)
        if arch == "llama" and ".q_proj." in hf:
            got = unpermute(got, heads)
        if arch == "llama" and ".k_proj." in hf:
            got = unpermute(got, kv_heads)
        if want.ndim == 1:
            check(ty == Q.F32, f"{name}: 1-D tensor stored as {ty.name}, expected F32")
        else:
            main_types.add(ty)
        ok, err = tolerance_ok(ty, got, want.astype(np.float32))
        worst[ty.name] = max(worst.get(ty.name, 0.0), err)
        check(ok, f"{name} ({ty.name}): max abs error {err:.3g} over tolerance")
    by_name.pop("rope_freqs.weight", None)
    check(not by_name, f"unexpected tensors in the GGUF: {sorted(by_name)[:5]}")
    check(not tied or "output.weight" not in {t.name for t in reader.tensors}, "tied model has output.weight")
    ftype = field(reader, "general.file_type")
    check(any(FILE_TYPES.get(ty) == ftype for ty in main_types), f"general.file_type {ftype} vs {main_types}")

    summary = f"{len(source)} tensors, max abs error by type {worst}"
    if with_transformers and not errors:
        summary += "; " + check_transformers(path, model_dir)
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(f"ok: {path.name}: {summary}")


def check_transformers(path, model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    ref_tok = AutoTokenizer.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    agree = total = 0
    for text in TEXTS:
        ids = ref_tok(text, return_tensors="pt").input_ids
        got_ids = tok(text, return_tensors="pt").input_ids
        check(torch.equal(ids, got_ids), f"transformers' GGUF tokenizer differs on {text[:30]!r}: "
              f"{got_ids.tolist()} vs {ids.tolist()}")
        with torch.no_grad():
            a = ref(ids).logits.argmax(-1)
            b = model(ids).logits.argmax(-1)
        agree += int((a == b).sum())
        total += a.numel()
    rate = agree / total
    check(rate >= 0.97, f"transformers on the GGUF: top-1 agreement {rate:.3f} < 0.97")
    return f"transformers top-1 agreement {rate:.4f} over {total} positions"


if __name__ == "__main__":
    main()

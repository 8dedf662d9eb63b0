#!/usr/bin/env python3
"""Build the fixtures of the families beyond Llama/Mistral/Qwen: Gemma 1/2/3 (and a tiny
multimodal Gemma 3), Phi-3 and SmolLM3.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_families.py [--out DIR] [--force]

DIR defaults to $LOAM_FIXTURES or ~/.cache/loam/fixtures and must already hold the model
fixtures (fixtures_models.py: SmolLM2's tokenizer, data/text.parquet). Writes DIR/families/,
a fixture root laid out like DIR itself (see scripts/oracle/README.md, "fixtures_families.py"):

  families/manifest.json                 every model, its switches, what it is checked with
  families/models/<name>/                tiny random models (float32), SmolLM2's tokenizer
  families/expected/<name>/logits.safetensors, eval_text.json, generate.json
  families/train/<case>/                 PEFT training references (fixtures_train.py's format)
  families/train/peft-trained/<case>/

Idempotent: DIR/families.stamp holds a hash of this file, fixtures_models.py,
fixtures_train.py, common.py, the reference package versions (peft included) and
DIR/models.stamp. Everything is built under DIR/.tmp-families-*/ and renamed into place;
the stamp is written last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402
import fixtures_models as fm  # noqa: E402
import fixtures_train as ft  # noqa: E402
from common import log  # noqa: E402

STAMP_NAME = "families.stamp"
OWNED = "families"
GENERATE_NEW_TOKENS = 24
# Raw prompts, long enough with the new tokens to pass every window (8) and LongRoPE's
# original length (12).
GENERATE_PROMPTS = [
    "The three primary colours are",
    "Habari ya asubuhi! Leo ni siku",
    "def fib(n):",
]

# Random but fixed LongRoPE factors (a real model's are learned; these only need to differ).
def _factors(n: int, seed: int, lo: float, hi: float) -> list[float]:
    import random

    r = random.Random(seed)
    return [round(lo + (hi - lo) * r.random(), 4) for _ in range(n)]


SHORT6, LONG6 = _factors(6, 1, 1.0, 1.5), _factors(6, 2, 1.5, 6.0)

# name, architecture, config (transformers 5 keyword arguments), the layout config.json is
# rewritten to, the attention transformers computes with, and what the model checks.
#   layout "t5": as transformers 5 saves it; "t4": the flat keys of most Hub checkpoints.
#   llama_cpp: the f32/f16 export is checked by llama.cpp itself (needs what llama.cpp can
#   express; see check_llama_cpp.py).
FAMILIES = [
    {
        "name": "gemma",
        "arch": "GemmaForCausalLM",
        "layout": "t4",
        "features": ["gemma_norm", "embed_scale", "gelu_tanh_legacy_hidden_act", "mqa", "tied",
                     "head_dim_16_x4_ne_48"],
        "cfg": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                    hidden_act="gelu", max_position_embeddings=4096, rms_norm_eps=1e-6,
                    tie_word_embeddings=True,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        # as google/gemma-2b's config.json: both keys, the legacy `gelu` in hidden_act
        "t4_extra": {"hidden_activation": "gelu_pytorch_tanh"},
        "llama_cpp": True,
    },
    {
        "name": "gemma2",
        "arch": "Gemma2ForCausalLM",
        "layout": "t5",
        "attn": "eager",  # Gemma 2 has no sdpa: sdpa cannot soft-cap
        "features": ["four_norms", "query_pre_attn_scalar_24", "attn_softcap_2", "final_softcap_10",
                     "sliding_even_layers_window_8", "gqa", "tied"],
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True,
                    query_pre_attn_scalar=24, sliding_window=8, attn_logit_softcapping=2.0,
                    final_logit_softcapping=10.0,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "llama_cpp": True,
    },
    {
        "name": "gemma3",
        "arch": "Gemma3ForCausalLM",
        "layout": "t5",
        "features": ["four_norms", "qk_gemma_norm", "query_pre_attn_scalar_32",
                     "layer_types_s_s_f_s_window_8", "rope_local_1e4", "rope_global_linear_8",
                     "gqa", "tied"],
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True,
                    query_pre_attn_scalar=32, sliding_window=8,
                    layer_types=["sliding_attention", "sliding_attention", "full_attention",
                                 "sliding_attention"],
                    rope_parameters={
                        "full_attention": {"rope_type": "linear", "factor": 8.0,
                                           "rope_theta": 1000000.0},
                        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
        "llama_cpp": True,
    },
    {
        "name": "gemma3-t4",
        "arch": "Gemma3ForCausalLM",
        "layout": "t4",
        "features": ["sliding_window_pattern_3", "rope_local_base_freq_2e4", "rope_scaling_linear_4",
                     "final_softcap_15", "untied", "config_t4_layout"],
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                    max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=False,
                    query_pre_attn_scalar=16, sliding_window=8, final_logit_softcapping=15.0,
                    layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                    rope_parameters={
                        "full_attention": {"rope_type": "linear", "factor": 4.0,
                                           "rope_theta": 100000.0},
                        "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0}}),
        "t4_pattern": 3,
        "llama_cpp": False,  # covered by `gemma3`; this one checks the v4 keys
    },
    {
        "name": "gemma3-mm",
        "arch": "Gemma3ForConditionalGeneration",
        "layout": "t5",
        "features": ["multimodal", "vision_tower", "text_config", "files_language_model.model",
                     "window_8", "tied"],
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                    max_position_embeddings=4096, rms_norm_eps=1e-6, query_pre_attn_scalar=16,
                    sliding_window=8, layer_types=["sliding_attention", "full_attention"]),
        "vision": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, image_size=32, patch_size=8),
        "llama_cpp": True,
    },
    {
        "name": "phi3",
        "arch": "Phi3ForCausalLM",
        "layout": "t5",
        "features": ["fused_qkv_gate_up", "partial_rotary_0.75", "longrope_original_12_max_48",
                     "gqa", "tied"],
        "cfg": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=48, original_max_position_embeddings=12,
                    rms_norm_eps=1e-5, tie_word_embeddings=True,
                    rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                     "partial_rotary_factor": 0.75,
                                     "short_factor": SHORT6, "long_factor": LONG6}),
        # llama.cpp picks LongRoPE's factors by context size (at least 256), not by the
        # sequence: phi3-longctx is the model it can be checked on
        "llama_cpp": False,
    },
    {
        "name": "phi3-longctx",
        "arch": "Phi3ForCausalLM",
        "layout": "t4",
        "features": ["fused_qkv_gate_up", "partial_rotary_0.75", "longrope_su_original_256_max_1024",
                     "untied", "config_t4_layout"],
        "cfg": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4,
                    max_position_embeddings=1024, original_max_position_embeddings=256,
                    rms_norm_eps=1e-5, tie_word_embeddings=False,
                    rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                     "partial_rotary_factor": 0.75,
                                     "short_factor": SHORT6, "long_factor": LONG6}),
        "t4_rope_type": "su",
        "llama_cpp": True,
    },
    {
        "name": "phi3-mini",
        "arch": "Phi3ForCausalLM",
        "layout": "t4",
        "features": ["fused_qkv_gate_up", "sliding_window_8", "rope_default", "untied",
                     "config_t4_layout"],
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4,
                    max_position_embeddings=4096, original_max_position_embeddings=4096,
                    rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=8,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        # llama.cpp runs Phi-3 without its sliding window
        "llama_cpp": False,
    },
    {
        "name": "smollm3",
        "arch": "SmolLM3ForCausalLM",
        "layout": "t5",
        "features": ["nope_every_4th_layer", "gqa", "tied"],
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                    rms_norm_eps=1e-6, tie_word_embeddings=True, no_rope_layer_interval=4,
                    rope_parameters={"rope_type": "default", "rope_theta": 2000000.0}),
        "llama_cpp": True,
    },
    {
        "name": "smollm3-swa",
        "arch": "SmolLM3ForCausalLM",
        "layout": "t4",
        "features": ["no_rope_layers_1_0_1", "nope_layers_slide_window_8", "untied",
                     "config_t4_layout"],
        "cfg": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                    rms_norm_eps=1e-6, tie_word_embeddings=False, no_rope_layers=[1, 0, 1],
                    use_sliding_window=True, sliding_window=8,
                    rope_parameters={"rope_type": "default", "rope_theta": 2000000.0}),
        # llama.cpp's smollm3 hard-codes NoPE on every 4th layer and has no window
        "llama_cpp": False,
    },
]

# PEFT training references (fixtures_train.py's build_case), on the new families.
GEMMA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PHI3_ALL = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
TRAIN_CASES = [
    {"name": "gemma3-lora", "base": "models/gemma3", "r": 4, "alpha": 8, "use_rslora": False,
     "use_dora": False, "targets": GEMMA_ALL, "max_grad_norm": 1.0},
    {"name": "gemma3-rslora", "base": "models/gemma3", "r": 4, "alpha": 8, "use_rslora": True,
     "use_dora": False, "targets": ["q_proj", "v_proj"], "max_grad_norm": 1.0},
    {"name": "gemma3-dora", "base": "models/gemma3", "r": 4, "alpha": 8, "use_rslora": False,
     "use_dora": True, "targets": ["q_proj", "v_proj", "down_proj"], "max_grad_norm": 1.0},
    {"name": "gemma3-pissa", "base": "models/gemma3", "r": 4, "alpha": 8, "use_rslora": False,
     "use_dora": False, "targets": ["q_proj", "o_proj", "up_proj"], "max_grad_norm": 1.0,
     "init": "pissa"},
    {"name": "phi3-lora", "base": "models/phi3", "r": 4, "alpha": 8, "use_rslora": False,
     "use_dora": False, "targets": PHI3_ALL, "max_grad_norm": 1.0},
    {"name": "phi3-rslora", "base": "models/phi3", "r": 4, "alpha": 8, "use_rslora": True,
     "use_dora": False, "targets": ["qkv_proj"], "max_grad_norm": 1.0},
    {"name": "phi3-dora", "base": "models/phi3", "r": 4, "alpha": 8, "use_rslora": False,
     "use_dora": True, "targets": ["qkv_proj", "down_proj"], "max_grad_norm": 1.0},
    {"name": "phi3-pissa", "base": "models/phi3", "r": 4, "alpha": 8, "use_rslora": False,
     "use_dora": False, "targets": ["qkv_proj", "gate_up_proj"], "max_grad_norm": 1.0,
     "init": "pissa"},
    {"name": "gemma2-lora", "base": "models/gemma2", "attn": "eager", "r": 4, "alpha": 8,
     "use_rslora": False, "use_dora": False, "targets": GEMMA_ALL, "max_grad_norm": 1.0},
    {"name": "gemma-lora", "base": "models/gemma", "r": 4, "alpha": 8, "use_rslora": False,
     "use_dora": False, "targets": ["q_proj", "v_proj", "down_proj"], "max_grad_norm": 1.0},
    {"name": "smollm3-lora", "base": "models/smollm3-swa", "r": 4, "alpha": 8,
     "use_rslora": False, "use_dora": False, "targets": GEMMA_ALL, "max_grad_norm": 1.0},
]


def attention_for(model_dir: Path) -> str:
    """The attention transformers computes a model with: `sdpa`, but `eager` for Gemma 2,
    whose soft-capped scores sdpa cannot compute (transformers refuses it)."""
    cfg = common.read_json(Path(model_dir) / "config.json")
    model_type = cfg.get("text_config", cfg).get("model_type", cfg.get("model_type"))
    return "eager" if model_type == "gemma2" else "sdpa"


def compute_stamp(out_dir: Path) -> str:
    h = hashlib.sha256()
    h.update(common.source_stamp([Path(__file__).resolve(), HERE / "common.py",
                                  HERE / "fixtures_models.py", HERE / "fixtures_train.py"]).encode())
    h.update(json.dumps(ft.stamp_packages(), sort_keys=True).encode())
    try:
        h.update((out_dir / fm.STAMP_NAME).read_bytes())
    except OSError:
        h.update(b"no models stamp")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------

def init_weights(model, name: str, gemma: bool) -> None:
    """Deterministic, deliberately large init (as fixtures_models.init_tiny) for every
    parameter, the vision tower's too. Gemma's norms store w of `(1 + w)`: centred on 0."""
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    text = model.config.get_text_config()
    hidden = text.hidden_size
    tied = getattr(model.config, "tie_word_embeddings", False)
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            language = "vision" not in pname and "multi_modal" not in pname
            if pname.endswith("norm.weight") and language:
                val = (0.0 if gemma else 1.0) + 0.2 * torch.randn(p.shape, generator=g)
            elif "norm" in pname and pname.endswith(".weight"):  # vision LayerNorms
                val = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
            elif pname.endswith("bias"):
                val = 0.2 * torch.randn(p.shape, generator=g)
            elif pname.endswith("embed_tokens.weight"):
                std = 3.0 / math.sqrt(hidden) if tied else 1.0
                val = std * torch.randn(p.shape, generator=g)
            elif pname == "lm_head.weight":
                val = (3.0 / math.sqrt(hidden)) * torch.randn(p.shape, generator=g)
            elif p.ndim >= 2 or pname.endswith("projection_weight"):
                val = 0.2 * torch.randn(p.shape, generator=g)
            else:
                raise ValueError(f"no init rule for {pname}")
            p.copy_(val)


def make_model(spec: dict):
    import torch
    import transformers

    cls = getattr(transformers, spec["arch"])
    common_ids = dict(vocab_size=fm.VOCAB, bos_token_id=fm.BOS_ID, eos_token_id=fm.EOS_ID,
                      pad_token_id=fm.PAD_ID)
    if spec["arch"] == "Gemma3ForConditionalGeneration":
        from transformers import Gemma3Config

        cfg = Gemma3Config(text_config={**common_ids, **spec["cfg"]},
                           vision_config=spec["vision"], mm_tokens_per_image=4)
    else:
        cfg = cls.config_class(**common_ids, **spec["cfg"])
    cfg.architectures = [spec["arch"]]
    torch.manual_seed(0)
    model = cls(cfg)
    init_weights(model, spec["name"], spec["arch"].startswith("Gemma"))
    return model.eval()


def to_t4(spec: dict, cd: dict) -> dict:
    """The transformers-4 layout of a saved config: flat rope keys (Gemma 3: rope_theta,
    rope_local_base_freq, rope_scaling; sliding_window_pattern for layer_types), torch_dtype."""
    extra = dict(spec.get("t4_extra", {}))
    if spec["arch"] == "Gemma3ForCausalLM":
        rp = cd.pop("rope_parameters")
        full, local = dict(rp["full_attention"]), rp["sliding_attention"]
        extra["rope_theta"] = full.pop("rope_theta")
        extra["rope_local_base_freq"] = local["rope_theta"]
        extra["rope_scaling"] = None if full.get("rope_type") == "default" else full
        extra["sliding_window_pattern"] = spec["t4_pattern"]
        cd.pop("_sliding_window_pattern", None)
    if spec["arch"] == "Phi3ForCausalLM":
        rp = dict(cd.pop("rope_parameters"))
        extra["rope_theta"] = rp.pop("rope_theta")
        extra["partial_rotary_factor"] = rp.pop("partial_rotary_factor", 1.0)
        if rp.get("rope_type", "default") == "default":
            extra["rope_scaling"] = None
        else:
            # (original_max_position_embeddings stays in it too: transformers 5 validates
            # a legacy `su` before its top-level value is copied in)
            if "t4_rope_type" in spec:
                rp.pop("rope_type")
                rp["type"] = spec["t4_rope_type"]
            extra["rope_scaling"] = rp
    return fm.to_t4_layout(cd, extra)


def check_layers(spec: dict, m) -> None:
    """transformers read the rewritten config as intended: layer types, NoPE layers."""
    text = m.config.get_text_config()
    want = spec["cfg"].get("layer_types")
    if want is not None:
        assert list(text.layer_types) == want, (spec["name"], text.layer_types, want)
    if "no_rope_layers" in spec["cfg"]:
        assert list(text.no_rope_layers) == spec["cfg"]["no_rope_layers"]


def build_model(spec: dict, root: Path, tok_dir: Path, tok, texts: list[str], report: dict) -> dict:
    import torch
    from safetensors import safe_open

    name, arch = spec["name"], spec["arch"]
    attn = spec.get("attn", "sdpa")
    model = make_model(spec)
    mdir = root / "models" / name
    model.save_pretrained(mdir)
    for fn in fm.TOKENIZER_FILES:
        if (tok_dir / fn).is_file():
            shutil.copy2(tok_dir / fn, mdir / fn)
    cpath = mdir / "config.json"
    cd = common.read_json(cpath)
    if spec["layout"] == "t4":
        common.write_json(cpath, to_t4(spec, cd))

    with safe_open(mdir / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    m = fm.load_from_disk(mdir, torch.float32, attn=attn)
    assert type(m).__name__ == arch, type(m).__name__
    check_layers(spec, m)
    ids = fm.tiny_input_ids(tok)
    ld = fm.forward_logits(m, ids)
    assert float((ld - fm.forward_logits(model, ids)).abs().max()) == 0.0, "disk != memory"
    del model
    models = {"bf16": fm.load_from_disk(mdir, torch.bfloat16, attn=attn),
              "bf16_eager": fm.load_from_disk(mdir, torch.bfloat16, attn="eager"),
              "f16": fm.load_from_disk(mdir, torch.float16, attn=attn)}
    exp = root / "expected" / name
    out = fm.write_expected(exp, name, ld, models, ids, torch.zeros(1),
                            f"{fm.TINY_T} tokens x 2 rows as fixtures_models.py; attention {attn}")
    del models
    ev = common.eval_text_loss(m, tok, texts, 64)
    common.write_eval_json(exp / "eval_text.json", ev)
    common.write_json(exp / "generate.json", generations(m, tok))
    stats = fm.logits_stats(out["logits_f32"], ids)
    stats.update(eval_loss_seq64=ev["loss"], max_abs_logit=float(out["logits_f32"].abs().max()),
                 bf16_max_abs_diff=float((out["logits_bf16"] - out["logits_f32"]).abs().max()))
    assert stats["mean_max_prob"] > 100.0 / fm.VOCAB, stats
    log(f"{name}: {arch}; mean max prob {stats['mean_max_prob']:.3f}, eval loss {ev['loss']:.3f}, "
        f"bf16 diff {stats['bf16_max_abs_diff']:.2g}")
    report["stats"][name] = stats
    entry = {"name": name, "dir": f"models/{name}", "expected": f"expected/{name}",
             "architecture": arch, "features": spec["features"], "config_layout": spec["layout"],
             "attention": attn, "llama_cpp": spec["llama_cpp"],
             "logits_shape": list(out["logits_f32"].shape), "eval": ["eval_text.json"],
             "weights": ["model.safetensors"],
             "vision_tensors": sorted(k for k in keys if not k.startswith("language_model"))
             if spec.get("vision") else []}
    del m
    return entry


def renamed_multimodal(src: dict, root: Path) -> dict:
    """The multimodal model with its files named as transformers 5's module tree
    (`model.language_model.*`, `model.vision_tower.*`): transformers loads both layouts,
    so the expected outputs are the source's (checked bitwise here)."""
    import torch
    from safetensors.torch import load_file, save_file

    name = src["name"] + "-v5names"
    sdir, mdir = root / src["dir"], root / "models" / name
    shutil.copytree(sdir, mdir)
    tensors = load_file(str(sdir / "model.safetensors"))
    renamed = {}
    for k, v in tensors.items():
        if k.startswith("language_model.model."):
            k = "model.language_model." + k[len("language_model.model."):]
        elif k.startswith(("vision_tower.", "multi_modal_projector.")):
            k = "model." + k
        renamed[k] = v.contiguous()
    save_file(renamed, str(mdir / "model.safetensors"), metadata={"format": "pt"})
    m = fm.load_from_disk(mdir, torch.float32)
    want = load_file(str(root / src["expected"] / "logits.safetensors"))
    got = fm.forward_logits(m, want["input_ids"])
    assert torch.equal(got, want["logits_f32"]), "renamed checkpoint computes differently"
    shutil.copytree(root / src["expected"], root / "expected" / name)
    entry = dict(src, name=name, dir=f"models/{name}", expected=f"expected/{name}",
                 features=src["features"][:3] + ["files_model.language_model"], llama_cpp=False,
                 vision_tensors=sorted(k for k in renamed if "language_model" not in k))
    log(f"{name}: same logits as {src['name']} with model.language_model.* names")
    return entry


def generations(model, tok) -> dict:
    """Greedy `generate` (KV cache; transformers' sliding-window caches) after raw prompts."""
    out = []
    for prompt in GENERATE_PROMPTS:
        ids = tok(prompt)["input_ids"]
        out.append({"prompt": prompt, "prompt_ids": ids,
                    **common.greedy(model, ids, [fm.EOS_ID], GENERATE_NEW_TOKENS)})
    return {"max_new_tokens": GENERATE_NEW_TOKENS, "generations": out}


# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------

def build(out_dir: Path, root: Path, threads: int) -> dict:
    import torch
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    fm.set_threads(threads)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}")
    main = common.read_json(out_dir / "manifest.json")
    tok_dir = out_dir / main["tokenizer"]
    tok = AutoTokenizer.from_pretrained(tok_dir)
    texts = fm.read_text_parquet(out_dir / main["data"]["text"])
    report = {"stats": {}}
    entries = []
    for spec in FAMILIES:
        entries.append(build_model(spec, root, tok_dir, tok, texts, report))
        if spec["arch"] == "Gemma3ForConditionalGeneration":
            entries.append(renamed_multimodal(entries[-1], root))
    manifest = {"generated_by": "scripts/oracle/fixtures_families.py",
                "versions": ft.stamp_packages(), "tokenizer": str(tok_dir),
                "data": {"text": str(out_dir / main["data"]["text"])}, "models": entries}
    common.write_json(root / "manifest.json", manifest)
    # the training references read their base models from this (not yet installed) root
    ft.build_train_cases(TRAIN_CASES, root, root, tok, texts)
    common.write_json(root / "expected" / "families_report.json", report)
    return manifest


def complete(root: Path) -> bool:
    try:
        manifest = common.read_json(root / "manifest.json")
    except (OSError, ValueError):
        return False
    return all((root / m["expected"] / f).is_file() for m in manifest["models"]
               for f in ("logits.safetensors", "eval_text.json", "generate.json")) and \
        all((root / "train" / c["name"] / "expected.safetensors").is_file() for c in TRAIN_CASES)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    out_dir = (args.out or common.default_out_dir()).expanduser().resolve()
    if not (out_dir / fm.STAMP_NAME).is_file():
        print(f"error: {out_dir} has no model fixtures; run fixtures_models.py first",
              file=sys.stderr)
        return 1
    stamp_file = out_dir / STAMP_NAME
    stamp = compute_stamp(out_dir)
    if not args.force and common.stamp_matches(stamp_file, stamp) and complete(out_dir / OWNED):
        print(f"family fixtures up to date: {out_dir / OWNED} (stamp {stamp[:12]})")
        return 0
    t0 = time.monotonic()
    log(f"building family fixtures in {out_dir / OWNED}")
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-families-", dir=out_dir))
    try:
        build(out_dir, tmp / OWNED, args.threads)
        common.replace_path(tmp / OWNED, out_dir / OWNED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp_file.write_text(stamp + "\n")
    size = sum(s for _, s in common.tree_listing(out_dir / OWNED))
    log(f"done in {time.monotonic() - t0:.0f}s; {OWNED}/ {common.human(size)}; stamp {stamp[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

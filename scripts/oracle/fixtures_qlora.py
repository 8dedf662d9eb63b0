#!/usr/bin/env python3
"""Reference fixtures for loam's 4-bit (QLoRA) bases, made with bitsandbytes + transformers + PEFT.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_qlora.py [--out DIR] [--force]

DIR (default $LOAM_FIXTURES or ~/.cache/loam/fixtures) must hold the model fixtures
(fixtures_models.py). Writes DIR/qlora/ (layout in scripts/oracle/README.md):

  tensors.safetensors / tensors.json   bitsandbytes' quantize_4bit of crafted tensors (NF4 and
                                       FP4, with and without double quantization, ragged last
                                       blocks, exact ties) and their dequantization
  models/<name>-bnb-<type>/            tiny fixture models loaded with BitsAndBytesConfig and
                                       saved by transformers: published-style 4-bit directories
  expected/<name>-bnb-<type>/eval_text.json   loam's eval contract on them (f32 compute)
  manifest.json "generate"             transformers' greedy generation on two of them
  train/<case>/                        3 QLoRA steps of PEFT + bitsandbytes on a 4-bit base
                                       (the layout of fixtures_train.py's cases)
  manifest.json

bitsandbytes 0.50 runs its 4-bit kernels on the CPU, with two traps this script switches
off: its C++ `dequantize_4bit` is wrong on AVX-512 CPUs when a row's length is not a
multiple of 64 (its portable PyTorch kernel is used instead, uncompiled), and on AVX-512
bf16 CPUs `Linear4bit` repacks its weight at the first inference forward and then asserts
`out_features % 32 == 0` (turned off per module). Every 4-bit weight is also decoded
independently from the saved bytes (numpy) and must equal the oracle's dequantization.

Idempotent: DIR/qlora.stamp holds a hash of this script, fixtures_train.py,
fixtures_models.py, common.py, the package versions (bitsandbytes, peft included) and
DIR/models.stamp. Built under DIR/.tmp-qlora-*/, renamed into place, stamp written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
import zlib
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402
import fixtures_models  # noqa: E402  (stdlib-only at import time)
import fixtures_train  # noqa: E402  (stdlib-only at import time)
from common import log  # noqa: E402

STAMP_NAME = "qlora.stamp"
EVAL_SEQ_LEN = 64

# (name, shape, dtype, quant_type, double_quant): what each covers is in its name.
TENSOR_CASES = [
    ("nf4-f32-dq-rows40", (48, 40), "float32", "nf4", True),       # rows not a multiple of 64
    ("nf4-f32-dq-ragged", (37, 29), "float32", "nf4", True),       # short last block, odd count
    ("nf4-f32-plain-ragged", (37, 29), "float32", "nf4", False),
    ("nf4-bf16-dq", (96, 160), "bfloat16", "nf4", True),
    ("nf4-f16-plain", (64, 64), "float16", "nf4", False),
    ("nf4-f32-dq-nested-ragged", (300, 260), "float32", "nf4", True),  # 1219 blocks: 5 nested
    ("fp4-f32-dq-rows40", (48, 40), "float32", "fp4", True),
    ("fp4-f32-plain-ragged", (37, 29), "float32", "fp4", False),
    ("nf4-f32-ties", (5, 60), "float32", "nf4", False),            # values on the midpoints
    ("nf4-f32-ties-dq", (5, 60), "float32", "nf4", True),
    ("fp4-f32-ties", (5, 60), "float32", "fp4", False),
]

# 4-bit models: (name, source fixture, quant_type, double_quant, storage, skip_modules).
MODEL_CASES = [
    ("llama-gqa-bnb-nf4", "llama-gqa", "nf4", True, "uint8", None),
    ("llama-mqa-tied-bnb-nf4", "llama-mqa-tied", "nf4", True, "uint8", None),
    ("mistral-bnb-nf4", "mistral", "nf4", True, "uint8", None),
    ("qwen2-bnb-nf4", "qwen2", "nf4", True, "uint8", None),
    ("qwen3-bnb-nf4-bf16-storage", "qwen3", "nf4", True, "bfloat16", None),
    ("llama-gqa-bnb-fp4", "llama-gqa", "fp4", False, "uint8", None),
    # an explicit skip list replaces transformers' default one, so lm_head is quantized too
    ("llama-gqa-bnb-nf4-skip", "llama-gqa", "nf4", True, "uint8", ["mlp.down_proj"]),
]

# greedy generation on 4-bit models: (model, raw prompt)
GENERATE = [("llama-gqa-bnb-nf4", "The quick brown fox"), ("qwen2-bnb-nf4", "Bore da, sut")]
MAX_NEW_TOKENS = 12

TRAIN_BASE = "llama-gqa-bnb-nf4"
TRAIN_CASES = [
    {"name": "qlora-lora", "r": 4, "alpha": 8, "use_rslora": False, "use_dora": False,
     "targets": fixtures_train.ALL_LINEAR, "max_grad_norm": 1.0},
    {"name": "qlora-dora", "r": 4, "alpha": 8, "use_rslora": False, "use_dora": True,
     "targets": ["q_proj", "v_proj", "down_proj"], "max_grad_norm": 1.0},
]


def stamp_packages() -> dict[str, str]:
    v = common.package_versions()
    for name in ("peft", "bitsandbytes", "accelerate"):
        try:
            v[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            v[name] = "absent"
    return v


def compute_stamp(out_dir: Path) -> str:
    h = hashlib.sha256()
    h.update(common.source_stamp([Path(__file__).resolve(), HERE / "common.py",
                                  HERE / "fixtures_models.py",
                                  HERE / "fixtures_train.py"]).encode())
    h.update(json.dumps(stamp_packages(), sort_keys=True).encode())
    try:
        h.update((out_dir / fixtures_models.STAMP_NAME).read_bytes())
    except OSError:
        h.update(b"no models stamp")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# the oracle: bitsandbytes with its two CPU traps switched off
# ---------------------------------------------------------------------------------------

def portable_dequantize():
    """bitsandbytes' portable dequantize_4bit (backends/default), without torch.compile."""
    from bitsandbytes.backends.default import ops as default_ops

    fn = default_ops._dequantize_4bit_compute
    return getattr(fn, "__wrapped__", fn)


def patch_bitsandbytes() -> None:
    import torch
    from bitsandbytes.backends.utils import _get_4bit_code

    compute = portable_dequantize()

    @torch.library.register_kernel("bitsandbytes::dequantize_4bit", "cpu")
    def _(A, absmax, blocksize, quant_type, shape, dtype):
        if A.dtype != torch.uint8:
            A = A.view(torch.uint8)
        return compute(A.reshape(-1), absmax, _get_4bit_code(quant_type, A.device), blocksize,
                       shape, dtype)


def disable_cpu_repacking(model) -> int:
    import bitsandbytes as bnb

    n = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


def absmax_f32(state):
    """The f32 absmax of a QuantState, as bitsandbytes' dequantize_4bit computes it."""
    import bitsandbytes.functional as F

    if state.nested:
        return F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    return state.absmax


def numpy_decode(packed, absmax, code, blocksize, n, nested=None):
    """An independent decode of bitsandbytes' bytes: high nibble first, code · absmax."""
    import numpy as np

    f32 = np.float32
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    codes = np.empty(packed.size * 2, np.uint8)
    codes[0::2], codes[1::2] = packed >> 4, packed & 15
    codes = codes[:n]
    absmax = np.asarray(absmax)
    if nested is not None:
        code8, nested_absmax, nested_block, offset = nested
        blocks = np.arange(absmax.size) // nested_block
        absmax = (code8[absmax] * nested_absmax[blocks]).astype(f32) + f32(offset)
    scale = np.repeat(absmax.astype(f32), blocksize)[:n]
    return (np.asarray(code, f32)[codes] * scale).astype(f32)


# ---------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------

def crafted_ties(quant_type: str, shape):
    """Blocks whose absmax is exactly 1 and whose other values sit exactly on the midpoints
    between codes (so scaling changes nothing and each is a tie), the codes themselves, ±0;
    an all-zero block; tiny values; and an all-zero ragged tail (absmax stored as 1e-38)."""
    import torch
    from bitsandbytes.functional import get_4bit_type

    code = get_4bit_type(quant_type, device="cpu")
    s = torch.sort(code).values
    mid = (s[:-1] + s[1:]) / 2
    n = shape[0] * shape[1]
    g = torch.Generator().manual_seed(7)
    first = torch.cat([torch.tensor([1.0]), mid, s, torch.tensor([-0.0, 0.0])])
    first = torch.cat([first, torch.rand(64 - first.numel(), generator=g) * 2 - 1])
    third = torch.cat([torch.tensor([-1.0]), -mid, mid[:8]])
    third = torch.cat([third, torch.rand(64 - third.numel(), generator=g) * 2 - 1])
    blocks = [first, torch.zeros(64), third, torch.randn(64, generator=g) * 1e-30]
    flat = torch.cat(blocks + [torch.zeros(n - 4 * 64)])
    return flat.reshape(shape)


def tensor_input(name, shape, dtype):
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if "ties" in name:
        w = crafted_ties(name.split("-")[0], shape)
    else:
        # rows of different scales, so the absmax values (and their double quantization) vary
        w = torch.randn(shape, generator=g) * torch.exp(torch.randn(shape[0], 1, generator=g))
    return w.to(getattr(torch, dtype))


def build_tensors(tmp: Path) -> list[dict]:
    import numpy as np
    import torch
    import bitsandbytes.functional as F
    from bitsandbytes.backends.utils import _get_4bit_code
    from safetensors.torch import save_file

    compute = portable_dequantize()
    out, cases = {}, []
    for name, shape, dtype, quant_type, dq in TENSOR_CASES:
        w = tensor_input(name, shape, dtype)
        packed, state = F.quantize_4bit(w, blocksize=64, compress_statistics=dq,
                                        quant_type=quant_type)
        n = w.numel()
        absmax = absmax_f32(state)
        code = _get_4bit_code(quant_type, w.device)
        deq = {}
        for key, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            deq[key] = compute(packed.reshape(-1), absmax, code, 64, state.shape, dt)
        nested = None
        if dq:
            nested = (state.state2.code.numpy(), state.state2.absmax.numpy(),
                      state.state2.blocksize, float(state.offset))
        mine = numpy_decode(packed.numpy(), state.absmax.numpy(), state.code.numpy(), 64, n,
                            nested)
        assert np.array_equal(mine, deq["f32"].reshape(-1).numpy()), f"{name}: decode differs"
        cpp = F.dequantize_4bit(packed, state)  # bitsandbytes' CPU kernel, in state.dtype
        same_dtype = compute(packed.reshape(-1), absmax, code, 64, state.shape, state.dtype)
        err = float((deq["f32"] - w.float()).abs().max() / w.float().abs().max().clamp(min=1e-30))
        t = {f"{name}.input": w.contiguous(), f"{name}.packed": packed.reshape(-1).contiguous(),
             f"{name}.absmax": state.absmax.contiguous(), f"{name}.quant_map": state.code,
             f"{name}.dequant_f32": deq["f32"].contiguous(),
             f"{name}.dequant_bf16": deq["bf16"].contiguous()}
        if dq:
            t[f"{name}.nested_absmax"] = state.state2.absmax.contiguous()
            t[f"{name}.nested_quant_map"] = state.state2.code.contiguous()
            t[f"{name}.offset"] = state.offset.reshape(1).float().contiguous()
        out.update(t)
        cases.append({"name": name, "shape": list(shape), "dtype": dtype,
                      "quant_type": quant_type, "double_quant": dq, "blocksize": 64,
                      "numel": n, "max_rel_error": err,
                      "cpp_kernel_max_diff": float((cpp.float() - same_dtype.float()).abs().max())})
        log(f"tensor {name}: {shape} {dtype} {quant_type}{' dq' if dq else ''}: "
            f"round-trip error {err:.4f} of max |w|; CPU C++ kernel vs portable "
            f"{cases[-1]['cpp_kernel_max_diff']:.3g}")
    save_file(out, str(tmp / "qlora" / "tensors.safetensors"))
    common.write_json(tmp / "qlora" / "tensors.json", {"cases": cases})
    return cases


# ---------------------------------------------------------------------------------------
# 4-bit models
# ---------------------------------------------------------------------------------------

def bnb_config(quant_type, dq, storage, skip):
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                              bnb_4bit_use_double_quant=dq,
                              bnb_4bit_compute_dtype=torch.float32,
                              bnb_4bit_quant_storage=getattr(torch, storage),
                              llm_int8_skip_modules=skip)


def load_4bit(path: Path, config=None):
    """A 4-bit model in f32 compute on the CPU: `config` quantizes a 16-bit dir at load,
    without it `path` is a saved 4-bit dir."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"quantization_config": config} if config is not None else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                 attn_implementation="sdpa", device_map="cpu",
                                                 **kwargs)
    n = disable_cpu_repacking(model)
    assert n > 0, f"{path}: no Linear4bit"
    model.eval()
    return model


def check_weights_decode(model) -> int:
    """Every Linear4bit: the numpy decode of its bytes equals the oracle's dequantization."""
    import numpy as np
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    n = 0
    for name, m in model.named_modules():
        if not isinstance(m, bnb.nn.Linear4bit):
            continue
        st = m.weight.quant_state
        nested = None
        if st.nested:
            nested = (st.state2.code.numpy(), st.state2.absmax.numpy(), st.state2.blocksize,
                      float(st.offset))
        packed = m.weight.data.view(__import__("torch").uint8).numpy()
        mine = numpy_decode(packed, st.absmax.numpy(), st.code.numpy(), st.blocksize,
                            int(np.prod(st.shape)), nested)
        theirs = F.dequantize_4bit(m.weight.data, st).float().reshape(-1).numpy()
        assert np.array_equal(mine, theirs), f"{name}: decode differs"
        n += 1
    return n


def copy_side_files(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        if f.is_file() and f.name != "config.json" and not f.name.startswith("model"):
            if not (dst / f.name).exists():
                shutil.copy2(f, dst / f.name)


def build_models(out_dir: Path, tmp: Path, tok, texts) -> list[dict]:
    entries = []
    for name, source, quant_type, dq, storage, skip in MODEL_CASES:
        src = out_dir / "models" / source
        model = load_4bit(src, bnb_config(quant_type, dq, storage, skip))
        n = check_weights_decode(model)
        ev = common.eval_text_loss(model, tok, texts, EVAL_SEQ_LEN)
        rel = Path("qlora") / "models" / name
        model.save_pretrained(tmp / rel)
        copy_side_files(src, tmp / rel)
        del model
        reloaded = load_4bit(tmp / rel)
        again = common.eval_text_loss(reloaded, tok, texts, EVAL_SEQ_LEN)
        assert abs(again["loss"] - ev["loss"]) <= 1e-6 * ev["loss"], (name, again, ev)
        lm_head_4bit = type(reloaded.lm_head).__name__ == "Linear4bit"
        del reloaded
        exp = Path("qlora") / "expected" / name
        common.write_eval_json(tmp / exp / "eval_text.json", ev)
        base_loss = common.read_json(out_dir / "expected" / source / "eval_text.json")["loss"]
        entries.append({"name": name, "dir": str(rel), "expected": str(exp), "source": source,
                        "quant_type": quant_type, "double_quant": dq, "storage": storage,
                        "skip_modules": skip, "lm_head_4bit": lm_head_4bit,
                        "quantized_linears": n})
        log(f"model {name}: {n} Linear4bit{' + lm_head' if lm_head_4bit else ''}; eval loss "
            f"{ev['loss']:.6f} (16-bit source {base_loss:.6f})")
    return entries


def build_generations(tmp: Path, tok) -> list[dict]:
    """transformers' greedy `generate` on saved 4-bit models, as `loam generate --raw
    --json` reports it (new ids without the stop token)."""
    from transformers import GenerationConfig

    out = []
    for name, prompt in GENERATE:
        d = tmp / "qlora" / "models" / name
        model = load_4bit(d)
        gen = GenerationConfig.from_pretrained(d)
        stop = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
        ids = tok(prompt)["input_ids"]
        g = common.greedy(model, ids, stop, MAX_NEW_TOKENS)
        out.append({"model": f"qlora/models/{name}", "prompt": prompt, "prompt_ids": ids,
                    **g, "max_new_tokens": MAX_NEW_TOKENS})
        log(f"generate {name} {prompt!r}: {g['ids']} ({g['decided']} decided)")
        del model
    return out


# ---------------------------------------------------------------------------------------
# QLoRA training steps (PEFT + bitsandbytes), in fixtures_train.py's case layout
# ---------------------------------------------------------------------------------------

def train_case(case: dict, tmp: Path) -> dict:
    import torch
    from peft import PeftModel, get_peft_model
    from safetensors.torch import save_file
    from transformers import get_cosine_schedule_with_warmup

    ft = fixtures_train
    name = case["name"]
    base_rel = f"qlora/models/{TRAIN_BASE}"
    base_dir = tmp / base_rel
    seed = zlib.crc32(name.encode())
    cdir = tmp / "qlora" / "train" / name
    cdir.mkdir(parents=True)

    torch.manual_seed(seed)
    model = get_peft_model(load_4bit(base_dir), ft.lora_config(case))
    g = torch.Generator().manual_seed(seed ^ 0x5EED)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if ".lora_B." in n:
                p.add_(ft.INIT_B_STD * torch.randn(p.shape, generator=g))
            elif ".lora_magnitude_vector." in n:
                p.mul_(1.0 + ft.MAGNITUDE_JITTER * torch.randn(p.shape, generator=g))
    init = {k: p.detach().clone() for k, p in ft.trainable(model)}
    model.save_pretrained(cdir / "adapter_init")
    del model

    model = PeftModel.from_pretrained(load_4bit(base_dir), cdir / "adapter_init",
                                      is_trainable=True)
    disable_cpu_repacking(model)
    params = ft.trainable(model)
    assert [k for k, _ in params] == list(init)
    model.train()
    batches = ft.make_batches(seed ^ 0xBA7C)
    opt = torch.optim.AdamW([p for _, p in params], lr=ft.LR, betas=ft.BETAS, eps=ft.EPS,
                            weight_decay=ft.WEIGHT_DECAY)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=ft.WARMUP,
                                            num_training_steps=ft.STEPS)
    max_norm = case["max_grad_norm"]
    losses, norms, lrs, clipped, counts, grad0 = [], [], [], [], [], {}
    for s in range(ft.STEPS):
        n_tgt = sum(int((ft.targets(b) != ft.IGNORE).sum()) for b in batches[s])
        total = 0.0
        for b in batches[s]:
            nll = ft.micro_nll(model, b)
            (nll / n_tgt).backward()
            total += float(nll.detach())
        if s == 0:
            for k, p in params:
                assert p.grad is not None and float(p.grad.abs().max()) > 0, k
            grad0 = {k: p.grad.detach().clone() for k, p in params}
        norm = float(torch.nn.utils.clip_grad_norm_([p for _, p in params], max_norm=max_norm))
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(total / n_tgt)
        norms.append(norm)
        clipped.append(norm > max_norm)
        counts.append(n_tgt)

    expected = {f"step0.grad.{k}": v for k, v in grad0.items()}
    expected.update({f"init.{k}": v for k, v in init.items()})
    expected.update({f"final.{k}": p.detach().clone() for k, p in params})
    expected["losses"] = torch.tensor(losses, dtype=torch.float64)
    expected["grad_norms"] = torch.tensor(norms, dtype=torch.float64)
    expected["lrs"] = torch.tensor(lrs, dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in expected.items()},
              str(cdir / "expected.safetensors"))
    save_file({f"s{s}.m{m}.{k}": v.contiguous() for s, micros in enumerate(batches)
               for m, b in enumerate(micros) for k, v in b.items()},
              str(cdir / "batches.safetensors"))
    common.write_json(cdir / "case.json", {
        "base": base_rel, "r": case["r"], "alpha": case["alpha"],
        "use_rslora": case["use_rslora"], "use_dora": case["use_dora"],
        "targets": list(case["targets"]), "init": "default", "lr": ft.LR,
        "weight_decay": ft.WEIGHT_DECAY, "max_grad_norm": max_norm,
        "warmup_steps": ft.WARMUP, "total_steps": ft.STEPS, "schedule": "cosine",
        "grad_accum": ft.GRAD_ACCUM, "micro_batch": ft.MICRO_BATCH, "seq_len": ft.SEQ_LEN,
        "betas": list(ft.BETAS), "eps": ft.EPS, "lora_dropout": 0.0,
        "trained_targets": counts, "clipped": clipped, "compute_dtype": "float32",
        "versions": stamp_packages(),
    })
    log(f"train {name}: losses {', '.join(f'{x:.5f}' for x in losses)}; grad norms "
        f"{', '.join(f'{x:.4f}' for x in norms)} (clipped {clipped})")
    return {"name": name, "dir": f"qlora/train/{name}", "base": base_rel}


# ---------------------------------------------------------------------------------------

def build(out_dir: Path, tmp: Path, threads: int) -> None:
    import peft
    import torch
    import transformers
    import bitsandbytes
    from transformers import PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    fixtures_models.set_threads(threads)
    patch_bitsandbytes()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, peft "
        f"{peft.__version__}, bitsandbytes {bitsandbytes.__version__}, "
        f"{torch.get_num_threads()} threads, AVX-512 bf16 "
        f"{bool(bitsandbytes.functional.has_avx512bf16())}")
    (tmp / "qlora").mkdir(parents=True)
    manifest = common.read_json(out_dir / "manifest.json")
    # tokenizer.json as loam reads it (see check_merge.py)
    tok = PreTrainedTokenizerFast.from_pretrained(out_dir / manifest["tokenizer"])
    texts = fixtures_models.read_text_parquet(out_dir / manifest["data"]["text"])
    tensors = build_tensors(tmp)
    models = build_models(out_dir, tmp, tok, texts)
    generations = build_generations(tmp, tok)
    train = [train_case(c, tmp) for c in TRAIN_CASES]
    common.write_json(tmp / "qlora" / "manifest.json", {
        "generated_by": "scripts/oracle/fixtures_qlora.py", "versions": stamp_packages(),
        "tensors": [c["name"] for c in tensors], "models": models, "train": train,
        "generate": generations,
    })


def complete(out_dir: Path) -> bool:
    q = out_dir / "qlora"
    try:
        m = common.read_json(q / "manifest.json")
    except (OSError, ValueError):
        return False
    return (q / "tensors.safetensors").is_file() and \
        all((out_dir / e["dir"] / "config.json").is_file() for e in m["models"]) and \
        all((out_dir / e["dir"] / "expected.safetensors").is_file() for e in m["train"])


def main() -> int:
    args = common.fixture_args(__doc__)
    if common.missing_stamps(args.out, (fixtures_models.STAMP_NAME,)):
        return 1
    return common.build_once(
        args.out, "qlora", STAMP_NAME, compute_stamp(args.out),
        lambda: complete(args.out), lambda tmp: build(args.out, tmp, args.threads),
        args.force, "qlora")


if __name__ == "__main__":
    sys.exit(main())

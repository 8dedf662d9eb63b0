#!/usr/bin/env python3
"""Build the PEFT + torch reference for loam's training-step tests.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_train.py [--out DIR] [--force]

DIR defaults to $LOAM_FIXTURES or ~/.cache/loam/fixtures and must already hold the model
fixtures (scripts/oracle/fixtures_models.py). Writes DIR/train/ (see
scripts/oracle/README.md, "fixtures_train.py", for the exact layout):

  train/<case>/adapter_init/          PEFT save_pretrained of the starting adapter
  train/<case>/batches.safetensors    3 steps x 2 micro-batches of [2, 16] int64 tensors
  train/<case>/expected.safetensors   step-0 gradients, final adapter, losses, norms, lrs
  train/<case>/case.json              hyper-parameters
  train/peft-trained/<case>/          PEFT save_pretrained after the 3 steps + eval.json
                                      (PiSSA: converted to plain LoRA on the original base)

Idempotent: DIR/train.stamp holds a hash of this file, fixtures_models.py, common.py, the
reference package versions (peft included) and DIR/models.stamp; when it matches, nothing
is done. Otherwise everything is rebuilt under DIR/.tmp-train-*/ and renamed into
place, and the stamp is written last.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
import zlib
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, str(HERE))

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402
import fixtures_models  # noqa: E402  (stdlib-only at import time, like common)
from common import log  # noqa: E402

STAMP_NAME = "train.stamp"
VOCAB = fixtures_models.VOCAB
PAD_ID = fixtures_models.PAD_ID
IGNORE = -100

# Training-step settings shared by every case.
STEPS = 3
GRAD_ACCUM = 2
MICRO_BATCH = 2
SEQ_LEN = 16
LR = 1e-2
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.1
WARMUP = 1
EVAL_SEQ_LEN = 64
INIT_B_STD = 0.05      # lora_B = 0 (PEFT init) + N(0, 0.05)
MAGNITUDE_JITTER = 0.01  # DoRA: m *= 1 + 0.01 N(0, 1)

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = [
    {"name": "llama-lora", "base": "models/llama-gqa", "r": 4, "alpha": 8,
     "use_rslora": False, "use_dora": False, "targets": ALL_LINEAR, "max_grad_norm": 1.0},
    {"name": "qwen2-rslora", "base": "models/qwen2", "r": 4, "alpha": 8,
     "use_rslora": True, "use_dora": False, "targets": ["q_proj", "v_proj"],
     "max_grad_norm": 1.0},
    {"name": "llama-dora", "base": "models/llama-gqa", "r": 4, "alpha": 8,
     "use_rslora": False, "use_dora": True, "targets": ["q_proj", "v_proj", "down_proj"],
     # between the step norms (2.64, 2.62, 2.84 with torch 2.13 / peft 0.21.2), so both
     # the clipped and the unclipped branch are covered
     "max_grad_norm": 2.7},
    # PiSSA: A, B from the SVD of W, the base becomes the residual; saved converted to a
    # rank-2r plain LoRA (save_pretrained's path_initial_model_for_weight_conversion)
    {"name": "llama-pissa", "base": "models/llama-gqa", "r": 4, "alpha": 8,
     "use_rslora": False, "use_dora": False, "targets": ["q_proj", "o_proj", "up_proj"],
     "max_grad_norm": 1.0, "init": "pissa"},
]

# Row layout of the micro-batches (step s, micro m -> index 2 s + m).
PROMPT_LEN = 4                    # row 0: labels of the first 4 positions are -100
PAD_TAIL = [3, 5, 0, 6, 2, 4]     # row 1: right-padding length per micro-batch
PACKED_DOCS = (9, 7)              # s0.m0 row 0: two documents, positions 0..8, 0..6
DOC1_PROMPT = 2                   # ... whose second document has a 2-token prompt


def stamp_packages() -> dict[str, str]:
    v = common.package_versions()
    try:
        v["peft"] = metadata.version("peft")
    except metadata.PackageNotFoundError:
        v["peft"] = "absent"
    return v


def compute_stamp(out_dir: Path) -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(common.source_stamp([Path(__file__).resolve(), HERE / "common.py",
                                  HERE / "fixtures_models.py"]).encode())
    h.update(json.dumps(stamp_packages(), sort_keys=True).encode())
    try:  # the base models are inputs: rebuilt models -> rebuilt training fixtures
        h.update((out_dir / fixtures_models.STAMP_NAME).read_bytes())
    except OSError:
        h.update(b"no models stamp")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# batches and the loss
# ---------------------------------------------------------------------------------------

def make_batches(seed: int) -> list[list[dict]]:
    """batches[s][m] = {input_ids, labels, position_ids, doc_ids}, int64 [2, 16].
    labels are as loam receives them: NOT yet masked at position_ids == 0."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(STEPS):
        micros = []
        for m in range(GRAD_ACCUM):
            ids = torch.randint(3, VOCAB, (MICRO_BATCH, SEQ_LEN), generator=g, dtype=torch.long)
            pos = torch.arange(SEQ_LEN, dtype=torch.long).repeat(MICRO_BATCH, 1)
            doc = torch.zeros(MICRO_BATCH, SEQ_LEN, dtype=torch.long)
            labels = ids.clone()
            labels[0, :PROMPT_LEN] = IGNORE
            if s == 0 and m == 0:
                a, b = PACKED_DOCS
                assert a + b == SEQ_LEN
                pos[0] = torch.cat([torch.arange(a), torch.arange(b)])
                doc[0, a:] = 1
                # the second document's 2-token prompt: label -100 at its 2nd token only;
                # its 1st label is kept (!= -100), so only the position_ids == 0 rule
                # stops that token being predicted from document 0
                labels[0, a + 1:a + DOC1_PROMPT] = IGNORE
            pad = PAD_TAIL[s * GRAD_ACCUM + m]
            if pad:
                ids[1, SEQ_LEN - pad:] = PAD_ID
                labels[1, SEQ_LEN - pad:] = IGNORE
                doc[1, SEQ_LEN - pad:] = -1  # position ids keep counting
            micros.append({"input_ids": ids, "labels": labels, "position_ids": pos,
                           "doc_ids": doc})
        out.append(micros)
    return out


def attention_mask_4d(doc_ids, window=None):
    """[B, 1, T, T] bool, True = may attend: causal, within the same document, and within
    `window` tokens (the query itself included) when given."""
    import torch

    t = doc_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    if window is not None:
        causal &= ~torch.ones(t, t, dtype=torch.bool).tril(-window)
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    return (causal[None] & same)[:, None]


def attention_masks(model, doc_ids):
    """The 4D mask(s) transformers takes as they are: one per layer type for models with
    sliding layers (Gemma 2/3, SmolLM3), windowed for models that slide everywhere (Phi-3).
    Boolean for sdpa; eager attention adds its mask to the scores, so it gets 0 / -inf."""
    import torch

    cfg = model.config.get_text_config()
    window = getattr(cfg, "sliding_window", None)
    types = getattr(cfg, "layer_types", None)

    def form(mask):
        if model.config._attn_implementation != "eager":
            return mask
        dtype = next(model.parameters()).dtype
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)

    if types is not None and "sliding_attention" in types and window:
        return {"full_attention": form(attention_mask_4d(doc_ids)),
                "sliding_attention": form(attention_mask_4d(doc_ids, window))}
    if types is None and window and getattr(cfg, "model_type", "") == "phi3":
        return form(attention_mask_4d(doc_ids, window))
    return form(attention_mask_4d(doc_ids))


def targets(batch):
    """loam's rule: the target of position t is labels[t+1], trained iff it is not -100
    and position_ids[t+1] != 0. Returns [B, T-1]."""
    lab = batch["labels"].clone()
    lab[batch["position_ids"] == 0] = IGNORE
    return lab[:, 1:]


def forward(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=attention_masks(model, batch["doc_ids"]),
                 position_ids=batch["position_ids"]).logits


def micro_nll(model, batch):
    """Summed NLL (f32 logits, f32 log-softmax) over the trained targets."""
    import torch.nn.functional as F

    logits = forward(model, batch)[:, :-1].float()
    tgt = targets(batch)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def check_packing(model, batch) -> dict:
    """The packed row's documents, run through the 4D mask, equal each document run alone
    with positions from 0. In float64 (a copy of the model) they agree to ~1e-14, i.e.
    the mask and positions are exactly right; in float32 they differ by f32 rounding
    only (~1.5e-5 on logits up to ~15: other sequence lengths block the matmuls
    differently), checked at 1e-5 relative to the largest logit (eager attention, Gemma 2:
    its softmax is f32 in the f64 copy too, so 1e-5 there as well)."""
    import copy

    import torch

    row = {k: v[:1] for k, v in batch.items()}
    out = {}
    with torch.no_grad():
        for dtype, m in (("f32", model), ("f64", copy.deepcopy(model).double())):
            packed = forward(m, row)[0]
            worst, scale, start = 0.0, 0.0, 0
            for n in PACKED_DOCS:
                ids = row["input_ids"][:, start:start + n]
                alone = m(input_ids=ids, position_ids=torch.arange(n)[None]).logits[0]
                worst = max(worst, float((packed[start:start + n] - alone).abs().max()))
                scale = max(scale, float(alone.abs().max()))
                start += n
            out[dtype] = worst
            # eager attention takes its softmax in f32 even in an f64 model
            eager = model.config._attn_implementation == "eager"
            tol = 1e-5 * scale if dtype == "f32" or eager else 1e-10
            assert worst <= tol, (dtype, worst, scale)
            del m
    return out


# ---------------------------------------------------------------------------------------
# PEFT plumbing
# ---------------------------------------------------------------------------------------

def peft_key(param_name: str) -> str:
    """Parameter name -> the key PEFT's save_pretrained writes."""
    for mod in ("lora_A", "lora_B"):
        tail = f".{mod}.default.weight"
        if param_name.endswith(tail):
            return param_name[: -len(tail)] + f".{mod}.weight"
    tail = ".lora_magnitude_vector.default.weight"
    if param_name.endswith(tail):
        return param_name[: -len(tail)] + ".lora_magnitude_vector"
    tail = ".token_adapter.trainable_tokens_delta.default"  # trainable_token_indices rows
    if param_name.endswith(tail):
        return param_name[: -len(".default")]
    raise ValueError(f"unexpected trainable parameter {param_name}")


def trainable(model) -> list[tuple[str, object]]:
    """(saved key, parameter) for every trainable tensor, in module order."""
    out = [(peft_key(n), p) for n, p in model.named_parameters() if p.requires_grad]
    assert out and len({k for k, _ in out}) == len(out)
    return out


def load_base(out_dir: Path, rel: str, attn: str = "sdpa"):
    m = fixtures_models.load_from_disk(out_dir / rel, __import__("torch").float32, attn=attn)
    assert m.config._attn_implementation == attn, m.config._attn_implementation
    return m


def lora_config(case: dict):
    from peft import LoraConfig

    return LoraConfig(r=case["r"], lora_alpha=case["alpha"], use_rslora=case["use_rslora"],
                      use_dora=case["use_dora"], target_modules=list(case["targets"]),
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      init_lora_weights=case.get("init", True))


def load_adapter(out_dir: Path, case: dict, path: Path, trainable_: bool):
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(out_dir, case["base"], case.get("attn", "sdpa")),
                                     path, is_trainable=trainable_)


def first_lora_module(model):
    """Any LoRA layer of a PEFT model (the first, in module order)."""
    return next(m for _, m in model.named_modules()
                if isinstance(getattr(m, "scaling", None), dict) and "default" in m.scaling)


def read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


# ---------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------

def train(out_dir: Path, case: dict, init_dir: Path, init: dict, batches, max_norm: float):
    """The reference: 3 optimizer steps on the adapter as re-loaded from disk."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    model = load_adapter(out_dir, case, init_dir, True)
    params = trainable(model)
    assert [k for k, _ in params] == list(init), "parameter order != saved order"
    for k, p in params:
        assert torch.equal(p.detach(), init[k]), k
    scaling = float(first_lora_module(model).scaling["default"])
    want = case["alpha"] / (case["r"] ** 0.5 if case["use_rslora"] else case["r"])
    assert abs(scaling - want) < 1e-12, (scaling, want)
    model.train()
    run = {"params": params, "scaling": scaling,
           "packing_diff": check_packing(model, batches[0][0])}

    opt = torch.optim.AdamW([p for _, p in params], lr=LR, betas=BETAS, eps=EPS,
                            weight_decay=WEIGHT_DECAY)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=WARMUP,
                                            num_training_steps=STEPS)
    losses, norms, lrs, clipped, counts = [], [], [], [], []
    for s in range(STEPS):
        # N = trained targets over the whole step; each micro-batch adds sum(NLL) / N
        n_tgt = sum(int((targets(b) != IGNORE).sum()) for b in batches[s])
        assert n_tgt > 0
        total = 0.0
        for b in batches[s]:
            nll = micro_nll(model, b)
            (nll / n_tgt).backward()
            total += float(nll.detach())
        if s == 0:
            for k, p in params:
                assert p.grad is not None and float(p.grad.abs().max()) > 0, k
            run["grad0"] = {k: p.grad.detach().clone() for k, p in params}
        norm = float(torch.nn.utils.clip_grad_norm_([p for _, p in params], max_norm=max_norm))
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(total / n_tgt)
        norms.append(norm)
        clipped.append(norm > max_norm)
        counts.append(n_tgt)
    run.update(losses=losses, norms=norms, lrs=lrs, clipped=clipped, counts=counts)
    return model, run


def build_case(case: dict, out_dir: Path, tmp: Path, tok, texts: list[str]) -> dict:
    import torch
    from peft import get_peft_model
    from safetensors.torch import save_file

    name = case["name"]
    seed = zlib.crc32(name.encode())
    cdir = tmp / "train" / name
    cdir.mkdir(parents=True)

    # 1. starting adapter: PEFT's init (A kaiming-uniform, B zeros, DoRA m = ||W||_row),
    #    then B (and DoRA m) perturbed so that every tensor gets a gradient. PiSSA's init
    #    is deterministic (an SVD) and its B is non-zero already: loam must reproduce it.
    pissa = case.get("init") == "pissa"
    torch.manual_seed(seed)
    base = load_base(out_dir, case["base"], case.get("attn", "sdpa"))
    model = get_peft_model(base, lora_config(case))
    g = torch.Generator().manual_seed(seed ^ 0x5EED)
    with torch.no_grad():
        if pissa:
            q = first_lora_module(model)
            assert float(q.lora_B["default"].weight.abs().max()) > 0, "PiSSA B is non-zero"
        for n, p in model.named_parameters():
            if not p.requires_grad or pissa:
                continue
            if ".lora_B." in n:
                assert float(p.abs().max()) == 0.0, n  # PEFT's default init
                p.add_(INIT_B_STD * torch.randn(p.shape, generator=g))
            elif ".lora_magnitude_vector." in n:
                p.mul_(1.0 + MAGNITUDE_JITTER * torch.randn(p.shape, generator=g))
    init = {k: p.detach().clone() for k, p in trainable(model)}
    model.save_pretrained(cdir / "adapter_init")
    del model

    saved = read_safetensors(cdir / "adapter_init" / "adapter_model.safetensors")
    assert set(saved) == set(init), sorted(set(saved) ^ set(init))
    for k, v in init.items():
        assert saved[k].dtype == torch.float32 and torch.equal(saved[k], v), k

    batches = make_batches(seed ^ 0xBA7C)
    max_norm = case["max_grad_norm"]
    model, run = train(out_dir, case, cdir / "adapter_init", init, batches, max_norm)
    if not any(run["clipped"]):
        # make clipping happen: half the step-0 norm (which does not depend on max_norm)
        max_norm = 0.5 * run["norms"][0]
        log(f"{name}: no step clipped at max_norm {case['max_grad_norm']}; rerun at {max_norm}")
        model, run = train(out_dir, case, cdir / "adapter_init", init, batches, max_norm)
        assert any(run["clipped"]), run["norms"]
    params, scaling = run["params"], run["scaling"]
    losses, norms, lrs, clipped, counts = (run[k] for k in
                                           ("losses", "norms", "lrs", "clipped", "counts"))
    packing_diff = run["packing_diff"]
    expected = {f"step0.grad.{k}": v for k, v in run["grad0"].items()}
    expected.update({f"init.{k}": v for k, v in init.items()})

    final = {k: p.detach().clone() for k, p in params}
    for k, v in final.items():
        expected[f"final.{k}"] = v
    expected["losses"] = torch.tensor(losses, dtype=torch.float64)
    expected["grad_norms"] = torch.tensor(norms, dtype=torch.float64)
    expected["lrs"] = torch.tensor(lrs, dtype=torch.float64)
    expected = {k: v.contiguous() for k, v in expected.items()}
    save_file(expected, str(cdir / "expected.safetensors"))

    flat = {}
    for s, micros in enumerate(batches):
        for m, b in enumerate(micros):
            for k, v in b.items():
                flat[f"s{s}.m{m}.{k}"] = v.contiguous()
    save_file(flat, str(cdir / "batches.safetensors"))

    # 5. the trained adapter, for the import direction
    pdir = tmp / "train" / "peft-trained" / name
    if pissa:
        # the conversion rewrites the initial adapter's config: hand it a copy
        init_copy = tmp / f"{name}-init-copy"
        shutil.copytree(cdir / "adapter_init", init_copy)
        model.save_pretrained(pdir, path_initial_model_for_weight_conversion=str(init_copy))
    else:
        model.save_pretrained(pdir)
    trained = load_adapter(out_dir, case, pdir, False)
    trained.eval()
    reloaded = read_safetensors(pdir / "adapter_model.safetensors")
    assert set(reloaded) == set(final)
    if pissa:
        # plain LoRA on the original base == the trained model on the residual base
        model.eval()
        with torch.no_grad():
            ids = batches[0][0]["input_ids"]
            want, got = model(input_ids=ids).logits, trained(input_ids=ids).logits
        assert float((want - got).abs().max()) <= 1e-4 * float(want.abs().max()), "conversion"
        assert common.read_json(pdir / "adapter_config.json")["r"] == 2 * case["r"]
    else:
        for k, v in final.items():
            assert torch.equal(reloaded[k], v), k
    del model
    ev = common.eval_text_loss(trained, tok, texts, EVAL_SEQ_LEN)
    common.write_eval_json(pdir / "eval.json", ev)
    # and the starting adapter's eval loss, for the log (training should move it)
    base_ev = common.read_json(out_dir / "expected" / case["base"].split("/", 1)[1] /
                               "eval_text.json")["loss"]
    del trained

    common.write_json(cdir / "case.json", {
        "base": case["base"],
        "r": case["r"],
        "alpha": case["alpha"],
        "use_rslora": case["use_rslora"],
        "use_dora": case["use_dora"],
        "targets": list(case["targets"]),
        "init": case.get("init", "default"),
        "scaling": scaling,
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "max_grad_norm": max_norm,
        "warmup_steps": WARMUP,
        "total_steps": STEPS,
        "schedule": "cosine",
        "grad_accum": GRAD_ACCUM,
        "micro_batch": MICRO_BATCH,
        "seq_len": SEQ_LEN,
        "betas": list(BETAS),
        "eps": EPS,
        "lora_dropout": 0.0,
        "trained_targets": counts,
        "clipped": clipped,
        "packing_max_abs_diff": packing_diff,
        "peft_version": stamp_packages()["peft"],
    })

    n_params = sum(v.numel() for v in final.values())
    log(f"{name}: {len(final)} tensors / {n_params} params, scaling {scaling:g}; "
        f"targets {counts}; packed row vs documents alone: max |diff| f32 "
        f"{packing_diff['f32']:.2g}, f64 {packing_diff['f64']:.2g}")
    log(f"{name}: losses {', '.join(f'{x:.5f}' for x in losses)}; grad norms "
        f"{', '.join(f'{x:.4f}' for x in norms)} (max_norm {max_norm:g}, clipped {clipped}); "
        f"lrs {lrs}")
    log(f"{name}: eval loss base {base_ev:.4f} -> trained {ev['loss']:.4f}")
    return {"name": name, "clipped": clipped}


def build(out_dir: Path, tmp: Path, threads: int) -> None:
    import peft
    import torch
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # peft 0.21 calls transformers' deprecated is_gradient_checkpointing on every load
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                            category=FutureWarning)
    fixtures_models.set_threads(threads)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}, {torch.get_num_threads()} threads")
    manifest = common.read_json(out_dir / "manifest.json")
    tok = AutoTokenizer.from_pretrained(out_dir / manifest["tokenizer"])
    texts = fixtures_models.read_text_parquet(out_dir / manifest["data"]["text"])
    build_train_cases(CASES, out_dir, tmp, tok, texts)


def build_train_cases(cases: list[dict], out_dir: Path, tmp: Path, tok, texts: list[str]) -> None:
    """Every case into tmp/train/ (fixtures_families.py reuses this for its own models)."""
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                            category=FutureWarning)
    for case in cases:
        build_case(case, out_dir, tmp, tok, texts)


def complete(out_dir: Path) -> bool:
    t = out_dir / "train"
    return all((t / c["name"] / f).is_file() for c in CASES
               for f in ("case.json", "batches.safetensors", "expected.safetensors",
                         "adapter_init/adapter_model.safetensors")) and \
        all((t / "peft-trained" / c["name"] / "eval.json").is_file() for c in CASES)


def main() -> int:
    args = common.fixture_args(__doc__)
    if common.missing_stamps(args.out, (fixtures_models.STAMP_NAME,)):
        return 1
    return common.build_once(
        args.out, "train", STAMP_NAME, compute_stamp(args.out),
        lambda: complete(args.out), lambda tmp: build(args.out, tmp, args.threads),
        args.force, "training")


if __name__ == "__main__":
    sys.exit(main())

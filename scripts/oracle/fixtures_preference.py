#!/usr/bin/env python3
"""Build the TRL + PEFT reference for loam's preference objectives (DPO, ORPO).

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_preference.py [--out DIR] [--force]

DIR defaults to $LOAM_FIXTURES or ~/.cache/loam/fixtures and must already hold the model
and tokenizer fixtures (fixtures_models.py, fixtures_data.py). Writes DIR/preference/ (see
scripts/oracle/README.md, "fixtures_preference.py", for the exact layout):

  preference/plain.parquet, chat.parquet    prompt / chosen / rejected rows, both conventions
  preference/bad.parquet                    a good pair, then one whose completions are equal
  preference/tokens.json                    TRL's tokenization of every row, per tokenizer
  preference/cases/<case>/                  starting adapter, case.json, expected.safetensors:
                                            3 optimizer steps of TRL's DPOTrainer / ORPOTrainer

Idempotent: DIR/preference.stamp holds a hash of this file, common.py, fixtures_models.py,
the reference package versions (peft, trl included) and DIR/models.stamp + DIR/data.stamp;
when it matches, nothing is done. Otherwise everything is rebuilt under
DIR/.tmp-preference-*/ and renamed into place, and the stamp is written last.
"""

from __future__ import annotations

import json
import os
import sys
import types
import warnings
import zlib
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, str(HERE))

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import common  # noqa: E402
import fixtures_models  # noqa: E402  (stdlib-only at import time, like common)
from common import log  # noqa: E402

STAMP_NAME = "preference.stamp"
OWNED = "preference"
BASE = "models/llama-gqa"

# Training-step settings shared by every case (as fixtures_train.py, but no warmup: the
# first step must move the adapter so that the later steps' rewards are not zero).
STEPS = 3
LR = 1e-2
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.1
MAX_GRAD_NORM = 1.0
WARMUP = 0
R, ALPHA = 4, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
INIT_B_STD = 0.05  # lora_B = 0 (PEFT init) + N(0, 0.05): every tensor gets a gradient

# Plain rows: TRL's "standard" convention. Row 2's prompt ends in a space (the tokens merge
# across the boundary: the completion starts one token early); row 3's chosen already ends
# with the EOS text (not added twice).
PLAIN = [
    ("The capital of Wales is", " Cardiff.", " London, of course."),
    ("Translate into Welsh: good morning\n", "Bore da", "Nos da"),
    ("Question: what is 2 + 2? Answer: ", "4", "22"),
    ("Write a greeting:", " Shwmae!<|im_end|>", " Go away."),
    ("Name a colour.", " Glas (blue).", " Seven."),
    ("Complete: the quick brown fox", " jumps over the lazy dog.", " is a fox."),
    ("Is the sky green?", " No, it is usually blue.", " Yes."),
    ("Sum 10 and 5:", " 15", " 105"),
    ("Habari gani?", " Nzuri sana, asante.", " Sijui."),
    ("Say hello in Chinese.", " 你好", " Hello"),
    ("Spell 'cat' backwards:", " tac", " cat"),
    ("Finish the rhyme: twinkle twinkle little", " star", " car 🚗"),
    ("The opposite of hot is", " cold.", " hot."),
    ("A haiku about rain?", " Soft rain on the roof", " I do not know any."),
]

# Conversational rows: the prompt's messages, then the assistant's preferred and rejected
# replies (one message each).
CHAT = [
    ([("user", "What is the capital of Wales?")], "Cardiff.", "London."),
    ([("system", "Answer in Welsh."), ("user", "Good morning!")], "Bore da!", "Good morning!"),
    ([("user", "2 + 2?")], "4", "5"),
    ([("user", "Hi"), ("assistant", "Helo! How can I help?"), ("user", "Say thanks in Welsh.")],
     "Diolch.", "Thanks."),
    ([("user", "Name a colour.")], "Glas (blue).", "Seven."),
    ([("user", "Complete: the quick brown fox")], "jumps over the lazy dog.", "is a fox."),
    ([("user", "Is the sky green?")], "No, it is usually blue.", "Yes, always."),
    ([("user", "Habari gani?")], "Nzuri sana, asante.", "Sijui."),
    ([("system", "Be brief."), ("user", "Say hello in Chinese.")], "你好", "Hello there, friend!"),
    ([("user", "Spell 'cat' backwards.")], "tac", "cat"),
    ([("user", "The opposite of hot?")], "Cold.", "Hot."),
    ([("user", "A haiku about rain?")], "Soft rain on the roof,\nthe garden drinks slowly.",
     "No."),
    ([("user", "Sum 10 and 5.")], "15", "105"),
    ([("user", "Finish: twinkle twinkle little")], "star", "car 🚗"),
]

# Every tokenizer of fixtures_data.py's templates/ plus the training base's.
TOKENIZERS = ["chatml", "chatml-generation", "llama3", "llama3-base-eos", "mistral",
              "qwen25", "qwen3"]

# Each case: its data, loss, reference, micro-batches per step and pairs per micro-batch.
# reference "base": the adapter switched off (TRL given a fresh adapter, `peft_config`);
# "adapter": a frozen copy of the starting adapter (TRL given a PeftModel: its "ref" copy).
DPO = "dpo"
ORPO = "orpo"
CASES = [
    {"name": "dpo-sigmoid-plain", "objective": DPO, "data": "plain", "loss": "sigmoid",
     "beta": 0.1, "label_smoothing": 0.0, "reference": "base", "grad_accum": 2, "pairs": 2},
    {"name": "dpo-sigmoid-chat", "objective": DPO, "data": "chat", "loss": "sigmoid",
     "beta": 0.1, "label_smoothing": 0.0, "reference": "adapter", "grad_accum": 2, "pairs": 2},
    {"name": "dpo-ipo-chat", "objective": DPO, "data": "chat", "loss": "ipo",
     "beta": 0.1, "label_smoothing": 0.0, "reference": "base", "grad_accum": 2, "pairs": 2},
    {"name": "dpo-hinge-plain", "objective": DPO, "data": "plain", "loss": "hinge",
     "beta": 0.5, "label_smoothing": 0.0, "reference": "base", "grad_accum": 2, "pairs": 2},
    {"name": "dpo-robust-plain", "objective": DPO, "data": "plain", "loss": "robust",
     "beta": 0.1, "label_smoothing": 0.2, "reference": "base", "grad_accum": 2, "pairs": 2},
    # Sigmoid with label smoothing (conservative DPO) is not a TRL 1.16 loss type; for a
    # single pair per micro-batch TRL's "aot" loss is exactly it (sorting one value is
    # the identity): -(1 - e) log s(b d) - e log s(-b d).
    {"name": "dpo-sigmoid-smoothed-plain", "objective": DPO, "data": "plain", "loss": "sigmoid",
     "trl_loss": "aot", "beta": 0.1, "label_smoothing": 0.2, "reference": "base",
     "grad_accum": 2, "pairs": 1},
    # ORPO: one micro-batch per step (TRL averages the NLL per micro-batch; with one they
    # agree with loam's average over the step's chosen tokens whatever the lengths).
    {"name": "orpo-plain", "objective": ORPO, "data": "plain", "beta": 0.1, "grad_accum": 1,
     "pairs": 4},
    {"name": "orpo-chat", "objective": ORPO, "data": "chat", "beta": 0.25, "grad_accum": 1,
     "pairs": 4},
]

DPO_METRICS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected"]
ORPO_METRICS = DPO_METRICS + ["nll_loss", "log_odds_ratio", "log_odds_chosen"]


def stamp_packages() -> dict[str, str]:
    v = common.package_versions()
    for name in ("peft", "trl", "datasets", "accelerate"):
        try:
            v[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            v[name] = "absent"
    return v


def compute_stamp(out_dir: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(common.source_stamp([Path(__file__).resolve(), HERE / "common.py",
                                  HERE / "fixtures_models.py"]).encode())
    h.update(json.dumps(stamp_packages(), sort_keys=True).encode())
    for stamp in ("models.stamp", "data.stamp"):  # inputs: rebuilt models or tokenizers
        try:
            h.update((out_dir / stamp).read_bytes())
        except OSError:
            h.update(f"no {stamp}".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------

def messages(turns):
    return [{"role": r, "content": c} for r, c in turns]


def rows(kind: str) -> list[dict]:
    if kind == "plain":
        return [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PLAIN]
    return [{"prompt": messages(p), "chosen": messages([("assistant", c)]),
             "rejected": messages([("assistant", r)])} for p, c, r in CHAT]


def write_parquet(path: Path, kind: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = rows(kind)
    if kind == "plain":
        table = pa.table({k: pa.array([row[k] for row in data], pa.string())
                          for k in ("prompt", "chosen", "rejected")})
    else:
        msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
        table = pa.table({k: pa.array([row[k] for row in data], msg)
                          for k in ("prompt", "chosen", "rejected")})
    pq.write_table(table, path, row_group_size=5)


def write_bad_parquet(path: Path) -> None:
    """For the CLI's error test: row 1's chosen equals its rejected."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["Hi", "Hello"], "chosen": [" there", " same"],
                             "rejected": [" you", " same"]}), path)


def trl_tokenize(tokenizer, kind: str) -> list[dict]:
    """TRL's own preprocessing (DPOTrainer._prepare_dataset: EOS text added to plain
    completions, prompt and prompt + completion tokenized, split at the common prefix)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir="/nonexistent", max_length=None, report_to=[],
                     bf16=False, use_cpu=True)
    stub = types.SimpleNamespace(_tokenizer=tokenizer)
    ds = DPOTrainer._prepare_dataset(stub, Dataset.from_list(rows(kind)), tokenizer, args,
                                     "train")
    return [{k: list(ds[i][k]) for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
            for i in range(len(ds))]


def build_tokens(out_dir: Path, tmp: Path) -> dict:
    from transformers import AutoTokenizer

    dirs = {name: out_dir / "templates" / name for name in TOKENIZERS}
    dirs["llama-gqa"] = out_dir / BASE
    result = {}
    for name, d in dirs.items():
        tokenizer = AutoTokenizer.from_pretrained(str(d))
        entry = {}
        for kind in ("plain", "chat"):
            try:
                entry[kind] = trl_tokenize(tokenizer, kind)
            except Exception as e:  # a template that rejects these conversations (mistral)
                entry[kind] = {"error": f"{type(e).__name__}: {e}"}
        result[name] = entry
        log(f"tokens for {name}: " + ", ".join(
            f"{k} {'error' if isinstance(v, dict) else len(v)}" for k, v in entry.items()))
    common.write_json(tmp / OWNED / "tokens.json", {
        "generated_by": "scripts/oracle/fixtures_preference.py",
        "versions": stamp_packages(),
        "tokenizers": result,
    })
    return result


# ---------------------------------------------------------------------------------------
# PEFT plumbing
# ---------------------------------------------------------------------------------------

def peft_key(param_name: str) -> str:
    for mod in ("lora_A", "lora_B"):
        tail = f".{mod}.default.weight"
        if param_name.endswith(tail):
            return param_name[: -len(tail)] + f".{mod}.weight"
    raise ValueError(f"unexpected trainable parameter {param_name}")


def trainable(model) -> list[tuple[str, object]]:
    """(saved key, parameter) of the trained ("default") adapter, in module order."""
    out = [(peft_key(n), p) for n, p in model.named_parameters()
           if p.requires_grad and ".default." in n]
    assert out and len({k for k, _ in out}) == len(out)
    return out


def load_base(out_dir: Path):
    import torch

    m = fixtures_models.load_from_disk(out_dir / BASE, torch.float32)
    assert m.config._attn_implementation == "sdpa", m.config._attn_implementation
    return m


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=R, lora_alpha=ALPHA, target_modules=list(TARGETS), lora_dropout=0.0,
                      bias="none", task_type="CAUSAL_LM")


def starting_adapter(out_dir: Path, case: dict, adapter_dir: Path) -> dict:
    """PEFT's init under a per-case seed, B perturbed; saved with save_pretrained."""
    import torch
    from peft import get_peft_model

    seed = zlib.crc32(case["name"].encode())
    torch.manual_seed(seed)
    model = get_peft_model(load_base(out_dir), lora_config())
    g = torch.Generator().manual_seed(seed ^ 0x5EED)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and ".lora_B." in n:
                assert float(p.abs().max()) == 0.0, n
                p.add_(INIT_B_STD * torch.randn(p.shape, generator=g))
    init = {k: p.detach().clone() for k, p in trainable(model)}
    model.save_pretrained(adapter_dir)
    return init


def common_args(cls, case: dict, per_device: int, **extra):
    return cls(output_dir="/nonexistent", bf16=False, fp16=False, use_cpu=True, report_to=[],
               gradient_checkpointing=False, per_device_train_batch_size=per_device,
               dataloader_num_workers=0, save_strategy="no", logging_steps=1,
               learning_rate=LR, beta=case["beta"], **extra)


# ---------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------

def dpo_trainer(out_dir: Path, case: dict, adapter_dir: Path, init: dict):
    """TRL's DPOTrainer on the starting adapter: a PeftModel (reference "ref", a frozen
    copy of it) or a fresh adapter from peft_config overwritten with it (reference: the
    adapter disabled)."""
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    args = common_args(DPOConfig, case, case["pairs"], loss_type=[case.get("trl_loss", case["loss"])],
                       label_smoothing=case["label_smoothing"], max_length=None)
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(str(out_dir / BASE))
    data = Dataset.from_list(rows(case["data"]))
    if case["reference"] == "adapter":
        model = PeftModel.from_pretrained(load_base(out_dir), adapter_dir, is_trainable=True)
        trainer = DPOTrainer(model=model, args=args, train_dataset=data,
                             processing_class=tokenizer)
        assert "ref" in trainer.model.peft_config, "TRL made no reference adapter"
    else:
        trainer = DPOTrainer(model=load_base(out_dir), args=args, train_dataset=data,
                             processing_class=tokenizer, peft_config=lora_config())
        assert "ref" not in trainer.model.peft_config
        with torch.no_grad():
            for k, p in trainable(trainer.model):
                p.copy_(init[k])
    for k, p in trainable(trainer.model):
        assert torch.equal(p.detach(), init[k]), k
    return trainer


def orpo_trainer(out_dir: Path, case: dict, adapter_dir: Path):
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoTokenizer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(out_dir / BASE))
    args = common_args(ORPOConfig, case, case["pairs"], max_length=4096)
    model = PeftModel.from_pretrained(load_base(out_dir), adapter_dir, is_trainable=True)
    # ORPOTrainer tokenizes its dataset itself (plain strings only); the steps below feed it
    # DPOTrainer's tokenization, the one loam uses for both objectives.
    data = Dataset.from_list([{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PLAIN])
    return ORPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)


def orpo_batch(tokens: list[dict], pad_id: int) -> dict:
    """ORPOTrainer's batch layout for the pairs: prompt + completion per side, labels -100
    on the prompt and the padding."""
    import torch

    out = {}
    for side in ("chosen", "rejected"):
        seqs = [t["prompt_ids"] + t[f"{side}_ids"] for t in tokens]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        for i, (t, s) in enumerate(zip(tokens, seqs)):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
            labels[i, len(t["prompt_ids"]):len(s)] = torch.tensor(t[f"{side}_ids"])
        out[f"{side}_input_ids"], out[f"{side}_attention_mask"] = ids, mask
        out[f"{side}_labels"] = labels
    return out


def run_steps(case: dict, trainer, tokens: list[dict]):
    """3 optimizer steps: per micro-batch TRL's loss / grad_accum, backward; then clipping,
    AdamW, the cosine schedule. Metrics as TRL logs them: the mean of the micro-batches'."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    model = trainer.model
    model.train()
    params = trainable(model)
    opt = torch.optim.AdamW([p for _, p in params], lr=LR, betas=BETAS, eps=EPS,
                            weight_decay=WEIGHT_DECAY)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=WARMUP,
                                            num_training_steps=STEPS)
    accum, pairs = case["grad_accum"], case["pairs"]
    names = DPO_METRICS if case["objective"] == DPO else ORPO_METRICS
    out = {"losses": [], "grad_norms": [], "lrs": [], "metrics": {k: [] for k in names}}
    grad0 = None
    for s in range(STEPS):
        total, logged = 0.0, {k: [] for k in names}
        for m in range(accum):
            first = (s * accum + m) * pairs
            micro = tokens[first:first + pairs]
            if case["objective"] == DPO:
                loss = trainer._compute_loss(model, trainer.data_collator(micro), False)
                for k in names:
                    logged[k].extend(trainer._metrics["train"][k])
                trainer._metrics["train"].clear()
            else:
                batch = orpo_batch(micro, trainer.processing_class.pad_token_id)
                loss, metrics = trainer.get_batch_loss_metrics(model, batch, "train")
                for k in names:
                    logged[k].append(metrics[k])
            (loss / accum).backward()
            total += float(loss.detach()) / accum
        if s == 0:
            for k, p in params:
                assert p.grad is not None and float(p.grad.abs().max()) > 0, k
            grad0 = {k: p.grad.detach().clone() for k, p in params}
        norm = float(torch.nn.utils.clip_grad_norm_([p for _, p in params], MAX_GRAD_NORM))
        out["lrs"].append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
        opt.zero_grad()
        out["losses"].append(total)
        out["grad_norms"].append(norm)
        for k in names:
            out["metrics"][k].append(sum(logged[k]) / len(logged[k]))
    out["grad0"] = grad0
    out["final"] = {k: p.detach().clone() for k, p in params}
    return out


def build_case(case: dict, out_dir: Path, tmp: Path, tokens: dict) -> None:
    import torch
    from safetensors.torch import save_file

    name = case["name"]
    cdir = tmp / OWNED / "cases" / name
    cdir.mkdir(parents=True)
    init = starting_adapter(out_dir, case, cdir / "adapter_init")
    pairs = tokens["llama-gqa"][case["data"]]
    needed = STEPS * case["grad_accum"] * case["pairs"]
    assert len(pairs) >= needed, (name, len(pairs), needed)

    if case["objective"] == DPO:
        trainer = dpo_trainer(out_dir, case, cdir / "adapter_init", init)
        # TRL's own tokenization of the training rows is the one recorded in tokens.json
        for i in range(needed):
            for k in ("prompt_ids", "chosen_ids", "rejected_ids"):
                assert list(trainer.train_dataset[i][k]) == pairs[i][k], (name, i, k)
    else:
        trainer = orpo_trainer(out_dir, case, cdir / "adapter_init")
    run = run_steps(case, trainer, pairs)

    expected = {f"step0.grad.{k}": v for k, v in run["grad0"].items()}
    expected.update({f"final.{k}": v for k, v in run["final"].items()})
    for key in ("losses", "grad_norms", "lrs"):
        expected[key] = torch.tensor(run[key], dtype=torch.float64)
    for k, v in run["metrics"].items():
        expected[f"metrics.{k}"] = torch.tensor(v, dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in expected.items()},
              str(cdir / "expected.safetensors"))
    common.write_json(cdir / "case.json", {
        **{k: v for k, v in case.items() if k != "trl_loss"},
        "trl_loss_type": case.get("trl_loss", case.get("loss")),
        "base": BASE, "r": R, "alpha": ALPHA, "targets": TARGETS, "lr": LR,
        "weight_decay": WEIGHT_DECAY, "max_grad_norm": MAX_GRAD_NORM, "warmup_steps": WARMUP,
        "total_steps": STEPS, "schedule": "cosine", "betas": list(BETAS), "eps": EPS,
        "lora_dropout": 0.0, "pairs_used": needed,
        "versions": {k: stamp_packages()[k] for k in ("trl", "peft", "torch", "transformers")},
    })
    log(f"{name}: losses {', '.join(f'{x:.5f}' for x in run['losses'])}; grad norms "
        f"{', '.join(f'{x:.4f}' for x in run['grad_norms'])}; margins "
        f"{', '.join(f'{x:.4f}' for x in run['metrics']['rewards/margins'])}")


def build(out_dir: Path, tmp: Path, threads: int) -> None:
    import peft
    import torch
    import transformers
    import trl
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    fixtures_models.set_threads(threads)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}, trl {trl.__version__}, {torch.get_num_threads()} threads")
    (tmp / OWNED).mkdir(parents=True)
    for kind in ("plain", "chat"):
        write_parquet(tmp / OWNED / f"{kind}.parquet", kind)
    write_bad_parquet(tmp / OWNED / "bad.parquet")
    tokens = build_tokens(out_dir, tmp)
    for case in CASES:
        build_case(case, out_dir, tmp, tokens)


def complete(out_dir: Path) -> bool:
    p = out_dir / OWNED
    return (p / "tokens.json").is_file() and (p / "bad.parquet").is_file() and all(
        (p / "cases" / c["name"] / f).is_file()
        for c in CASES for f in ("case.json", "expected.safetensors",
                                 "adapter_init/adapter_model.safetensors"))


def main() -> int:
    args = common.fixture_args(__doc__)
    if common.missing_stamps(args.out, (fixtures_models.STAMP_NAME, "data.stamp")):
        return 1
    return common.build_once(
        args.out, OWNED, STAMP_NAME, compute_stamp(args.out),
        lambda: complete(args.out), lambda tmp: build(args.out, tmp, args.threads),
        args.force, "preference")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Build the references for `loam vocab extend` and `lora.trainable_tokens`.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_vocab.py [--out DIR] [--force]

DIR defaults to $LOAM_FIXTURES or ~/.cache/loam/fixtures and must already hold the model
fixtures (fixtures_models.py). Writes DIR/vocab/ (layout in scripts/oracle/README.md,
"fixtures_vocab.py"):

  vocab/corpus.parquet           column `text`: a multilingual corpus (Welsh, Amharic,
                                 Tigrinya, Yoruba with tone marks, Chinese, English)
  vocab/models/<name>-ext/       tiny models with NEW_TOKENS rows added to the embedding
                                 (and the untied lm_head), vocab_extension.json naming them
  vocab/train/<case>/            PEFT + torch reference: LoRA with trainable_token_indices
                                 on those rows, 3 steps (fixtures_train.py's layout)

Idempotent: DIR/vocab.stamp holds a hash of this file, fixtures_train.py, fixtures_models.py,
common.py, the package versions (peft included) and DIR/models.stamp.
"""

from __future__ import annotations

import argparse
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import common  # noqa: E402
import fixtures_models  # noqa: E402
import fixtures_train as ft  # noqa: E402
from common import log  # noqa: E402

STAMP_NAME = "vocab.stamp"
BASE_VOCAB = fixtures_models.VOCAB          # 49152
NEW_TOKENS = 12                             # ids 49152..49163
VOCAB_SIZE = 49280                          # padded to a multiple of 128, as loam does
NEW_IDS = list(range(BASE_VOCAB, BASE_VOCAB + NEW_TOKENS))
NEW_SHARE = 0.4                             # of the batch positions hold a new token
CORPUS_ROWS = 400

MODELS = {"llama-gqa": "untied", "llama-mqa-tied": "tied"}
CASES = [
    {"name": f"tokens-{kind}", "base": f"vocab/models/{name}-ext", "r": 4, "alpha": 8,
     "use_rslora": False, "use_dora": False, "targets": ["q_proj", "v_proj"],
     "max_grad_norm": 1.0, "tied": kind == "tied"}
    for name, kind in MODELS.items()
]

WORDS = [
    "mae hen wlad fy nhadau yn annwyl i mi gwlad beirdd a chantorion enwogion o fri "
    "bore da diolch yn fawr croeso llyfrgell ysgol cymraeg iaith",
    "ሰላም ዓለም ቋንቋ የሰው ልጅ ትልቁ ሀብት ነው አዲስ ቃላት እንማራለን ኢትዮጵያ አማርኛ",
    "ሰላም ትግርኛ ቋንቋ ኣብ ኤርትራ ዝዝረብ እዩ ብዙሓት ሰባት ኣለዉ",
    "ẹ káàárọ̀ ọmọ ilé ìwé yorùbá èdè àwọn ènìyàn ṣé dáadáa ni ọjà",
    "机器 学习 正在 改变 我们 工作 开源 模型 语言 社区",
    "the language of our people is alive and well in every village",
]


def stamp() -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(common.source_stamp([Path(__file__).resolve(), HERE / "common.py",
                                  HERE / "fixtures_models.py", HERE / "fixtures_train.py"]).encode())
    h.update(json.dumps(ft.stamp_packages(), sort_keys=True).encode())
    return h.hexdigest()


def corpus_rows() -> list[str]:
    import random

    rng = random.Random(19)
    rows = []
    for _ in range(CORPUS_ROWS):
        words = WORDS[rng.randrange(len(WORDS))].split()
        sep = "" if words[0] == "机器" else " "
        text = sep.join(rng.choice(words) for _ in range(rng.randint(5, 16)))
        rows.append(text + rng.choice([".", "!", "?", "።", "。"]))
    return rows


def write_corpus(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = corpus_rows()
    pq.write_table(pa.table({"text": pa.array(rows, type=pa.string())}), path,
                   row_group_size=128)
    log(f"corpus: {len(rows)} rows, {sum(len(r.encode()) for r in rows)} bytes")


def build_model(out_dir: Path, name: str, dest: Path) -> None:
    """The tiny model with NEW_TOKENS rows (and padding to VOCAB_SIZE), new rows drawn like
    the base rows: N(0, 3/sqrt(hidden)) (tied) / N(0, 1) embeddings, N(0, 3/sqrt(hidden))
    lm_head."""
    import torch

    model = fixtures_models.load_from_disk(out_dir / "models" / name, torch.float32)
    hidden = model.config.hidden_size
    tied = model.config.tie_word_embeddings
    g = torch.Generator().manual_seed(zlib.crc32(f"{name}-ext".encode()))
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = None if tied else model.get_output_embeddings().weight.detach().clone()
    model.resize_token_embeddings(VOCAB_SIZE, mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        std = 3.0 / math.sqrt(hidden) if tied else 1.0
        emb[:BASE_VOCAB] = old_in
        emb[BASE_VOCAB:] = std * torch.randn(emb[BASE_VOCAB:].shape, generator=g)
        if not tied:
            out = model.get_output_embeddings().weight
            out[:BASE_VOCAB] = old_out
            out[BASE_VOCAB:] = (3.0 / math.sqrt(hidden)) * torch.randn(
                out[BASE_VOCAB:].shape, generator=g)
    assert model.config.vocab_size == VOCAB_SIZE
    model.save_pretrained(dest)
    for f in fixtures_models.TOKENIZER_FILES + ("generation_config.json",):
        src = out_dir / "models" / name / f
        if src.exists():
            shutil.copy2(src, dest / f)
    # the part of loam's report that `lora.trainable_tokens = "new"` reads
    common.write_json(dest / "vocab_extension.json", {"new_token_ids": NEW_IDS})
    reloaded = fixtures_models.load_from_disk(dest, torch.float32)
    assert torch.equal(reloaded.get_input_embeddings().weight,
                       model.get_input_embeddings().weight)
    log(f"{dest.name}: vocab_size {VOCAB_SIZE}, new ids {NEW_IDS[0]}..{NEW_IDS[-1]}, "
        f"{'tied' if tied else 'untied'}")


def with_new_tokens(batches, seed: int):
    """fixtures_train's batches with NEW_SHARE of the real (non-padding) positions holding
    new tokens, labels following the ids (so new tokens are inputs and targets)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for micros in batches:
        for b in micros:
            ids, labels, doc = b["input_ids"], b["labels"], b["doc_ids"]
            pick = (torch.rand(ids.shape, generator=g) < NEW_SHARE) & (doc >= 0)
            new = torch.tensor(NEW_IDS)[torch.randint(NEW_TOKENS, ids.shape, generator=g)]
            ids[pick] = new[pick]
            keep = labels != ft.IGNORE
            labels[keep] = ids[keep]
    return batches


def build_case(case: dict, out_dir: Path, tmp: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file

    name = case["name"]
    seed = zlib.crc32(name.encode())
    cdir = tmp / "vocab" / "train" / name
    cdir.mkdir(parents=True)
    indices = NEW_IDS if case["tied"] else {"embed_tokens": NEW_IDS, "lm_head": NEW_IDS}
    torch.manual_seed(seed)
    base = ft.load_base(tmp, case["base"])
    model = get_peft_model(base, LoraConfig(
        r=case["r"], lora_alpha=case["alpha"], target_modules=list(case["targets"]),
        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
        trainable_token_indices=indices))
    g = torch.Generator().manual_seed(seed ^ 0x5EED)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and ".lora_B." in n:
                p.add_(ft.INIT_B_STD * torch.randn(p.shape, generator=g))
    init = {k: p.detach().clone() for k, p in ft.trainable(model)}
    # PEFT starts the rows as copies of the base rows (loam's "new" must do the same)
    emb = model.get_input_embeddings().token_adapter.base_layer.weight
    key = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
    assert torch.equal(init[key], emb[NEW_IDS]), "PEFT's row init"
    model.save_pretrained(cdir / "adapter_init")
    del model
    saved = ft.read_safetensors(cdir / "adapter_init" / "adapter_model.safetensors")
    assert set(saved) == set(init), sorted(set(saved) ^ set(init))

    batches = with_new_tokens(ft.make_batches(seed ^ 0xBA7C), seed ^ 0x70C)
    model, run = ft.train(tmp, case, cdir / "adapter_init", init, batches, case["max_grad_norm"])
    expected = {f"step0.grad.{k}": v for k, v in run["grad0"].items()}
    expected.update({f"init.{k}": v for k, v in init.items()})
    expected.update({f"final.{k}": p.detach().clone() for k, p in run["params"]})
    expected["losses"] = torch.tensor(run["losses"], dtype=torch.float64)
    expected["grad_norms"] = torch.tensor(run["norms"], dtype=torch.float64)
    expected["lrs"] = torch.tensor(run["lrs"], dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in expected.items()}, str(cdir / "expected.safetensors"))
    save_file({f"s{s}.m{m}.{k}": v.contiguous() for s, micros in enumerate(batches)
               for m, b in enumerate(micros) for k, v in b.items()},
              str(cdir / "batches.safetensors"))
    common.write_json(cdir / "case.json", {
        "base": case["base"], "r": case["r"], "alpha": case["alpha"],
        "use_rslora": False, "use_dora": False, "targets": list(case["targets"]),
        "init": "default", "tied": case["tied"], "trainable_token_indices": indices,
        "scaling": run["scaling"], "lr": ft.LR, "weight_decay": ft.WEIGHT_DECAY,
        "max_grad_norm": case["max_grad_norm"], "warmup_steps": ft.WARMUP,
        "total_steps": ft.STEPS, "schedule": "cosine", "grad_accum": ft.GRAD_ACCUM,
        "micro_batch": ft.MICRO_BATCH, "seq_len": ft.SEQ_LEN, "trained_targets": run["counts"],
        "clipped": run["clipped"], "peft_version": ft.stamp_packages()["peft"],
    })
    log(f"{name}: losses {', '.join(f'{x:.5f}' for x in run['losses'])}; grad norms "
        f"{', '.join(f'{x:.4f}' for x in run['norms'])}; clipped {run['clipped']}")


def build(out_dir: Path, tmp: Path) -> None:
    from transformers.utils import logging as hf_logging
    import warnings

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    fixtures_models.set_threads(1)
    (tmp / "vocab" / "models").mkdir(parents=True)
    write_corpus(tmp / "vocab" / "corpus.parquet")
    for name in MODELS:
        build_model(out_dir, name, tmp / "vocab" / "models" / f"{name}-ext")
    for case in CASES:
        build_case(case, out_dir, tmp)


def complete(out_dir: Path) -> bool:
    v = out_dir / "vocab"
    return (v / "corpus.parquet").is_file() and all(
        (v / "train" / c["name"] / "expected.safetensors").is_file() for c in CASES)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    out_dir = (args.out or common.default_out_dir()).expanduser().resolve()
    models_stamp = out_dir / fixtures_models.STAMP_NAME
    if not models_stamp.is_file():
        print(f"error: {out_dir} has no model fixtures; run fixtures_models.py first",
              file=sys.stderr)
        return 1
    want = stamp() + models_stamp.read_text().strip()
    stamp_file = out_dir / STAMP_NAME
    if not args.force and common.stamp_matches(stamp_file, want) and complete(out_dir):
        print(f"vocab fixtures up to date: {out_dir / 'vocab'}")
        return 0
    t0 = time.monotonic()
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-vocab-", dir=out_dir))
    try:
        build(out_dir, tmp)
        common.replace_path(tmp / "vocab", out_dir / "vocab")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp_file.write_text(want + "\n")
    log(f"vocab fixtures done in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

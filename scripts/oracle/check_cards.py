#!/usr/bin/env python3
"""Read loam's cards and GGUF metadata with the tools the Hub and llama.cpp use; print them.

usage: check_cards.py [--model DIR]... [--dataset DIR]... [--gguf FILE]... [--forbid TEXT]...

- --model DIR: DIR/README.md through huggingface_hub's `ModelCard.load`; its model-index
  through `model_index_to_eval_results` (as the Hub reads eval results).
- --dataset DIR: DIR/README.md through `DatasetCard.load`.
- --gguf FILE: every `general.*` key through gguf-py's `GGUFReader`.
- --forbid TEXT: none of the cards' text nor any GGUF string value may contain TEXT (a
  home directory, a temporary directory, `runs/`, `example.invalid`).
Prints one JSON object: {"models": {DIR: {"data": card metadata, "eval_results": [...],
"text": body}}, "datasets": {DIR: {...}}, "ggufs": {FILE: {key: value}}}; exits 1 naming
each forbidden text it found. Used by tests/cards.rs.
"""

import argparse
import json
import sys
from pathlib import Path


def gguf_general(path: str) -> dict:
    import gguf
    reader = gguf.GGUFReader(path)
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("general."):
            out[key] = field.contents()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--dataset", action="append", default=[])
    ap.add_argument("--gguf", action="append", default=[])
    ap.add_argument("--forbid", action="append", default=[])
    args = ap.parse_args()

    from huggingface_hub import DatasetCard, ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    report = {"models": {}, "datasets": {}, "ggufs": {}}
    texts = []
    for d in args.model:
        path = Path(d) / "README.md"
        card = ModelCard.load(path)
        data = card.data.to_dict()
        results = []
        if "model-index" in data:
            name, evals = model_index_to_eval_results(data["model-index"])
            results = [{"model": name, "task_type": e.task_type, "dataset_type": e.dataset_type,
                        "dataset_name": e.dataset_name, "dataset_split": e.dataset_split,
                        "metric_type": e.metric_type, "metric_value": e.metric_value}
                       for e in evals]
        report["models"][d] = {"data": data, "eval_results": results, "text": card.text}
        texts.append((str(path), path.read_text(encoding="utf-8")))
    for d in args.dataset:
        path = Path(d) / "README.md"
        card = DatasetCard.load(path)
        report["datasets"][d] = {"data": card.data.to_dict(), "text": card.text}
        texts.append((str(path), path.read_text(encoding="utf-8")))
    for f in args.gguf:
        general = gguf_general(f)
        report["ggufs"][f] = general
        texts.append((f, json.dumps(general, ensure_ascii=False)))
    errors = [f"{where} contains {bad!r}" for where, text in texts for bad in args.forbid
              if bad and bad in text]
    print(json.dumps(report, ensure_ascii=False, default=str))
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check loam's chrF++ / BLEU against sacrebleu on a predictions file.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/check_metrics.py PREDICTIONS.jsonl \
        [--scores EVAL.json] [--tolerance 0.01]

PREDICTIONS.jsonl is what `loam eval --generate --predictions` writes: one JSON object per
row with `prediction`, `reference` and loam's sentence-level `chrf` (and, optionally, a
per-row `bleu`: the corpus BLEU of that one pair). EVAL.json holds loam's corpus `chrf`
and `bleu` (the `loam eval --json` object). sacrebleu computes the same numbers with
`CHRF(word_order=2)` (chrF++) and `BLEU()` (13a tokenization, exp smoothing):
corpus_score(predictions, [references]) and sentence_score(prediction, [reference]).

Prints the numbers side by side as JSON; exits 1 when any differs by more than the
tolerance (score points, 0-100 scale).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions", type=Path)
    ap.add_argument("--scores", type=Path, default=None)
    ap.add_argument("--tolerance", type=float, default=0.01)
    args = ap.parse_args()

    rows = [json.loads(line) for line in args.predictions.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    if not rows:
        print(f"error: {args.predictions} has no rows", file=sys.stderr)
        return 1
    hyps = [r["prediction"] for r in rows]
    refs = [r["reference"] for r in rows]
    chrf, bleu = CHRF(word_order=2), BLEU()
    report = {
        "rows": len(rows),
        "sacrebleu": {
            "chrf": chrf.corpus_score(hyps, [refs]).score,
            "bleu": bleu.corpus_score(hyps, [refs]).score,
        },
        "mismatches": [],
    }
    worst = 0.0
    for i, r in enumerate(rows):
        checks = [("chrf", r.get("chrf"), chrf.sentence_score(r["prediction"], [r["reference"]]).score)]
        if "bleu" in r:
            checks.append(("bleu", r["bleu"], BLEU().corpus_score([r["prediction"]], [[r["reference"]]]).score))
        for name, loam, ref in checks:
            diff = abs(loam - ref) if loam is not None else float("inf")
            worst = max(worst, diff)
            if diff > args.tolerance:
                report["mismatches"].append({"row": i, "metric": name, "loam": loam, "sacrebleu": ref,
                                             "prediction": r["prediction"], "reference": r["reference"]})
    report["max_row_diff"] = worst
    if args.scores is not None:
        scores = json.loads(args.scores.read_text(encoding="utf-8"))
        report["loam"] = {"chrf": scores.get("chrf"), "bleu": scores.get("bleu")}
        for name in ("chrf", "bleu"):
            loam, ref = scores.get(name), report["sacrebleu"][name]
            if loam is None or abs(loam - ref) > args.tolerance:
                report["mismatches"].append({"corpus": name, "loam": loam, "sacrebleu": ref})
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 1 if report["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())

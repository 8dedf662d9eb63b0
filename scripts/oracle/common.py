"""Shared helpers for the loam Python oracles (scripts/oracle/fixtures_*.py).

The oracles are test references only: they build fixtures (models, data, expected
outputs) that the Rust tests compare against. loam itself never calls Python.

Only the standard library is imported at module level, so that the "fixtures up to
date" check stays fast; torch / transformers are imported by the callers when they
actually have to build something.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

# Packages whose versions change the fixtures; they go into the stamp hash so that an
# upgraded reference stack rebuilds the fixtures.
STAMPED_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "pyarrow", "gguf")

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", flush=True)


def default_out_dir() -> Path:
    env = os.environ.get("LOAM_FIXTURES")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "loam" / "fixtures"


def package_versions() -> dict[str, str]:
    out = {}
    for name in STAMPED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def cpu_kind() -> str:
    """The CPU features that decide libtorch's kernels (and so the fixtures' last bits):
    fixtures made on an AVX2-only CPU are rebuilt on one with native bf16, and back."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return ",".join(flag for flag in wanted if flag in flags) or "unknown"


def source_stamp(paths: list[Path]) -> str:
    """sha256 over the given source files, the reference package versions and the CPU kind."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    h.update(json.dumps(package_versions(), sort_keys=True).encode())
    h.update(cpu_kind().encode())
    return h.hexdigest()


def stamp_matches(stamp_file: Path, stamp: str) -> bool:
    try:
        return stamp_file.read_text().strip() == stamp
    except OSError:
        return False


def write_json(path: Path, obj, indent: int | None = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def replace_path(src: Path, dst: Path) -> None:
    """Move src onto dst, replacing whatever dst was (file or directory).

    The old tree is renamed aside, the new one renamed in, then the old one deleted,
    so dst is never half-written (src must be on the same filesystem).
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists() or dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        if old.exists():
            _rm(old)
        os.rename(dst, old)
    os.rename(src, dst)
    if old is not None:
        _rm(old)


def _rm(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def tree_listing(root: Path) -> list[tuple[str, int]]:
    rows = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rows.append((str(p.relative_to(root)), p.stat().st_size))
    return rows


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


# --------------------------------------------------------------------------------------
# loam's `eval` contract for `text` rows (see DESIGN.md, CLI contract):
#   each row on its own (never packed); ids = tokenizer(text)["input_ids"] (special
#   tokens as transformers adds them); append eos unless the ids already end with it;
#   truncate to seq_len; every token after the first is predicted;
#   loss = summed NLL over all predicted tokens of all rows / their count.
# --------------------------------------------------------------------------------------


def eval_row_ids(tokenizer, text: str, seq_len: int, add_eos: bool = True) -> list[int]:
    ids = list(tokenizer(text)["input_ids"])
    eos = tokenizer.eos_token_id
    if add_eos and eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids[:seq_len]


def eval_text_loss(model, tokenizer, texts: list[str], seq_len: int) -> dict:
    """Reference loss of `loam eval` on text rows. NLL from the model's logits,
    log-softmax and accumulation in float64."""
    import torch

    total_nll = 0.0
    total_tokens = 0
    per_row = []
    with torch.no_grad():
        for text in texts:
            ids = eval_row_ids(tokenizer, text, seq_len)
            n_pred = max(len(ids) - 1, 0)
            nll = 0.0
            if n_pred > 0:
                x = torch.tensor([ids], dtype=torch.long)
                logits = model(input_ids=x).logits[0, :-1].double()
                lp = torch.log_softmax(logits, dim=-1)
                tgt = x[0, 1:]
                nll = float(-lp.gather(1, tgt[:, None]).sum())
            total_nll += nll
            total_tokens += n_pred
            per_row.append({"input_ids": ids, "tokens": n_pred, "nll": nll})
    loss = total_nll / total_tokens
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "tokens": total_tokens,
        "seq_len": seq_len,
        "rows": len(texts),
        "eos_token_id": tokenizer.eos_token_id,
        "per_row": per_row,
    }


def write_eval_json(path: Path, ev: dict) -> None:
    """Like write_json, but one line per row in `per_row`."""
    lines = ["{"]
    for k, v in ev.items():
        if k != "per_row":
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    rows = [f"    {json.dumps(r, ensure_ascii=False)}" for r in ev["per_row"]]
    lines.append('  "per_row": [')
    lines.append(",\n".join(rows))
    lines.append("  ]")
    lines.append("}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == ev


def python_info() -> str:
    return f"python {sys.version.split()[0]}"


# --------------------------------------------------------------------------------------
# GGUF metadata (key/value section only). gguf.GGUFReader parses every tokenizer string
# into numpy views and takes seconds; this reads the scalars and strings directly and
# reports arrays by their length.
# --------------------------------------------------------------------------------------

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}


def gguf_kv(path: Path) -> dict:
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", m, 4)
        pos = 24

        def string(pos):
            (n,) = struct.unpack_from("<Q", m, pos)
            return m[pos + 8:pos + 8 + n].decode("utf-8"), pos + 8 + n

        def value(t, pos):
            if t in _GGUF_SCALARS:
                fmt = _GGUF_SCALARS[t]
                return struct.unpack_from(fmt, m, pos)[0], pos + struct.calcsize(fmt)
            if t == 8:
                return string(pos)
            if t == 9:
                et, n = struct.unpack_from("<IQ", m, pos)
                pos += 12
                if et in _GGUF_SCALARS:
                    return {"array": et, "len": n}, pos + n * struct.calcsize(_GGUF_SCALARS[et])
                for _ in range(n):
                    _, pos = value(et, pos)
                return {"array": et, "len": n}, pos
            raise ValueError(f"{path}: unknown GGUF value type {t}")

        out = {"GGUF.version": version, "GGUF.tensor_count": n_tensors}
        for _ in range(n_kv):
            key, pos = string(pos)
            (t,) = struct.unpack_from("<I", m, pos)
            out[key], pos = value(t, pos + 4)
        return out


# A generated token is compared only where transformers chose it clearly: its logit beats
# the runner-up's by at least this much. Past a nearer tie, loam and transformers (exact up
# to f32 rounding, which differs by CPU kernel: AVX2 against AMX / AVX-512) may part.
TIE_GAP = 1e-3


def greedy(model, ids: list[int], stop: list[int], max_new_tokens: int) -> dict:
    """transformers' greedy `generate` after `ids`, as `loam generate --json` reports it:
    the new ids without the stop token, `stop` ("stop_token" or "length"), and `decided`,
    how many of the new tokens (the stop token included) led the runner-up by TIE_GAP or
    more before the first that did not."""
    import torch

    with torch.no_grad():
        res = model.generate(torch.tensor([ids]), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=stop,
                             pad_token_id=stop[0], output_scores=True,
                             return_dict_in_generate=True)
    new = res.sequences[0, len(ids):].tolist()
    decided = 0
    for scores in res.scores:
        top2 = torch.topk(scores[0].float(), 2).values
        if not (top2[0] - top2[1]).item() >= TIE_GAP:
            break
        decided += 1
    stopped = bool(new) and new[-1] in stop
    if stopped:
        new = new[:-1]
    return {"ids": new, "stop": "stop_token" if stopped else "length", "decided": decided}


def fixture_args(doc: str):
    """The command line every torch-built fixtures_*.py takes: --out, --force, --threads."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="fixture dir (default $LOAM_FIXTURES or ~/.cache/loam/fixtures)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args()
    args.out = (args.out or default_out_dir()).expanduser().resolve()
    return args


def missing_stamps(out_dir: Path, names: tuple[str, ...]) -> bool:
    """Says which fixtures another script must build first; True when one is missing."""
    for name in names:
        if not (out_dir / name).is_file():
            print(f"error: {out_dir} has no {name}; run scripts/oracle/build.sh",
                  file=sys.stderr)
            return True
    return False


def build_once(out_dir: Path, owned: str, stamp_name: str, stamp: str, complete, build,
               force: bool, what: str) -> int:
    """The stamp protocol of the fixture scripts: nothing is done when DIR/stamp_name holds
    `stamp` and `complete()`; otherwise `build(tmp)` writes tmp/owned under a temporary
    directory of DIR, which replaces DIR/owned, and the stamp is written last."""
    import tempfile
    stamp_file = out_dir / stamp_name
    if not force and stamp_matches(stamp_file, stamp) and complete():
        print(f"{what} fixtures up to date: {out_dir / owned} (stamp {stamp[:12]})")
        return 0
    t0 = time.monotonic()
    log(f"building {what} fixtures in {out_dir / owned}")
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{owned}-", dir=out_dir))
    try:
        build(tmp)
        replace_path(tmp / owned, out_dir / owned)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp_file.write_text(stamp + "\n")
    size = sum(s for _, s in tree_listing(out_dir / owned))
    log(f"done in {time.monotonic() - t0:.0f}s; {owned}/ {human(size)}; stamp {stamp[:12]}")
    return 0

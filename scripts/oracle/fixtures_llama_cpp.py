#!/usr/bin/env python3
"""GGUF files written by llama.cpp's own converter, for `loam gguf import` to read.

usage: fixtures_llama_cpp.py [--out DIR] [--force] [--converter DIR]

Runs llama.cpp's `convert_hf_to_gguf.py --outtype f32` (with the gguf-py it vendors) on tiny
fixture models and writes DIR/llama_cpp/ (DIR: --out, else $LOAM_FIXTURES, else
~/.cache/loam/fixtures):
  <name>.f32.gguf   for llama-gqa (Llama 3.1 rope scaling: only a `rope_freqs.weight`
                    tensor, no parameters), llama-mqa-tied (tied, biases, linear rope,
                    head_dim != hidden / heads) and mistral (written as `llama`)
  manifest.json     {"llama_cpp_python": version, "models": [{"name", "gguf", "source"}]}
The Rust tests compare loam's import of each with transformers' logits on the source model
(DIR/expected/<name>/logits.safetensors).

The converter is the one in llama-cpp-python's source (pinned in
scripts/requirements-llama-cpp.txt), unpacked by scripts/setup_llama_cpp.sh into
$LOAM_HOME/llama.cpp/<version>/ (--converter overrides). Needs the model fixtures
(fixtures_models.py) first.

Idempotent: DIR/llama_cpp.stamp holds a hash of this script, common.py, the converter
version, the package versions and DIR/models.stamp; built in a temporary directory and
renamed into place, stamp written last. Deterministic (f32, no timestamps in GGUF). About
10 s of CPU per model, most of it importing torch in the converter.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))

import common  # noqa: E402
from common import log  # noqa: E402

STAMP_NAME = "llama_cpp.stamp"
OWNED = "llama_cpp"
MODELS = ["llama-gqa", "llama-mqa-tied", "mistral"]
PIN = HERE.parent / "requirements-llama-cpp.txt"


def pinned_version() -> str:
    for line in PIN.read_text().splitlines():
        if line.startswith("llama-cpp-python=="):
            return line.split("==", 1)[1].strip()
    raise SystemExit(f"error: no llama-cpp-python==VERSION line in {PIN}")


def default_converter(version: str) -> Path:
    home = Path(os.environ.get("LOAM_HOME") or Path.home() / ".cache" / "loam")
    return home / "llama.cpp" / version


def convert(converter: Path, model_dir: Path, out: Path) -> None:
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # use the gguf-py that ships with this converter
    cmd = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(model_dir),
           "--outtype", "f32", "--outfile", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-4000:])
        raise SystemExit(f"error: llama.cpp's converter failed on {model_dir}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="fixtures dir (default $LOAM_FIXTURES or ~/.cache/loam/fixtures)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    ap.add_argument("--converter", type=Path, default=None,
                    help="llama.cpp source dir holding convert_hf_to_gguf.py and gguf-py")
    args = ap.parse_args()
    out_dir = (args.out or common.default_out_dir()).resolve()
    version = pinned_version()
    converter = (args.converter or default_converter(version)).resolve()
    if not (converter / "convert_hf_to_gguf.py").is_file():
        print(f"error: llama.cpp's converter is missing in {converter}: run scripts/setup.sh "
              f"(scripts/setup_llama_cpp.sh unpacks it)", file=sys.stderr)
        return 1
    models_stamp = out_dir / "models.stamp"
    if not models_stamp.is_file():
        print(f"error: {models_stamp} is missing: run scripts/oracle/fixtures_models.py "
              f"--out {out_dir} first (scripts/oracle/build.sh runs both)", file=sys.stderr)
        return 1

    stamp_file = out_dir / STAMP_NAME
    h = hashlib.sha256(common.source_stamp([Path(__file__).resolve(), HERE / "common.py"]).encode())
    h.update(f"\0llama-cpp-python {version}\0".encode())
    h.update(models_stamp.read_bytes())
    stamp = h.hexdigest()
    if (not args.force and common.stamp_matches(stamp_file, stamp)
            and (out_dir / OWNED / "manifest.json").is_file()):
        print(f"fixtures up to date: {out_dir}/{OWNED} (stamp {stamp[:12]})")
        return 0
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = out_dir / f".tmp-llama-cpp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / OWNED).mkdir(parents=True)
    try:
        entries = []
        for name in MODELS:
            src = out_dir / "models" / name
            gguf_name = f"{name}.f32.gguf"
            log(f"llama.cpp converter: {name}")
            convert(converter, src, tmp / OWNED / gguf_name)
            entries.append({"name": name, "gguf": gguf_name, "source": f"models/{name}",
                            "sha256": common.sha256_file(tmp / OWNED / gguf_name)})
        common.write_json(tmp / OWNED / "manifest.json",
                          {"generated_by": "scripts/oracle/fixtures_llama_cpp.py",
                           "llama_cpp_python": version, "models": entries})
        common.replace_path(tmp / OWNED, out_dir / OWNED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp_file.write_text(stamp + "\n")
    log(f"wrote {out_dir / OWNED} (stamp {stamp[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

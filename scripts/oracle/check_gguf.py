#!/usr/bin/env python3
"""Check that gguf-py reads a GGUF file (written by loam) as expected.

usage: check_gguf.py FILE EXPECTED.json

EXPECTED.json (written by the loam-gguf oracle test):
  {"alignment": 32,
   "metadata": [{"key", "type", "elem_type"?, "value"}, ...],     # in file order
   "tensors":  [{"name", "type", "ne", "dequant": [...], "source": [...]?}, ...]}

Checks, with gguf-py as the reference:
  - metadata keys in order, their types, and values (nested arrays compared flattened,
    as gguf-py's reader flattens them);
  - tensor names in order, types, ne, data alignment;
  - gguf.quants.dequantize(tensor) equals "dequant" exactly (NaN where NaN);
  - when "source" is given, gguf.quants.quantize(source) gives exactly the file's bytes.

Exits 0 and prints "ok: ..." on success; prints every mismatch and exits 1 otherwise.
"""

import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V

TYPE_NAMES = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32",
              V.INT32: "i32", V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "string",
              V.ARRAY: "array", V.UINT64: "u64", V.INT64: "i64", V.FLOAT64: "f64"}
QUANTIZABLE = {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1}


def flatten(v):
    if isinstance(v, list):
        return [x for item in v for x in flatten(item)]
    return [v]


def main():
    path, expected_path = sys.argv[1], sys.argv[2]
    expected = json.load(open(expected_path))
    errors = []
    r = gguf.GGUFReader(path)

    if r.alignment != expected["alignment"]:
        errors.append(f"alignment {r.alignment}, expected {expected['alignment']}")
    if r.data_offset % r.alignment:
        errors.append(f"data offset {r.data_offset} not aligned to {r.alignment}")

    fields = [(k, f) for k, f in r.fields.items() if not k.startswith("GGUF.")]
    keys = [k for k, _ in fields]
    want_keys = [m["key"] for m in expected["metadata"]]
    if keys != want_keys:
        errors.append(f"metadata keys {keys}, expected {want_keys}")
    for (key, field), m in zip(fields, expected["metadata"]):
        vtype = TYPE_NAMES[field.types[0]]
        if vtype != m["type"]:
            errors.append(f"{key}: type {vtype}, expected {m['type']}")
            continue
        if vtype == "array":
            # parts: key length, key, value type, element type, count, elements...
            elem = TYPE_NAMES[V(int(field.parts[3][0]))]
            count = int(field.parts[4][0])
            if elem != m["elem_type"] or count != len(m["value"]):
                errors.append(f"{key}: array of {count} {elem}, expected "
                              f"{len(m['value'])} {m['elem_type']}")
            got, want = field.contents(), flatten(m["value"])
        else:
            got, want = field.contents(), m["value"]
        if got != want:
            errors.append(f"{key}: value {got!r:.200}, expected {want!r:.200}")

    names = [t.name for t in r.tensors]
    want_names = [t["name"] for t in expected["tensors"]]
    if names != want_names:
        errors.append(f"tensors {names}, expected {want_names}")
    for t, e in zip(r.tensors, expected["tensors"]):
        where = f"tensor {t.name}"
        if t.tensor_type.name != e["type"]:
            errors.append(f"{where}: type {t.tensor_type.name}, expected {e['type']}")
            continue
        ne = [int(d) for d in t.shape]
        if ne != e["ne"]:
            errors.append(f"{where}: ne {ne}, expected {e['ne']}")
            continue
        if (t.data_offset - r.data_offset) % r.alignment:
            errors.append(f"{where}: data not aligned")
        shape = tuple(reversed(ne))
        deq = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).ravel()
        want = np.asarray(e["dequant"], dtype=np.float32)
        if deq.shape != want.shape or not np.array_equal(deq, want, equal_nan=True):
            diff = np.nanmax(np.abs(deq - want)) if deq.shape == want.shape else "shape"
            errors.append(f"{where}: gguf-py dequantization differs from loam's (max {diff})")
        if "source" in e and t.tensor_type in QUANTIZABLE:
            src = np.asarray(e["source"], dtype=np.float32).reshape(shape)
            q = gguf.quants.quantize(src, t.tensor_type)
            if q.tobytes() != t.data.tobytes():
                a = np.frombuffer(q.tobytes(), np.uint8)
                b = np.frombuffer(t.data.tobytes(), np.uint8)
                first = int(np.argmax(a != b)) if a.shape == b.shape else -1
                errors.append(f"{where}: gguf-py quantize gives other bytes "
                              f"(first difference at byte {first})")

    if errors:
        print(f"{path}: {len(errors)} mismatch(es) with gguf-py:")
        for e in errors:
            print("  " + e)
        sys.exit(1)
    print(f"ok: gguf-py reads {path}: {len(fields)} keys, {len(r.tensors)} tensors")


if __name__ == "__main__":
    main()

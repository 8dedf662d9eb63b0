//! Oracle tests: loam-gguf against gguf-py (the `gguf` Python package, 0.19).
//!
//! Fixtures come from `scripts/oracle/fixtures_gguf.py` (under `$LOAM_FIXTURES`, default
//! `~/.cache/loam/fixtures`); the write test runs `scripts/oracle/check_gguf.py` with the
//! oracle environment's Python (`$LOAM_VENV`, default `~/.cache/loam/venv`).

use std::path::{Path, PathBuf};
use std::process::Command;

use loam_gguf::{dequantize, quantize, GgmlType, GgufFile, GgufWriter, Value};
use serde_json::{json, Value as Json};

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

fn fixtures() -> PathBuf {
    let root = std::env::var_os("LOAM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/loam/fixtures"));
    let dir = root.join("gguf");
    if !dir.join("smollm2.json").exists() || !dir.join("synthetic.json").exists() {
        panic!(
            "fixtures missing: run scripts/oracle/build.sh (expected {} from \
             scripts/oracle/fixtures_gguf.py)",
            dir.display()
        );
    }
    dir
}

fn smollm2_path() -> PathBuf {
    let f = fixtures();
    f.parent()
        .unwrap()
        .join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn read_json(path: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A little-endian f32 C-order .npy file: (shape, values).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        _ => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&b[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let dims = header.split("'shape': (").nth(1).unwrap();
    let dims = &dims[..dims.find(')').unwrap()];
    let shape = dims
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = b[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, data)
}

/// Bit-for-bit equality (NaN matches NaN): loam does the same f32 operations in the same
/// order as gguf-py, so nothing looser is needed.
fn same_f32(a: &[f32], b: &[f32]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} values vs {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if !(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())) {
            return Err(format!("element {i}: {x} vs {y}"));
        }
    }
    Ok(())
}

/// Whether a metadata value equals the JSON the fixture script wrote for it.
fn value_eq(v: &Value, j: &Json) -> bool {
    match v {
        Value::U8(x) => j.as_u64() == Some(u64::from(*x)),
        Value::U16(x) => j.as_u64() == Some(u64::from(*x)),
        Value::U32(x) => j.as_u64() == Some(u64::from(*x)),
        Value::U64(x) => j.as_u64() == Some(*x),
        Value::I8(x) => j.as_i64() == Some(i64::from(*x)),
        Value::I16(x) => j.as_i64() == Some(i64::from(*x)),
        Value::I32(x) => j.as_i64() == Some(i64::from(*x)),
        Value::I64(x) => j.as_i64() == Some(*x),
        // The JSON holds the f32 widened to f64; narrowing back is exact.
        Value::F32(x) => j.as_f64().map(|f| f as f32) == Some(*x),
        Value::F64(x) => j
            .as_f64()
            .is_some_and(|f| f == *x || (f - x).abs() <= 1e-15 * x.abs()),
        Value::Bool(x) => j.as_bool() == Some(*x),
        Value::String(x) => j.as_str() == Some(x.as_str()),
        Value::Array(a) => j.as_array().is_some_and(|items| {
            items.len() == a.len() && a.values().iter().zip(items).all(|(v, j)| value_eq(v, j))
        }),
    }
}

fn check_metadata(f: &GgufFile, expected: &Json) {
    let want = expected["metadata"].as_array().unwrap();
    let got: Vec<(&str, &Value)> = f.metadata_entries().collect();
    let got_keys: Vec<&str> = got.iter().map(|(k, _)| *k).collect();
    let want_keys: Vec<&str> = want.iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(got_keys, want_keys, "metadata keys and order");
    for ((key, v), m) in got.iter().zip(want) {
        assert_eq!(v.value_type().name(), m["type"], "type of {key}");
        if let Value::Array(a) = v {
            assert_eq!(
                a.elem_type().name(),
                m["elem_type"],
                "element type of {key}"
            );
            assert_eq!(
                a.len() as u64,
                m["len"].as_u64().unwrap(),
                "length of {key}"
            );
            if let Some(inner) = m.get("inner_type") {
                let first = a.values()[0].as_array().unwrap();
                assert_eq!(first.elem_type().name(), inner, "inner type of {key}");
            }
            if let Some(head) = m.get("head") {
                let head = head.as_array().unwrap();
                let ok = a.values()[..head.len()]
                    .iter()
                    .zip(head)
                    .all(|(v, j)| value_eq(v, j));
                assert!(ok, "{key}: first items differ: {head:?}");
                continue;
            }
        }
        assert!(value_eq(v, &m["value"]), "{key}: {v:?} vs {}", m["value"]);
    }
}

fn check_tensor_infos(f: &GgufFile, expected: &Json) {
    assert_eq!(f.data_offset(), expected["data_offset"].as_u64().unwrap());
    assert_eq!(f.alignment(), expected["alignment"].as_u64().unwrap());
    let want = expected["tensors"].as_array().unwrap();
    assert_eq!(f.tensors().len(), want.len());
    for (t, w) in f.tensors().iter().zip(want) {
        let ne: Vec<u64> = w["ne"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.name(), w["name"], "tensor order");
        assert_eq!(t.ggml_type().name(), w["type"], "{}", t.name());
        assert_eq!(u64::from(t.ggml_type().id()), w["type_id"], "{}", t.name());
        assert_eq!(t.ne(), &ne[..], "{}", t.name());
        assert_eq!(t.offset(), w["offset"], "{}", t.name());
        assert_eq!(t.n_bytes(), w["n_bytes"], "{}", t.name());
    }
}

#[test]
fn synthetic_metadata_of_every_type_matches_gguf_py() {
    let dir = fixtures();
    let f = GgufFile::open(dir.join("synthetic.gguf")).unwrap();
    check_metadata(&f, &read_json(&dir.join("synthetic.json")));
    assert_eq!(f.get_str("test.string").unwrap(), "héllo ⟨wörld⟩ 🦙");
    let nested = f.get::<Vec<Vec<&str>>>("test.arr.nested_strings").unwrap();
    assert_eq!(nested, vec![vec!["x", "y"], vec!["z"]]);
}

#[test]
fn synthetic_tensor_infos_match_gguf_py() {
    let dir = fixtures();
    let f = GgufFile::open(dir.join("synthetic.gguf")).unwrap();
    check_tensor_infos(&f, &read_json(&dir.join("synthetic.json")));
}

#[test]
fn dequantization_of_every_type_equals_gguf_py() {
    let dir = fixtures();
    let f = GgufFile::open(dir.join("synthetic.gguf")).unwrap();
    let expected = read_json(&dir.join("synthetic.json"));
    let mut types_seen = Vec::new();
    for w in expected["tensors"].as_array().unwrap() {
        let name = w["name"].as_str().unwrap();
        if w.get("loam_unsupported").is_some() {
            continue;
        }
        let (shape, want) = read_npy(&dir.join("synthetic").join(format!("{name}.npy")));
        let t = f.tensor(name).unwrap();
        assert_eq!(t.shape(), shape, "{name}");
        let got = f.dequantize(name).unwrap();
        same_f32(&got, &want).unwrap_or_else(|e| panic!("{name} ({}): {e}", t.ggml_type()));
        types_seen.push(t.ggml_type());
    }
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        assert!(types_seen.contains(&ty), "no fixture tensor of type {ty}");
    }
}

#[test]
fn quantization_gives_gguf_py_bytes_exactly() {
    let dir = fixtures();
    let f = GgufFile::open(dir.join("synthetic.gguf")).unwrap();
    let mut checked = 0;
    for t in f.tensors().iter().filter(|t| t.name().starts_with("q.")) {
        // q.<type>.<source suffix>
        let suffix = t.name().rsplit('.').next().unwrap();
        let src = f.dequantize(&format!("src.{suffix}")).unwrap();
        let bytes = quantize(t.ggml_type(), &src).unwrap();
        let want = f.tensor_bytes(t.name()).unwrap();
        if let Some(i) = (0..want.len()).find(|&i| bytes[i] != want[i]) {
            panic!(
                "{} ({}): byte {i} is {} but gguf-py wrote {}",
                t.name(),
                t.ggml_type(),
                bytes[i],
                want[i]
            );
        }
        assert_eq!(bytes.len(), want.len());
        checked += 1;
    }
    assert_eq!(checked, 14);
}

#[test]
fn unsupported_type_error_names_tensor_type_and_alternatives() {
    let dir = fixtures();
    let f = GgufFile::open(dir.join("synthetic.gguf")).unwrap();
    let msg = f.dequantize("x.iq4_nl").unwrap_err().to_string();
    for part in [
        "synthetic.gguf",
        "'x.iq4_nl'",
        "IQ4_NL (ggml id 20)",
        "Q4_K, Q5_K, Q6_K",
    ] {
        assert!(msg.contains(part), "{msg}");
    }
}

#[test]
fn smollm2_metadata_matches_gguf_py() {
    let dir = fixtures();
    let f = GgufFile::open(smollm2_path()).unwrap();
    let expected = read_json(&dir.join("smollm2.json"));
    assert_eq!(f.version(), expected["version"].as_u64().unwrap() as u32);
    check_metadata(&f, &expected);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        49152
    );
}

#[test]
fn smollm2_tensor_infos_match_gguf_py() {
    let dir = fixtures();
    let f = GgufFile::open(smollm2_path()).unwrap();
    check_tensor_infos(&f, &read_json(&dir.join("smollm2.json")));
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!((q.ggml_type(), q.shape()), (GgmlType::Q4_1, vec![576, 576]));
}

#[test]
fn smollm2_dequantization_equals_gguf_py() {
    let dir = fixtures();
    let f = GgufFile::open(smollm2_path()).unwrap();
    let expected = read_json(&dir.join("smollm2.json"));
    for w in expected["tensors"].as_array().unwrap() {
        let name = w["name"].as_str().unwrap();
        let got = f.dequantize(name).unwrap();

        let stats = &w["stats"];
        let (mut sum, mut sum_sq) = (0f64, 0f64);
        let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
        for chunk in got.chunks(4096) {
            let (s, q) = chunk.iter().fold((0f64, 0f64), |(s, q), &x| {
                (s + f64::from(x), q + f64::from(x) * f64::from(x))
            });
            sum += s;
            sum_sq += q;
            min = chunk.iter().copied().fold(min, f32::min);
            max = chunk.iter().copied().fold(max, f32::max);
        }
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 + 1e-9 * b.abs();
        assert_eq!(f64::from(min), stats["min"].as_f64().unwrap(), "{name} min");
        assert_eq!(f64::from(max), stats["max"].as_f64().unwrap(), "{name} max");
        assert!(
            close(sum, stats["sum"].as_f64().unwrap()),
            "{name} sum {sum} vs {stats}"
        );
        assert!(
            close(sum_sq, stats["sum_sq"].as_f64().unwrap()),
            "{name} sum_sq {sum_sq}"
        );

        if w.get("saved").is_some() {
            let (shape, want) = read_npy(&dir.join("smollm2").join(format!("{name}.npy")));
            let t = f.tensor(name).unwrap();
            assert_eq!(&shape[1..], &t.shape()[1..], "{name}");
            same_f32(&got[..want.len()], &want)
                .unwrap_or_else(|e| panic!("{name} ({}): {e}", t.ggml_type()));
        }
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("loam-gguf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(f64::from(*x)),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(a) => Json::Array(a.values().iter().map(value_json).collect()),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
    }
}

#[test]
fn files_written_by_loam_are_read_by_gguf_py() {
    let venv = std::env::var_os("LOAM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/loam/venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "fixtures missing: run scripts/oracle/build.sh (no oracle Python at {})",
        python.display()
    );
    let fixture = GgufFile::open(fixtures().join("synthetic.gguf")).unwrap();
    let tmp = TempDir::new("write-oracle");
    let path = tmp.0.join("loam.gguf");

    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", "llama".into()),
        ("general.alignment", 64u32.into()),
        ("t.u8", 200u8.into()),
        ("t.i8", (-100i8).into()),
        ("t.u16", 60000u16.into()),
        ("t.i16", (-30000i16).into()),
        ("t.u32", 4_000_000_000u32.into()),
        ("t.i32", (-2_000_000_000i32).into()),
        ("t.f32", 0.1f32.into()),
        ("t.bool", true.into()),
        ("t.string", "héllo 🦙".into()),
        ("t.u64", u64::MAX.into()),
        ("t.i64", i64::MIN.into()),
        ("t.f64", (-1.5e300f64).into()),
        ("t.arr.u8", vec![0u8, 255].into()),
        ("t.arr.i32", vec![-1i32, 7].into()),
        ("t.arr.f32", vec![0.25f32, -1e-20].into()),
        ("t.arr.bool", vec![false, true].into()),
        ("t.arr.string", vec!["<|im_start|>", "", "Ġthe"].into()),
        ("t.arr.u64", vec![u64::MAX].into()),
        ("t.arr.f64", vec![2.5f64, -0.0].into()),
        ("t.arr.empty", Vec::<u32>::new().into()),
        (
            "t.arr.nested",
            vec![vec!["x", "y"], vec![], vec!["z"]].into(),
        ),
    ];

    // One tensor per writable type from a shared source, plus K-quant blocks copied raw.
    let source: Vec<f32> = (0..3 * 64)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect();
    let mut w = GgufWriter::new(&path);
    for (k, v) in &metadata {
        w.add_metadata(k, v.clone()).unwrap();
    }
    let mut tensors = Vec::new();
    for &ty in GgmlType::QUANTIZABLE {
        let name = format!("w.{}", ty.name().to_lowercase());
        w.add_tensor(&name, &[64, 3], ty).unwrap();
        tensors.push((name, ty, None));
    }
    for k in ["k.q4_k", "k.q6_k"] {
        let t = fixture.tensor(k).unwrap();
        w.add_tensor(k, t.ne(), t.ggml_type()).unwrap();
        tensors.push((
            k.to_string(),
            t.ggml_type(),
            Some(fixture.tensor_bytes(k).unwrap()),
        ));
    }
    let mut data = w.start_data().unwrap();
    let mut expected_tensors = Vec::new();
    for (name, ty, raw) in &tensors {
        let (bytes, n) = match raw {
            Some(raw) => {
                data.write_tensor_bytes(name, raw).unwrap();
                (
                    raw.to_vec(),
                    fixture.tensor(name).unwrap().n_elements() as usize,
                )
            }
            None => {
                data.write_tensor_f32(name, &source).unwrap();
                (quantize(*ty, &source).unwrap(), source.len())
            }
        };
        let mut deq = vec![0f32; n];
        dequantize(*ty, &bytes, &mut deq).unwrap();
        let ne: Vec<u64> = match raw {
            Some(_) => fixture.tensor(name).unwrap().ne().to_vec(),
            None => vec![64, 3],
        };
        let mut e = json!({"name": name, "type": ty.name(), "ne": ne,
                           "dequant": deq.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()});
        if raw.is_none() {
            e["source"] = json!(source.iter().map(|&x| f64::from(x)).collect::<Vec<_>>());
        }
        expected_tensors.push(e);
    }
    data.finish().unwrap();

    let expected = json!({
        "alignment": 64,
        "metadata": metadata.iter().map(|(k, v)| {
            let mut m = json!({"key": k, "type": v.value_type().name(), "value": value_json(v)});
            if let Value::Array(a) = v {
                m["elem_type"] = json!(a.elem_type().name());
            }
            m
        }).collect::<Vec<_>>(),
        "tensors": expected_tensors,
    });
    let expected_path = tmp.0.join("expected.json");
    std::fs::write(&expected_path, serde_json::to_vec(&expected).unwrap()).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/oracle/check_gguf.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .arg(&expected_path)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check_gguf.py failed:\n{report}");
    assert!(report.contains("ok: gguf-py reads"), "{report}");
}

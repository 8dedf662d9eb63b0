//! loam's 4-bit format against bitsandbytes (scripts/oracle/fixtures_qlora.py): the
//! dequantization of bitsandbytes' bytes is bit-exact, loam's quantization writes
//! bitsandbytes' bytes (ties included), and quantizing a 16-bit checkpoint at load gives
//! the tensors transformers saved for the same `BitsAndBytesConfig`.

use super::double_quant::{dynamic_map, NestedAbsmax};
use super::nf4::{Absmax, QuantType, Quantized4bit, BLOCKSIZE};
use super::{bnb, LinearWeight, Quantize};
use crate::testing::fixtures;
use crate::weights::Weights;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

fn read(path: &std::path::Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/oracle/build.sh)", path.display()))
        .into_iter()
        .collect()
}

struct Case {
    name: String,
    quant_type: QuantType,
    double_quant: bool,
    shape: Vec<i64>,
}

fn cases() -> (Vec<Case>, HashMap<String, Tensor>) {
    let dir = fixtures().join("qlora");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tensors.json")).unwrap()).unwrap();
    let cases = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().into(),
            quant_type: QuantType::parse(c["quant_type"].as_str().unwrap()).unwrap(),
            double_quant: c["double_quant"].as_bool().unwrap(),
            shape: c["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect(),
        })
        .collect::<Vec<_>>();
    assert!(cases.len() >= 10, "the oracle's tensor cases");
    (cases, read(&dir.join("tensors.safetensors")))
}

/// bitsandbytes' quantized tensor `case`, as loam holds it.
fn bitsandbytes_tensor(case: &Case, t: &HashMap<String, Tensor>) -> Quantized4bit {
    let get = |k: &str| t[&format!("{}.{k}", case.name)].shallow_clone();
    let absmax = if case.double_quant {
        Absmax::Nested(NestedAbsmax {
            codes: get("absmax"),
            absmax: get("nested_absmax"),
            code: get("nested_quant_map"),
            blocksize: 256,
            offset: get("offset").double_value(&[0]) as f32,
        })
    } else {
        Absmax::Plain(get("absmax"))
    };
    Quantized4bit {
        packed: get("packed"),
        absmax,
        code: get("quant_map"),
        quant_type: case.quant_type,
        blocksize: BLOCKSIZE,
        shape: case.shape.clone(),
        dtype: get("input").kind(),
    }
}

/// Equal bit for bit (NaN-free tensors of the same dtype and shape).
fn assert_bits_equal(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    assert_eq!(got.kind(), want.kind(), "{what}: dtype");
    let (g, w) = (
        got.contiguous().view_dtype(Kind::Uint8),
        want.contiguous().view_dtype(Kind::Uint8),
    );
    let differ = g.ne_tensor(&w).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(differ, 0, "{what}: {differ} bytes differ");
}

#[test]
fn dequantizing_bitsandbytes_tensors_is_bit_exact() {
    let (cases, t) = cases();
    for case in &cases {
        let q = bitsandbytes_tensor(case, &t);
        for (kind, key) in [
            (Kind::Float, "dequant_f32"),
            (Kind::BFloat16, "dequant_bf16"),
        ] {
            let want = &t[&format!("{}.{key}", case.name)];
            assert_bits_equal(&format!("{} {key}", case.name), &q.dequantize(kind), want);
        }
    }
}

#[test]
fn quantizing_writes_bitsandbytes_bytes_ties_included() {
    let (cases, t) = cases();
    for case in &cases {
        let input = &t[&format!("{}.input", case.name)];
        let ours = Quantized4bit::quantize(input, case.quant_type, BLOCKSIZE, case.double_quant);
        let theirs = bitsandbytes_tensor(case, &t);
        let name = &case.name;
        assert_bits_equal(&format!("{name} codes"), &ours.packed, &theirs.packed);
        assert_bits_equal(&format!("{name} quant_map"), &ours.code, &theirs.code);
        match (&ours.absmax, &theirs.absmax) {
            (Absmax::Plain(a), Absmax::Plain(b)) => {
                assert_bits_equal(&format!("{name} absmax"), a, b)
            }
            (Absmax::Nested(a), Absmax::Nested(b)) => {
                assert_bits_equal(&format!("{name} absmax codes"), &a.codes, &b.codes);
                assert_bits_equal(&format!("{name} nested_absmax"), &a.absmax, &b.absmax);
                assert_bits_equal(&format!("{name} nested_quant_map"), &a.code, &b.code);
                assert_eq!(a.offset.to_bits(), b.offset.to_bits(), "{name} offset");
            }
            _ => panic!("{name}: double quantization differs"),
        }
    }
}

#[test]
fn the_dynamic_map_is_bitsandbytes_map() {
    let (_, t) = cases();
    let theirs: Vec<f32> = Vec::try_from(&t["nf4-f32-dq-rows40.nested_quant_map"]).unwrap();
    let ours = dynamic_map();
    assert!(ours
        .iter()
        .zip(&theirs)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

fn qlora_manifest() -> serde_json::Value {
    let path = fixtures().join("qlora/manifest.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every 4-bit linear of the saved models: quantizing its 16-bit source at load (as
/// `model.quantize` does) gives the tensors transformers saved, byte for byte, its
/// quant-state JSON included; and reading the saved ones back dequantizes equally.
#[test]
fn quantizing_at_load_gives_the_tensors_transformers_saved() {
    let root = fixtures();
    let mut checked = 0;
    for m in qlora_manifest()["models"].as_array().unwrap() {
        if m["storage"] != "uint8" {
            continue;
        }
        let quant_type = QuantType::parse(m["quant_type"].as_str().unwrap()).unwrap();
        let double = m["double_quant"].as_bool().unwrap();
        let mut saved = Weights::open(&root.join(m["dir"].as_str().unwrap())).unwrap();
        let mut source =
            Weights::open(&root.join("models").join(m["source"].as_str().unwrap())).unwrap();
        let file = read(
            &root
                .join(m["dir"].as_str().unwrap())
                .join("model.safetensors"),
        );
        for name in file
            .keys()
            .filter(|k| k.ends_with("_proj.weight") || *k == "lm_head.weight")
        {
            if !bnb::is_quantized(&saved, name) {
                continue;
            }
            let dense = source.load(name).unwrap();
            let ours = Quantized4bit::quantize(&dense, quant_type, BLOCKSIZE, double);
            for (key, tensor) in bnb::state_dict(&ours, name) {
                assert_bits_equal(&format!("{} {key}", m["name"]), &tensor, &file[&key]);
            }
            let theirs = bnb::read(&mut saved, name, &dense.size()).unwrap();
            assert_bits_equal(
                name,
                &theirs.dequantize(Kind::Float),
                &ours.dequantize(Kind::Float),
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} weights checked");
}

/// A `-bnb-4bit` directory loads 4-bit (its skipped modules dense, a quantized lm_head
/// dequantized), and `--quantize nf4` on the 16-bit source leaves `lm_head` and skipped
/// modules dense.
#[test]
fn which_linears_are_4bit() {
    let root = fixtures();
    let skip_dir = root.join("qlora/models/llama-gqa-bnb-nf4-skip");
    let mut lm = crate::model::load(&skip_dir, Kind::Float, Device::Cpu).unwrap();
    for (path, linear) in lm.linears_mut() {
        assert_eq!(
            linear.weight.is_quantized(),
            !path.ends_with("down_proj"),
            "{path}"
        );
    }
    let source = root.join("models/llama-gqa");
    let skip = ["mlp.down_proj".to_string()];
    let mut lm =
        crate::model::load_with(&source, Kind::Float, Device::Cpu, Quantize::Nf4, &skip).unwrap();
    assert_eq!(lm.lm_head.kind(), Kind::Float);
    let quantized: Vec<bool> = lm
        .linears_mut()
        .iter()
        .map(|(_, l)| l.weight.is_quantized())
        .collect();
    assert_eq!(quantized.iter().filter(|q| **q).count(), 12);
    let mut dense = crate::model::load(&source, Kind::Float, Device::Cpu).unwrap();
    assert!(dense
        .linears_mut()
        .iter()
        .all(|(_, l)| matches!(l.weight, LinearWeight::Dense(_))));
}

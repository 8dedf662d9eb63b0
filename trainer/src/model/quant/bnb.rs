//! bitsandbytes' 4-bit checkpoints as transformers saves them (`save_pretrained` of a model
//! loaded with `BitsAndBytesConfig(load_in_4bit=True)`, the `…-bnb-4bit` models on the Hub).
//!
//! Beside each quantized `X.weight` (the packed codes, `uint8 [ceil(n/2), 1]`, or the same
//! bytes viewed as `bnb_4bit_quant_storage`):
//! ```text
//! X.weight.absmax                        f32 [blocks], or u8 [blocks] with double quantization
//! X.weight.quant_map                     f32 [16]   the code values
//! X.weight.nested_absmax                 f32 [ceil(blocks / 256)]      (double quantization)
//! X.weight.nested_quant_map              f32 [256]                     (double quantization)
//! X.weight.quant_state.bitsandbytes__nf4 u8: JSON {quant_type, blocksize, dtype, shape,
//!                                         nested_blocksize, nested_dtype, nested_offset}
//! ```
//! and `config.json` has `quantization_config` (`quant_method: "bitsandbytes"`,
//! `load_in_4bit`, `bnb_4bit_quant_type`, `bnb_4bit_use_double_quant`, …).

use super::double_quant::NestedAbsmax;
use super::nf4::{Absmax, QuantType, Quantized4bit};
use super::Quantization;
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tch::{Kind, Tensor};

const QUANT_STATE: &str = ".quant_state.bitsandbytes__";

/// The `quant_state.bitsandbytes__*` JSON.
#[derive(Debug, Deserialize)]
struct QuantStateJson {
    quant_type: String,
    blocksize: i64,
    dtype: String,
    shape: Vec<i64>,
    nested_blocksize: Option<i64>,
    nested_offset: Option<f64>,
}

/// Reads `config.json`'s `quantization_config`: the bitsandbytes 4-bit settings, or an
/// error naming a format loam does not read.
pub fn parse_quantization_config(cfg: &serde_json::Value) -> Result<Quantization> {
    let str_key = |key: &str| cfg.get(key).and_then(|v| v.as_str());
    let bool_key = |key: &str| cfg.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    // Old configs (transformers < 4.30) had no quant_method; theirs was bitsandbytes.
    let method = str_key("quant_method").unwrap_or("bitsandbytes");
    if method != "bitsandbytes" {
        bail!(
            "key `quantization_config.quant_method` is `{method}`: the weights are quantized in a \
             format loam does not read. loam reads bitsandbytes 4-bit (NF4 / FP4) checkpoints; \
             for others, train on the 16-bit original (model.quantize = \"nf4\" makes it 4-bit at load)"
        );
    }
    if bool_key("load_in_8bit") {
        bail!(
            "key `quantization_config.load_in_8bit` is true: a bitsandbytes 8-bit (LLM.int8) \
             checkpoint, which loam does not read; use the 16-bit original, with \
             model.quantize = \"nf4\" for a 4-bit base"
        );
    }
    if !bool_key("load_in_4bit") {
        bail!("key `quantization_config` is bitsandbytes but sets neither load_in_4bit nor load_in_8bit");
    }
    let type_name = str_key("bnb_4bit_quant_type").unwrap_or("fp4");
    let quant_type = QuantType::parse(type_name).with_context(|| {
        format!("key `quantization_config.bnb_4bit_quant_type` is `{type_name}`; loam reads nf4 and fp4")
    })?;
    if let Some(storage) = str_key("bnb_4bit_quant_storage") {
        if storage_kind(storage).is_none() {
            bail!("key `quantization_config.bnb_4bit_quant_storage` is `{storage}`; loam reads uint8, bfloat16, float16 and float32 storage");
        }
    }
    let skip_modules = cfg
        .get("llm_int8_skip_modules")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(Quantization {
        quant_type,
        double_quant: bool_key("bnb_4bit_use_double_quant"),
        pre_quantized: true,
        skip_modules,
    })
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "uint8" => Kind::Uint8,
        "bfloat16" => Kind::BFloat16,
        "float16" => Kind::Half,
        "float32" => Kind::Float,
        _ => return None,
    })
}

fn dtype_kind(name: &str) -> Option<Kind> {
    storage_kind(name).filter(|&k| k != Kind::Uint8)
}

/// The quant-state key of the weight `name`, if the checkpoint has one.
fn quant_state_key(weights: &Weights, name: &str) -> Option<(String, QuantType)> {
    [QuantType::Nf4, QuantType::Fp4].into_iter().find_map(|t| {
        let key = format!("{name}{QUANT_STATE}{}", t.name());
        weights.contains(&key).then_some((key, t))
    })
}

/// Does the checkpoint hold `name` as a bitsandbytes 4-bit weight?
pub fn is_quantized(weights: &Weights, name: &str) -> bool {
    quant_state_key(weights, name).is_some()
}

fn read_state(weights: &mut Weights, name: &str) -> Result<(QuantStateJson, QuantType, String)> {
    let (state_key, quant_type) = quant_state_key(weights, name)
        .with_context(|| format!("`{name}` is not 4-bit quantized"))?;
    let bytes: Vec<u8> = Vec::try_from(weights.load(&state_key)?.to_kind(Kind::Uint8).view([-1]))?;
    let state: QuantStateJson = serde_json::from_slice(&bytes)
        .with_context(|| format!("tensor `{state_key}` is not bitsandbytes' quant-state JSON"))?;
    Ok((state, quant_type, state_key))
}

/// The shape and dtype of the 16-bit weight the 4-bit weight `name` was made from.
pub fn original_shape_and_dtype(weights: &mut Weights, name: &str) -> Result<(Vec<i64>, Kind)> {
    let (state, _, key) = read_state(weights, name)?;
    let dtype = dtype_kind(&state.dtype)
        .with_context(|| format!("tensor `{key}`: unknown dtype `{}`", state.dtype))?;
    Ok((state.shape, dtype))
}

/// Is `name` one of the tensors bitsandbytes stores beside the 4-bit weight `weight`?
pub fn is_quant_state_of(name: &str, weight: &str) -> bool {
    name.strip_prefix(weight).is_some_and(|rest| {
        [
            ".absmax",
            ".quant_map",
            ".nested_absmax",
            ".nested_quant_map",
        ]
        .contains(&rest)
            || rest.starts_with(QUANT_STATE)
    })
}

/// Reads the 4-bit weight `name`, checked against `shape` (on the CPU).
pub fn read(weights: &mut Weights, name: &str, shape: &[i64]) -> Result<Quantized4bit> {
    let (state, quant_type, state_key) = read_state(weights, name)?;
    let bad = |what: String| -> anyhow::Error {
        anyhow::anyhow!(
            "4-bit weight `{name}`: {what} (the checkpoint is damaged or not bitsandbytes' format)"
        )
    };
    if state.quant_type != quant_type.name() {
        return Err(bad(format!(
            "quant_type `{}` in `{state_key}`",
            state.quant_type
        )));
    }
    if state.shape != shape {
        bail!(
            "4-bit weight `{name}` has shape {:?}, but the model's config.json implies {shape:?}",
            state.shape
        );
    }
    if ![32, 64, 128, 256, 512, 1024, 2048, 4096].contains(&state.blocksize) {
        return Err(bad(format!("blocksize {}", state.blocksize)));
    }
    let dtype = dtype_kind(&state.dtype).ok_or_else(|| bad(format!("dtype `{}`", state.dtype)))?;
    let n: i64 = shape.iter().product();
    let blocks = (n + state.blocksize - 1) / state.blocksize;

    let packed = weights.load(name)?;
    let packed = packed.contiguous().view_dtype(Kind::Uint8).view([-1]);
    if packed.size()[0] < (n + 1) / 2 {
        return Err(bad(format!(
            "{} bytes of codes for {n} values",
            packed.size()[0]
        )));
    }
    let packed = packed.narrow(0, 0, (n + 1) / 2);
    let part =
        |weights: &mut Weights, suffix: &str, kind: Kind, len: Option<i64>| -> Result<Tensor> {
            let key = format!("{name}.{suffix}");
            let t = weights.load(&key)?.view([-1]);
            if t.kind() != kind || len.is_some_and(|l| t.size()[0] != l) {
                return Err(bad(format!("`{key}` is {:?} {:?}", t.kind(), t.size())));
            }
            Ok(t)
        };
    let code = part(weights, "quant_map", Kind::Float, Some(16))?;
    let absmax = if weights.contains(&format!("{name}.nested_absmax")) {
        let nested_blocksize = state
            .nested_blocksize
            .ok_or_else(|| bad("no nested_blocksize".into()))?;
        let offset = state
            .nested_offset
            .ok_or_else(|| bad("no nested_offset".into()))?;
        if nested_blocksize <= 0 {
            return Err(bad(format!("nested_blocksize {nested_blocksize}")));
        }
        let nested_blocks = (blocks + nested_blocksize - 1) / nested_blocksize;
        Absmax::Nested(NestedAbsmax {
            codes: part(weights, "absmax", Kind::Uint8, Some(blocks))?,
            absmax: part(weights, "nested_absmax", Kind::Float, Some(nested_blocks))?,
            code: part(weights, "nested_quant_map", Kind::Float, Some(256))?,
            blocksize: nested_blocksize,
            offset: offset as f32,
        })
    } else {
        Absmax::Plain(part(weights, "absmax", Kind::Float, Some(blocks))?)
    };
    Ok(Quantized4bit {
        packed,
        absmax,
        code,
        quant_type,
        blocksize: state.blocksize,
        shape: shape.to_vec(),
        dtype,
    })
}

/// The tensors bitsandbytes saves for the 4-bit weight `name` (`Linear4bit`'s state dict:
/// codes as `uint8 [ceil(n/2), 1]`), with its quant-state JSON written as Python's
/// `json.dumps` writes it.
pub fn state_dict(q: &Quantized4bit, name: &str) -> Vec<(String, Tensor)> {
    let cpu = |t: &Tensor| t.to_device(tch::Device::Cpu).contiguous();
    let dtype = crate::export::merge::torch_dtype_name(q.dtype);
    let shape: Vec<String> = q.shape.iter().map(|d| d.to_string()).collect();
    let mut json = format!(
        r#"{{"quant_type": "{}", "blocksize": {}, "dtype": "{dtype}", "shape": [{}]"#,
        q.quant_type.name(),
        q.blocksize,
        shape.join(", ")
    );
    let mut out = vec![(name.to_string(), cpu(&q.packed).view([-1, 1]))];
    match &q.absmax {
        Absmax::Plain(absmax) => out.push((format!("{name}.absmax"), cpu(absmax))),
        Absmax::Nested(n) => {
            out.push((format!("{name}.absmax"), cpu(&n.codes)));
            out.push((format!("{name}.nested_absmax"), cpu(&n.absmax)));
            out.push((format!("{name}.nested_quant_map"), cpu(&n.code)));
            json += &format!(
                r#", "nested_blocksize": {}, "nested_dtype": "float32", "nested_offset": {}"#,
                n.blocksize,
                python_float(n.offset as f64)
            );
        }
    }
    json.push('}');
    out.push((format!("{name}.quant_map"), cpu(&q.code)));
    out.push((
        format!("{name}{QUANT_STATE}{}", q.quant_type.name()),
        Tensor::from_slice(json.as_bytes()),
    ));
    out
}

/// `repr(float)` for the values an offset takes: the shortest round-trip digits, with
/// a `.0` on whole numbers.
fn python_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || s.contains('e') || !v.is_finite() {
        s
    } else {
        s + ".0"
    }
}

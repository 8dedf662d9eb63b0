//! The config keys of each family, read from a GGUF as llama.cpp reads it: a key llama.cpp
//! would default takes llama.cpp's default, so the imported model computes what llama.cpp
//! computes on the file (a file written by `loam gguf export` gives back the exported config).

use super::super::arch::{self, NO_SOFTCAP, QUERY_PRE_ATTN_SCALAR_KEY, SMOLLM3_NOPE_INTERVAL};
use super::shortest_f64;
use anyhow::{bail, Result};
use loam_gguf::{GgufFile, Value};
use serde_json::{json, Map, Value as Json};

/// Rotary tensors that become config keys instead of checkpoint tensors.
pub const ROPE_TENSORS: &[&str] = &[
    "rope_freqs.weight",
    "rope_factors_long.weight",
    "rope_factors_short.weight",
];

/// The family's config keys, and the query fold export applied (1 when the file has none).
pub fn read(
    f: &GgufFile,
    arch: &str,
    layers: u64,
    hidden: u64,
    heads: u64,
    head_dim: u64,
    context: u64,
) -> Result<(Map<String, Json>, f32)> {
    let key = |k: &str| format!("{arch}.{k}");
    let float = |k: &str| -> Result<Option<f64>> {
        Ok(match f.metadata(&key(k)) {
            None => None,
            Some(Value::F32(x)) => Some(shortest_f64(*x)),
            Some(Value::F64(x)) => Some(*x),
            Some(v) => bail!("{} is a {}, expected a float", key(k), v.type_name()),
        })
    };
    let mut c = Map::new();
    let mut query_fold = 1.0f32;
    match arch {
        "gemma2" | "gemma3" => {
            c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            let window = f.get_opt::<u32>(&key("attention.sliding_window"))?;
            let (default_window, default_pattern) = match arch {
                "gemma2" => (Some(4096), 2),
                _ => (None, 6),
            };
            // gemma3 slides only when the file names a window.
            let window = window.or(default_window).filter(|&w| w > 0);
            let sliding = match window {
                Some(_) => swa_pattern(
                    f,
                    &key("attention.sliding_window_pattern"),
                    layers,
                    default_pattern,
                )?,
                None => vec![false; layers as usize],
            };
            let types: Vec<&str> = sliding
                .iter()
                .map(|&s| {
                    if s {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    }
                })
                .collect();
            c.insert("layer_types".into(), json!(types));
            c.insert("sliding_window".into(), json!(window));
            // The scalar llama.cpp computes with, unless export folded the model's own.
            let assumed = arch::assumed_query_scalar(arch, layers, hidden, heads, head_dim);
            let scalar = match float_key(f, QUERY_PRE_ATTN_SCALAR_KEY)? {
                Some(s) if s > 0.0 => {
                    query_fold = (assumed / s).sqrt() as f32;
                    s
                }
                _ => assumed,
            };
            c.insert("query_pre_attn_scalar".into(), int_when_whole(scalar));
            let cap = |v: Option<f64>| v.filter(|&c| c > 0.0 && c < f64::from(NO_SOFTCAP) / 2.0);
            if arch == "gemma2" {
                let attn = float("attn_logit_softcapping")?.or(Some(50.0));
                let last = float("final_logit_softcapping")?.or(Some(30.0));
                c.insert("attn_logit_softcapping".into(), json!(cap(attn)));
                c.insert("final_logit_softcapping".into(), json!(cap(last)));
            } else {
                c.insert("attn_logit_softcapping".into(), Json::Null);
                c.insert(
                    "final_logit_softcapping".into(),
                    json!(cap(float("final_logit_softcapping")?)),
                );
                let theta = float("rope.freq_base")?.unwrap_or(10_000.0);
                let mut full = json!({"rope_type": "default", "rope_theta": theta});
                if f.get_opt::<&str>(&key("rope.scaling.type"))? == Some("linear") {
                    full["rope_type"] = json!("linear");
                    full["factor"] = json!(float("rope.scaling.factor")?.unwrap_or(1.0));
                }
                let local = float("rope.freq_base_swa")?.unwrap_or(10_000.0);
                c.insert(
                    "rope_parameters".into(),
                    json!({"full_attention": full,
                           "sliding_attention": {"rope_type": "default", "rope_theta": local}}),
                );
            }
        }
        "phi3" => {
            let rotary = f
                .get_opt::<u32>(&key("rope.dimension_count"))?
                .map_or(head_dim, u64::from);
            let theta = float("rope.freq_base")?.unwrap_or(10_000.0);
            let mut rope = json!({"rope_type": "default", "rope_theta": theta,
                                  "partial_rotary_factor": rotary as f64 / head_dim as f64});
            let original = f
                .get_opt::<u32>(&key("rope.scaling.original_context_length"))?
                .map_or(context, u64::from);
            c.insert("original_max_position_embeddings".into(), json!(original));
            if f.tensor("rope_factors_long.weight").is_some() {
                let factors = |name: &str| -> Result<Json> {
                    let v = f.dequantize(name)?;
                    Ok(json!(v.into_iter().map(shortest_f64).collect::<Vec<_>>()))
                };
                rope["rope_type"] = json!("longrope");
                rope["long_factor"] = factors("rope_factors_long.weight")?;
                rope["short_factor"] = factors("rope_factors_short.weight")?;
                // transformers' default from max / original; kept only where the file differs
                let scale = context as f64 / original as f64;
                let default = if scale > 1.0 {
                    (1.0 + scale.ln() / (original as f64).ln()).sqrt()
                } else {
                    1.0
                };
                if let Some(attn) = float("rope.scaling.attn_factor")? {
                    if (attn - default).abs() > 1e-6 * default {
                        rope["attention_factor"] = json!(attn);
                    }
                }
            }
            c.insert("rope_parameters".into(), rope);
            let window = f
                .get_opt::<u32>(&key("attention.sliding_window"))?
                .filter(|&w| w > 0);
            c.insert("sliding_window".into(), json!(window));
        }
        "smollm3" => {
            let rope: Vec<u32> = (0..layers as usize)
                .map(|i| u32::from((i + 1) % SMOLLM3_NOPE_INTERVAL != 0))
                .collect();
            c.insert("no_rope_layers".into(), json!(rope));
            c.insert(
                "no_rope_layer_interval".into(),
                json!(SMOLLM3_NOPE_INTERVAL),
            );
            c.insert("use_sliding_window".into(), json!(false));
            c.insert("sliding_window".into(), Json::Null);
        }
        _ => {}
    }
    Ok((c, query_fold))
}

fn float_key(f: &GgufFile, key: &str) -> Result<Option<f64>> {
    Ok(match f.metadata(key) {
        Some(Value::F32(x)) => Some(f64::from(*x)),
        Some(Value::F64(x)) => Some(*x),
        _ => None,
    })
}

/// Which layers slide, as llama.cpp's `load_swa_pattern`: a per-layer array, or every
/// `n`-th layer full (`n` from the key, else `default`).
fn swa_pattern(f: &GgufFile, key: &str, layers: u64, default: u64) -> Result<Vec<bool>> {
    if let Some(Value::Array(a)) = f.metadata(key) {
        let flags: Vec<bool> = a
            .values()
            .iter()
            .map(|v| match v {
                Value::Bool(b) => Some(*b),
                other => other.as_u64_lossless().map(|x| x != 0),
            })
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow::anyhow!("{key} must be an array of booleans or integers"))?;
        if flags.len() < layers as usize {
            bail!("{key} has {} entries for {layers} layers", flags.len());
        }
        return Ok(flags[..layers as usize].to_vec());
    }
    let n = match f.metadata(key) {
        Some(v) => v
            .as_u64_lossless()
            .ok_or_else(|| anyhow::anyhow!("{key} must be an integer or an array"))?,
        None => default,
    };
    Ok((0..layers).map(|i| n == 0 || i % n < n - 1).collect())
}

/// A whole number as a JSON integer: transformers' strict Gemma 2/3 configs declare
/// `query_pre_attn_scalar` an `int` and refuse `256.0`.
fn int_when_whole(x: f64) -> Json {
    if x.fract() == 0.0 && x.abs() < 2f64.powi(53) {
        json!(x as i64)
    } else {
        json!(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_scalars_are_written_as_integers() {
        assert_eq!(int_when_whole(256.0).to_string(), "256");
        assert_eq!(int_when_whole(0.5).to_string(), "0.5");
    }
}

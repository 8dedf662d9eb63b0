//! 4-bit base weights (QLoRA): bitsandbytes' NF4 / FP4 format, read from `-bnb-4bit`
//! checkpoints or made at load from 16-bit ones, and the linear layer that uses them.
//!
//! - `nf4`: the code tables and blockwise 4-bit quantize / dequantize
//! - `double_quant`: the 8-bit quantization of the per-block scales
//! - `bnb`: the tensors on disk beside each quantized weight, and `quantization_config`
//!
//! A quantized linear keeps only its 4-bit codes and scales. Its weight is dequantized to
//! the compute dtype just before its matmul and dropped after; backward dequantizes it
//! again ([`crate::autograd::custom`]) instead of autograd keeping a 16-bit copy per layer.

pub mod bnb;
pub mod double_quant;
pub mod nf4;

pub use nf4::{QuantType, Quantized4bit};

use crate::weights::Weights;
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// How to quantize a 16-bit checkpoint at load (recipe `model.quantize`, `--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantize {
    /// Keep the checkpoint's weights (a 4-bit checkpoint stays 4-bit).
    #[default]
    None,
    /// NF4, blocks of 64, double quantization: QLoRA's setting, as bitsandbytes defaults.
    Nf4,
    /// FP4, blocks of 64, double quantization.
    Fp4,
}

impl Quantize {
    pub fn parse(s: &str) -> Result<Quantize> {
        Ok(match s {
            "none" => Quantize::None,
            "nf4" => Quantize::Nf4,
            "fp4" => Quantize::Fp4,
            _ => bail!("unknown quantization `{s}`; use none, nf4 or fp4"),
        })
    }
}

/// How the decoder's linears are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantization {
    pub quant_type: QuantType,
    pub double_quant: bool,
    /// The checkpoint holds 4-bit weights (bitsandbytes' format); otherwise loam quantizes
    /// its 16-bit linears as it loads them.
    pub pre_quantized: bool,
    /// Modules left in 16 bits (`llm_int8_skip_modules`), matched as transformers does.
    pub skip_modules: Vec<String>,
}

impl Quantization {
    /// Quantizing a 16-bit checkpoint at load, as `quantize` asks (`None` for none).
    pub fn at_load(quantize: Quantize, skip_modules: Vec<String>) -> Option<Quantization> {
        let quant_type = match quantize {
            Quantize::None => return None,
            Quantize::Nf4 => QuantType::Nf4,
            Quantize::Fp4 => QuantType::Fp4,
        };
        Some(Quantization {
            quant_type,
            double_quant: true,
            pre_quantized: false,
            skip_modules,
        })
    }

    /// Is the module at `path` (`model.layers.0.mlp.up_proj`) left unquantized?
    /// transformers' rule: a pattern names the path from its start up to a module boundary,
    /// or any suffix of it. Patterns are names, not regular expressions.
    pub fn skips(&self, path: &str) -> bool {
        self.skip_modules.iter().any(|p| {
            path.ends_with(p.as_str())
                || path.strip_prefix(p.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('.') || p.ends_with('.')
                })
        })
    }
}

/// The frozen base weight of a linear layer: dense, or 4-bit.
pub enum LinearWeight {
    Dense(Tensor),
    Quantized(Quantized4bit),
}

impl LinearWeight {
    /// `(out, in)`.
    pub fn size2(&self) -> (i64, i64) {
        match self {
            LinearWeight::Dense(w) => w.size2().expect("a linear weight is [out, in]"),
            LinearWeight::Quantized(q) => (q.shape[0], q.shape[1]),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            LinearWeight::Dense(w) => w.device(),
            LinearWeight::Quantized(q) => q.device(),
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, LinearWeight::Quantized(_))
    }

    /// The weight `[out, in]` as a dense tensor in `kind` (dequantized for a 4-bit one).
    pub fn dense(&self, kind: Kind) -> Tensor {
        match self {
            LinearWeight::Dense(w) => w.to_kind(kind),
            LinearWeight::Quantized(q) => q.dequantize(kind),
        }
    }

    /// `x Wᵀ + b`. A 4-bit weight is dequantized for the matmul and dropped; backward
    /// (`∂x = ∂y · W`) dequantizes it again.
    pub fn linear(&self, x: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let q = match self {
            LinearWeight::Dense(w) => return x.linear(w, bias),
            LinearWeight::Quantized(q) => q,
        };
        let kind = x.kind();
        let saved = q.shallow_clone();
        crate::autograd::custom(
            &[x],
            |inputs| vec![inputs[0].linear(&q.dequantize(kind), bias)],
            move |grads| vec![Some(grads[0].matmul(&saved.dequantize(grads[0].kind())))],
        )
        .remove(0)
    }
}

/// "112 of 112 linears in 4 bits (nf4, double quantization): 522.3 MB", for the log;
/// `None` when none is.
pub fn summary(lm: &mut crate::model::CausalLm) -> Option<String> {
    let q = lm.spec.quantization.clone()?;
    let linears = lm.linears_mut();
    let mut bytes = 0;
    let mut count = 0;
    for (_, linear) in &linears {
        if let LinearWeight::Quantized(w) = &linear.weight {
            bytes += w.nbytes();
            count += 1;
        }
    }
    Some(format!(
        "{count} of {} linears in 4 bits ({}{}{}): {:.1} MB",
        linears.len(),
        q.quant_type.name(),
        if q.double_quant {
            ", double quantization"
        } else {
            ""
        },
        if q.pre_quantized {
            ""
        } else {
            ", quantized at load"
        },
        bytes as f64 / 1e6
    ))
}

/// The linear weight `name` (`…q_proj.weight`, `[out, in]` = `shape`) in `kind` on
/// `device`: the checkpoint's 4-bit weight when it holds one, quantized here when
/// `quantization` asks (the 16-bit weight is read a chunk at a time, cast to `kind` first
/// as transformers does), else dense.
pub fn load_linear(
    weights: &mut Weights,
    name: &str,
    shape: &[i64],
    kind: Kind,
    device: Device,
    quantization: Option<&Quantization>,
) -> Result<LinearWeight> {
    if bnb::is_quantized(weights, name) {
        return Ok(LinearWeight::Quantized(
            bnb::read(weights, name, shape)?.to_device(device),
        ));
    }
    let module = name.strip_suffix(".weight").unwrap_or(name);
    match quantization {
        Some(q) if !q.pre_quantized && !q.skips(module) => {
            let dense = weights.get(name, shape, kind, device)?;
            let quantized =
                Quantized4bit::quantize(&dense, q.quant_type, nf4::BLOCKSIZE, q.double_quant);
            Ok(LinearWeight::Quantized(quantized))
        }
        _ => Ok(LinearWeight::Dense(weights.get(name, shape, kind, device)?)),
    }
}

/// A tensor the model keeps dense (embeddings, `lm_head`, norms), dequantized when the
/// checkpoint holds it in 4 bits.
pub fn load_dense(
    weights: &mut Weights,
    name: &str,
    shape: &[i64],
    kind: Kind,
    device: Device,
) -> Result<Tensor> {
    if bnb::is_quantized(weights, name) {
        return Ok(bnb::read(weights, name, shape)?
            .to_device(device)
            .dequantize(kind));
    }
    weights.get(name, shape, kind, device)
}

#[cfg(test)]
mod bnb_parity_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_patterns_match_as_transformers_does() {
        let q = Quantization::at_load(
            Quantize::Nf4,
            vec![
                "lm_head".into(),
                "model.layers.1".into(),
                "mlp.down_proj".into(),
            ],
        )
        .unwrap();
        assert!(q.skips("lm_head"));
        assert!(q.skips("model.layers.1.self_attn.q_proj"));
        assert!(!q.skips("model.layers.11.self_attn.q_proj"));
        assert!(q.skips("model.layers.0.mlp.down_proj"));
        assert!(!q.skips("model.layers.0.mlp.up_proj"));
    }

    /// The 4-bit linear's forward and input gradient equal plain autograd through the
    /// dequantized weight, and no 16-bit weight stays alive in the graph.
    #[test]
    fn quantized_linear_gradient_equals_autograd_through_the_dequantized_weight() {
        tch::manual_seed(11);
        let w = Tensor::randn([24, 40], (Kind::Float, Device::Cpu));
        let weight = LinearWeight::Quantized(Quantized4bit::quantize(&w, QuantType::Nf4, 64, true));
        let bias = Tensor::randn([24], (Kind::Float, Device::Cpu));
        let x0 = Tensor::randn([2, 3, 40], (Kind::Float, Device::Cpu));
        let gy = Tensor::randn([2, 3, 24], (Kind::Float, Device::Cpu));

        let x = x0.copy().set_requires_grad(true);
        let y = weight.linear(&x, Some(&bias));
        (&y * &gy).sum(Kind::Float).backward();

        let dense = weight.dense(Kind::Float);
        let x_ref = x0.copy().set_requires_grad(true);
        let y_ref = x_ref.linear(&dense, Some(&bias));
        (&y_ref * &gy).sum(Kind::Float).backward();
        assert_eq!((y - y_ref).abs().max().double_value(&[]), 0.0);
        let diff = (x.grad() - x_ref.grad()).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "input gradient differs by {diff}");
    }
}

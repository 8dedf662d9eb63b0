//! The attention input and MLP gate projections: three (two) linears, or Phi-3's one fused
//! linear whose output rows are the separate ones stacked — `qkv_proj` is q's rows, then
//! k's, then v's; `gate_up_proj` the gate half, then the up half. A LoRA on a fused module
//! adapts the stacked matrix as a whole, as PEFT does.

use super::decoder::Linear;
use tch::Tensor;

/// The outputs of linears that read the same input `x`. When every one carries a plain LoRA
/// ([`crate::lora::Lora::is_plain_at`]), their A matrices project `x` in one GEMM,
/// `x · [A₁; A₂; …]ᵀ`, and its backward is one GEMM for `x`'s gradient and one for the A's,
/// in place of a thin rank-r GEMM per linear each way. Otherwise each linear runs alone.
pub fn forward_reading_one_input<const N: usize>(
    linears: [&Linear; N],
    x: &Tensor,
    train: bool,
) -> [Tensor; N] {
    let loras = linears.map(|l| l.lora.as_ref().filter(|lora| lora.is_plain_at(train)));
    if N < 2 || loras.iter().any(Option::is_none) {
        return linears.map(|l| l.forward(x, train));
    }
    let loras = loras.map(|l| l.expect("checked above"));
    let stacked_a = Tensor::cat(&loras.map(|l| &l.a), 0).to_kind(x.kind());
    let x_a = x.linear::<Tensor>(&stacked_a, None);
    let mut offset = 0;
    let mut outputs = linears.map(|l| l.weight.linear(x, l.bias.as_ref()));
    for (out, lora) in outputs.iter_mut().zip(loras) {
        let base = std::mem::replace(out, Tensor::new());
        *out = lora.add_low_rank(base, &x_a.narrow(-1, offset, lora.rank()));
        offset += lora.rank();
    }
    outputs
}

// One per layer: the size difference costs nothing worth an indirection per projection.
#[allow(clippy::large_enum_variant)]
pub enum QkvProj {
    Separate {
        q_proj: Linear,
        k_proj: Linear,
        v_proj: Linear,
    },
    Fused {
        qkv_proj: Linear,
    },
}

impl QkvProj {
    /// q `[.., q_dim]`, k and v `[.., kv_dim]` for input `x`.
    pub fn project(&self, x: &Tensor, train: bool, q_dim: i64, kv_dim: i64) -> [Tensor; 3] {
        match self {
            QkvProj::Separate {
                q_proj,
                k_proj,
                v_proj,
            } => forward_reading_one_input([q_proj, k_proj, v_proj], x, train),
            QkvProj::Fused { qkv_proj } => {
                let qkv = qkv_proj.forward(x, train);
                [(0, q_dim), (q_dim, kv_dim), (q_dim + kv_dim, kv_dim)]
                    .map(|(start, len)| qkv.narrow(-1, start, len))
            }
        }
    }

    /// The linears with their checkpoint names relative to the layer.
    pub fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        match self {
            QkvProj::Separate {
                q_proj,
                k_proj,
                v_proj,
            } => vec![
                ("self_attn.q_proj", q_proj),
                ("self_attn.k_proj", k_proj),
                ("self_attn.v_proj", v_proj),
            ],
            QkvProj::Fused { qkv_proj } => vec![("self_attn.qkv_proj", qkv_proj)],
        }
    }
}

pub enum GateUpProj {
    Separate { gate_proj: Linear, up_proj: Linear },
    Fused { gate_up_proj: Linear },
}

impl GateUpProj {
    /// The gate and up projections of `x`.
    pub fn project(&self, x: &Tensor, train: bool) -> [Tensor; 2] {
        match self {
            GateUpProj::Separate { gate_proj, up_proj } => {
                forward_reading_one_input([gate_proj, up_proj], x, train)
            }
            GateUpProj::Fused { gate_up_proj } => {
                let both = gate_up_proj.forward(x, train);
                let half = both.size().last().copied().unwrap_or(0) / 2;
                [both.narrow(-1, 0, half), both.narrow(-1, half, half)]
            }
        }
    }

    pub fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        match self {
            GateUpProj::Separate { gate_proj, up_proj } => {
                vec![("mlp.gate_proj", gate_proj), ("mlp.up_proj", up_proj)]
            }
            GateUpProj::Fused { gate_up_proj } => vec![("mlp.gate_up_proj", gate_up_proj)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::{Lora, LoraInit};
    use crate::model::quant::LinearWeight;
    use tch::{Device, Kind};

    /// A linear `[out, in]` with a LoRA whose B is non-zero (a trained adapter), or DoRA.
    fn adapted(out: i64, inp: i64, rank: i64, dora: bool) -> Linear {
        let opts = (Kind::Float, Device::Cpu);
        let mut weight = LinearWeight::Dense(Tensor::randn([out, inp], opts));
        let mut lora = Lora::init(&mut weight, rank, 2.0, 0.0, LoraInit::Default, dora);
        tch::no_grad(|| lora.b.copy_(&Tensor::randn([out, rank], opts)));
        lora = lora.with_grad();
        Linear {
            weight,
            bias: Some(Tensor::randn([out], opts)),
            lora: Some(lora),
        }
    }

    /// Outputs and the gradients of the input and of every A and B, for a loss that weighs
    /// each output differently.
    fn outputs_and_grads(linears: [&Linear; 3], shared: bool) -> Vec<Tensor> {
        tch::manual_seed(7);
        let x = Tensor::randn([2, 5, 12], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let outs = if shared {
            forward_reading_one_input(linears, &x, true)
        } else {
            linears.map(|l| l.forward(&x, true))
        };
        let loss = outs
            .iter()
            .enumerate()
            .map(|(i, o)| (o * (i as f64 + 1.0)).sin().sum(Kind::Float))
            .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
        let mut params = vec![x.shallow_clone()];
        for l in linears {
            let lora = l.lora.as_ref().unwrap();
            params.extend([lora.a.shallow_clone(), lora.b.shallow_clone()]);
        }
        let grads = Tensor::run_backward(&[loss], &params, false, false);
        outs.into_iter().map(|o| o.detach()).chain(grads).collect()
    }

    #[test]
    fn one_a_projection_for_linears_reading_one_input_equals_one_each() {
        tch::manual_seed(0);
        let (q, k, v) = (
            adapted(12, 12, 4, false),
            adapted(6, 12, 4, false),
            adapted(6, 12, 2, false),
        );
        let want = outputs_and_grads([&q, &k, &v], false);
        let got = outputs_and_grads([&q, &k, &v], true);
        assert_eq!(want.len(), 3 + 1 + 6);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.size(), g.size(), "tensor {i}");
            let diff = (w - g).abs().max().double_value(&[]);
            let scale = w.abs().max().double_value(&[]).max(1.0);
            assert!(diff <= 1e-6 * scale, "tensor {i}: max diff {diff}");
        }
    }

    #[test]
    fn dora_or_dropout_runs_each_linear_alone() {
        tch::manual_seed(1);
        let (q, k) = (adapted(8, 12, 4, false), adapted(8, 12, 4, true));
        let x = Tensor::randn([3, 12], (Kind::Float, Device::Cpu));
        let [got_q, got_k] = forward_reading_one_input([&q, &k], &x, false);
        assert!(got_q.allclose(&q.forward(&x, false), 0.0, 0.0, false));
        assert!(got_k.allclose(&k.forward(&x, false), 0.0, 0.0, false));
        let mut with_dropout = adapted(8, 12, 4, false);
        with_dropout.lora.as_mut().unwrap().dropout = 0.5;
        assert!(!with_dropout.lora.as_ref().unwrap().is_plain_at(true));
        assert!(with_dropout.lora.as_ref().unwrap().is_plain_at(false));
    }
}

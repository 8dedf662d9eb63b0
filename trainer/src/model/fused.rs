//! The attention input and MLP gate projections: three (two) linears, or Phi-3's one fused
//! linear whose output rows are the separate ones stacked — `qkv_proj` is q's rows, then
//! k's, then v's; `gate_up_proj` the gate half, then the up half. A LoRA on a fused module
//! adapts the stacked matrix as a whole, as PEFT does.

use super::decoder::Linear;
use tch::Tensor;

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
            } => [q_proj, k_proj, v_proj].map(|p| p.forward(x, train)),
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
                [gate_proj.forward(x, train), up_proj.forward(x, train)]
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

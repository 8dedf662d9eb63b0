//! Rotary position embedding, with the `linear` and `llama3` frequency rescalings.
//! Computed as transformers does: frequencies and angles in f32, cos/sin then cast to the
//! compute dtype, rotation applied in the compute dtype.

use super::config::{ModelSpec, RopeScaling};
use std::f64::consts::PI;
use tch::{Device, Kind, Tensor};

pub struct Rope {
    /// `[head_dim / 2]`, f32.
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(spec: &ModelSpec, device: Device) -> Rope {
        let inv_freq = inverse_frequencies(spec.head_dim, spec.rope_theta, &spec.rope_scaling);
        Rope {
            inv_freq: Tensor::from_slice(&inv_freq).to_device(device),
        }
    }

    /// cos and sin for `position_ids` `[B, T]`: each `[B, T, head_dim]` in `kind`.
    pub fn cos_sin(&self, position_ids: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs =
            position_ids.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }
}

/// Rotates `x` `[B, H, T, D]` by the angles in cos/sin `[B, T, D]`.
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let (cos, sin) = (cos.unsqueeze(1), sin.unsqueeze(1));
    let half = x.size()[3] / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    let rotated = Tensor::cat(&[&(-x2), &x1], -1);
    x * cos + rotated * sin
}

/// `1 / theta^(2i / d)`, rescaled for long context. Computed in f32 like transformers.
pub fn inverse_frequencies(head_dim: i64, theta: f64, scaling: &RopeScaling) -> Vec<f32> {
    let base: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1.0 / (theta as f32).powf(i as f32 / head_dim as f32))
        .collect();
    match *scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor as f32).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let low_freq_wavelen = old / low_freq_factor;
            let high_freq_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * PI / f as f64;
                    if wavelen < high_freq_wavelen {
                        f
                    } else if wavelen > low_freq_wavelen {
                        (f as f64 / factor) as f32
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        ((1.0 - smooth) * f as f64 / factor + smooth * f as f64) as f32
                    }
                })
                .collect()
        }
    }
}

//! Rotary position embedding, with the `linear`, `llama3` and `longrope` frequency
//! rescalings and partial rotary (only the first `rotary_dim` dimensions of a head turn).
//! Computed as transformers does: frequencies and angles in f32, cos/sin (times LongRoPE's
//! attention factor) then cast to the compute dtype, rotation applied in the compute dtype.

use super::config::{LayerRotary, ModelSpec, RopeScaling};
use std::f64::consts::PI;
use tch::{Device, Kind, Tensor};

pub struct Rope {
    /// `[rotary_dim / 2]`, f32.
    inv_freq: Tensor,
    /// LongRoPE: the frequencies used once a pass reaches past `original` positions.
    long: Option<LongFrequencies>,
    /// Factor on cos and sin (LongRoPE's attention factor; 1 otherwise).
    attention_factor: f64,
}

struct LongFrequencies {
    inv_freq: Tensor,
    original: i64,
}

impl Rope {
    pub fn new(rotary_dim: i64, theta: f64, scaling: &RopeScaling, device: Device) -> Rope {
        let tensor = |v: Vec<f32>| Tensor::from_slice(&v).to_device(device);
        let inv_freq = tensor(inverse_frequencies(rotary_dim, theta, scaling));
        let (long, attention_factor) = match scaling {
            RopeScaling::LongRope {
                long_factor,
                original_max_position_embeddings,
                attention_factor,
                ..
            } => (
                Some(LongFrequencies {
                    inv_freq: tensor(divided(rotary_dim, theta, long_factor)),
                    original: *original_max_position_embeddings as i64,
                }),
                *attention_factor,
            ),
            _ => (None, 1.0),
        };
        Rope {
            inv_freq,
            long,
            attention_factor,
        }
    }

    /// cos and sin for `position_ids` `[B, T]`: each `[B, T, rotary_dim]` in `kind`.
    pub fn cos_sin(&self, position_ids: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        // LongRoPE picks its factors once per pass, as transformers' `dynamic_rope_update`:
        // long ones when the largest position reaches past the original length.
        let inv_freq = match &self.long {
            Some(long) if position_ids.max().int64_value(&[]) + 1 > long.original => &long.inv_freq,
            _ => &self.inv_freq,
        };
        let freqs = position_ids.to_kind(Kind::Float).unsqueeze(-1) * inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = if self.attention_factor == 1.0 {
            (emb.cos(), emb.sin())
        } else {
            (
                emb.cos() * self.attention_factor,
                emb.sin() * self.attention_factor,
            )
        };
        (cos.to_kind(kind), sin.to_kind(kind))
    }
}

/// The model's rotary embeddings: the global one, Gemma 3's local one, none for NoPE layers.
pub struct Ropes {
    global: Rope,
    local: Option<Rope>,
}

impl Ropes {
    pub fn new(spec: &ModelSpec, device: Device) -> Ropes {
        Ropes {
            global: Rope::new(spec.rotary_dim, spec.rope_theta, &spec.rope_scaling, device),
            local: spec
                .local_rope
                .as_ref()
                .map(|l| Rope::new(spec.rotary_dim, l.theta, &l.scaling, device)),
        }
    }

    /// cos/sin of every rotary embedding the layers use, in [`LayerRotary`] order.
    pub fn cos_sin(&self, position_ids: &Tensor, kind: Kind) -> RotaryTables {
        RotaryTables {
            global: self.global.cos_sin(position_ids, kind),
            local: self.local.as_ref().map(|r| r.cos_sin(position_ids, kind)),
        }
    }
}

/// cos and sin of one batch, per rotary embedding.
pub struct RotaryTables {
    global: (Tensor, Tensor),
    local: Option<(Tensor, Tensor)>,
}

impl RotaryTables {
    /// The cos/sin a layer rotates with; `None` for a NoPE layer.
    pub fn get(&self, rotary: LayerRotary) -> Option<(&Tensor, &Tensor)> {
        let pair = match rotary {
            LayerRotary::Global => &self.global,
            LayerRotary::Local => self.local.as_ref().expect("a local rope for local layers"),
            LayerRotary::None => return None,
        };
        Some((&pair.0, &pair.1))
    }
}

/// Rotates `x` `[B, H, T, D]` by the angles in cos/sin `[B, T, R]`: the first R dimensions
/// of each head, the rest passed through (partial rotary).
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let (cos, sin) = (cos.unsqueeze(1), sin.unsqueeze(1));
    let (d, r) = (x.size()[3], cos.size()[3]);
    if r < d {
        let turned = apply(
            &x.narrow(-1, 0, r),
            &cos.squeeze_dim(1),
            &sin.squeeze_dim(1),
        );
        return Tensor::cat(&[turned, x.narrow(-1, r, d - r)], -1);
    }
    let half = d / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    let rotated = Tensor::cat(&[&(-x2), &x1], -1);
    x * cos + rotated * sin
}

/// `1 / theta^(2i / d)` over the `rotary_dim` turning dimensions, in f32 like transformers.
fn base_frequencies(rotary_dim: i64, theta: f64) -> Vec<f32> {
    (0..rotary_dim)
        .step_by(2)
        .map(|i| 1.0 / (theta as f32).powf(i as f32 / rotary_dim as f32))
        .collect()
}

/// LongRoPE: `1 / (factor_i · theta^(2i / d))`, the product in f32.
fn divided(rotary_dim: i64, theta: f64, factors: &[f64]) -> Vec<f32> {
    (0..rotary_dim)
        .step_by(2)
        .zip(factors)
        .map(|(i, &f)| 1.0 / (f as f32 * (theta as f32).powf(i as f32 / rotary_dim as f32)))
        .collect()
}

/// `1 / theta^(2i / d)`, rescaled for long context (LongRoPE: its short factors).
/// Computed in f32 like transformers.
pub fn inverse_frequencies(rotary_dim: i64, theta: f64, scaling: &RopeScaling) -> Vec<f32> {
    let base = base_frequencies(rotary_dim, theta);
    match scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / *factor as f32).collect(),
        RopeScaling::LongRope { short_factor, .. } => divided(rotary_dim, theta, short_factor),
        &RopeScaling::Llama3 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_rotary_turns_only_the_first_dimensions() {
        let x = Tensor::randn([1, 2, 3, 8], (Kind::Float, Device::Cpu));
        let rope = Rope::new(4, 10_000.0, &RopeScaling::None, Device::Cpu);
        let pos = Tensor::arange(3, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let (cos, sin) = rope.cos_sin(&pos, Kind::Float);
        assert_eq!(cos.size(), [1, 3, 4]);
        let y = apply(&x, &cos, &sin);
        assert!(y.narrow(-1, 4, 4).equal(&x.narrow(-1, 4, 4)));
        let full = apply(&x.narrow(-1, 0, 4), &cos, &sin);
        assert!(y.narrow(-1, 0, 4).equal(&full));
        assert!(!full.allclose(&x.narrow(-1, 0, 4), 1e-6, 1e-6, false));
    }

    #[test]
    fn longrope_switches_to_long_factors_past_the_original_length() {
        let scaling = RopeScaling::LongRope {
            short_factor: vec![1.0, 2.0],
            long_factor: vec![3.0, 4.0],
            original_max_position_embeddings: 8.0,
            attention_factor: 1.5,
        };
        let rope = Rope::new(4, 100.0, &scaling, Device::Cpu);
        // cos of the first frequency at the last of t positions
        let first_cos = |t: i64| {
            let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0);
            rope.cos_sin(&pos, Kind::Double)
                .0
                .double_value(&[0, t - 1, 0])
        };
        // 8 positions: short factor 1, angle 7; 9: long factor 3, angle 8 / 3; both × 1.5
        assert!((first_cos(8) - 1.5 * 7f64.cos()).abs() < 1e-5);
        assert!((first_cos(9) - 1.5 * (8f64 / 3.0).cos()).abs() < 1e-5);
    }
}

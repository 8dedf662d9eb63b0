//! RMSNorm, the Llama way and the Gemma way.
//!
//! ```text
//! Llama: w · cast(x · rsqrt(mean x² + eps))          the scale in the compute dtype
//! Gemma: cast(x · rsqrt(mean x² + eps) · (1 + w))    everything in f32, cast at the end
//! ```
//! Both normalize in f32. Gemma stores `w` centred on 0, hence the `1 +`.

use super::config::NormKind;
use tch::{Kind, Tensor};

pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
    pub kind: NormKind,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let variance = xf.square().mean_dim(-1, true, Kind::Float);
        let normed = xf * (variance + self.eps).rsqrt();
        match self.kind {
            NormKind::Plain => &self.weight * normed.to_kind(kind),
            NormKind::Gemma => (normed * (self.weight.to_kind(Kind::Float) + 1.0)).to_kind(kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_norm_scales_by_one_plus_w_in_f32() {
        let x = Tensor::from_slice(&[3.0f32, -4.0]).to_kind(Kind::BFloat16);
        let w = Tensor::from_slice(&[0.5f32, -0.25]).to_kind(Kind::BFloat16);
        let norm = RmsNorm {
            weight: w,
            eps: 0.0,
            kind: NormKind::Gemma,
        };
        let y = norm.forward(&x).to_kind(Kind::Float);
        // rms = √12.5; (3, -4) / rms · (1.5, 0.75)
        let rms = 12.5f64.sqrt();
        let want = [3.0 / rms * 1.5, -4.0 / rms * 0.75];
        for (i, w) in want.iter().enumerate() {
            assert!((y.double_value(&[i as i64]) - w).abs() < 1e-2, "{y:?}");
        }
        assert_eq!(norm.forward(&x).kind(), Kind::BFloat16);
    }
}

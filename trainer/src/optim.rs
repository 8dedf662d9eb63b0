//! AdamW with PyTorch's semantics, learning-rate schedules with warmup (transformers'
//! formulas), and global-norm gradient clipping (`clip_grad_norm_`).

use crate::recipe::Schedule;
use tch::{Kind, Tensor};

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

/// `torch.optim.AdamW`: decoupled weight decay, bias-corrected moments, eps outside the sqrt.
pub struct AdamW {
    pub weight_decay: f64,
    /// Optimizer steps taken.
    pub step: u64,
    /// First and second moments, one pair per parameter (f32, like the parameters).
    pub exp_avg: Vec<Tensor>,
    pub exp_avg_sq: Vec<Tensor>,
}

impl AdamW {
    pub fn new(params: &[Tensor], weight_decay: f64) -> AdamW {
        AdamW {
            weight_decay,
            step: 0,
            exp_avg: params.iter().map(Tensor::zeros_like).collect(),
            exp_avg_sq: params.iter().map(Tensor::zeros_like).collect(),
        }
    }

    /// One update of every parameter from its `.grad()`, at learning rate `lr`.
    pub fn update(&mut self, params: &mut [Tensor], lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let bias1 = 1.0 - BETA1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - BETA2.powi(self.step as i32)).sqrt();
        for (i, p) in params.iter_mut().enumerate() {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
            let (m, v) = (&mut self.exp_avg[i], &mut self.exp_avg_sq[i]);
            let _ = m.lerp_(&grad, 1.0 - BETA1);
            let _ = v
                .g_mul_scalar_(BETA2)
                .g_add_(&(grad.square() * (1.0 - BETA2)));
            let denom = v.sqrt() / bias2_sqrt + EPS;
            let _ = p.addcdiv_(&(&*m * (-lr / bias1)), &denom);
        }
    }
}

/// Clips the global L2 norm of all gradients to `max_norm` (PyTorch's `clip_grad_norm_`:
/// grads scaled by `min(1, max_norm / (norm + 1e-6))`). Returns the norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = params
        .iter()
        .map(Tensor::grad)
        .filter(Tensor::defined)
        .collect();
    if grads.is_empty() {
        return 0.0;
    }
    let norms: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Float)).collect();
    let total = Tensor::stack(&norms, 0)
        .sum(Kind::Float)
        .sqrt()
        .double_value(&[]);
    if max_norm > 0.0 {
        let coef = (max_norm / (total + 1e-6)).min(1.0);
        for mut g in grads {
            let _ = g.g_mul_scalar_(coef);
        }
    }
    total
}

/// The learning rate of optimizer step `step` (0-based) out of `total`.
pub fn learning_rate(
    schedule: Schedule,
    peak: f64,
    step: u64,
    total: u64,
    warmup_steps: u64,
) -> f64 {
    let (step, total, warmup) = (step as f64, total as f64, warmup_steps as f64);
    if step < warmup {
        return peak * step / warmup.max(1.0);
    }
    let progress = (step - warmup) / (total - warmup).max(1.0);
    peak * match schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => ((total - step) / (total - warmup).max(1.0)).max(0.0),
        Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    }
}

/// `train.warmup`: below 1 a fraction of the total steps, from 1 a number of steps.
pub fn warmup_steps(warmup: f64, total: u64) -> u64 {
    if warmup < 1.0 {
        (warmup * total as f64).ceil() as u64
    } else {
        warmup as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_with_warmup_follows_transformers() {
        // transformers.get_cosine_schedule_with_warmup(opt, 2, 10) at steps 0..10, peak 1.
        let want = [
            0.0,
            0.5,
            1.0,
            0.9619397662556434,
            0.8535533905932737,
            0.6913417161825449,
            0.5,
            0.30865828381745514,
            0.14644660940672627,
            0.03806023374435663,
        ];
        for (step, w) in want.iter().enumerate() {
            let lr = learning_rate(Schedule::Cosine, 1.0, step as u64, 10, 2);
            assert!((lr - w).abs() < 1e-12, "step {step}: {lr} vs {w}");
        }
        assert_eq!(learning_rate(Schedule::Linear, 1.0, 6, 10, 2), 0.5);
        assert_eq!(learning_rate(Schedule::Constant, 2.0, 9, 10, 2), 2.0);
        assert_eq!(warmup_steps(0.03, 100), 3);
        assert_eq!(warmup_steps(5.0, 100), 5);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let p = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        (&p * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        let norm = clip_grad_norm(std::slice::from_ref(&p), 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let g: Vec<f32> = Vec::try_from(p.grad()).unwrap();
        assert!(
            (g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6,
            "{g:?}"
        );
    }
}

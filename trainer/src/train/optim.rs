//! AdamW with PyTorch's semantics, learning-rate schedules with warmup (transformers'
//! formulas), and global-norm gradient clipping (`clip_grad_norm_`).

use crate::recipe::Schedule;
use tch::{Kind, Tensor};

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

/// The trainable tensors, packed: each tensor, and each one's gradient, is a view of one
/// contiguous buffer (f32, like the adapters' master weights). Clipping, AdamW and zeroing
/// are then a few ops on whole buffers instead of ~15 per tensor. An all-linear adapter has
/// hundreds of tensors, and on a GPU every op is a kernel launch: per-tensor updates were
/// half of a small step's launches.
pub struct TrainableParams {
    values: Tensor,
    grads: Tensor,
}

impl TrainableParams {
    /// Moves `tensors` (leaves that require grad, one dtype and device) into the buffers;
    /// they stay the caller's (the model's) tensors, now views of `values`.
    pub fn new(tensors: Vec<Tensor>) -> TrainableParams {
        let (kind, device) = tensors
            .first()
            .map_or((Kind::Float, tch::Device::Cpu), |t| (t.kind(), t.device()));
        let total: i64 = tensors.iter().map(|t| t.numel() as i64).sum();
        let values = Tensor::empty([total], (kind, device));
        let grads = Tensor::zeros([total], (kind, device));
        // One backward gives every tensor a gradient; pointing those at `grads` below makes
        // autograd accumulate into the buffer in place from then on.
        if !tensors.is_empty() {
            let sums: Vec<Tensor> = tensors.iter().map(|t| t.sum(kind)).collect();
            Tensor::stack(&sums, 0).sum(kind).backward();
        }
        let _guard = tch::no_grad_guard();
        for (t, (mut value, grad)) in tensors.iter().zip(
            split_like(&values, &tensors)
                .into_iter()
                .zip(split_like(&grads, &tensors)),
        ) {
            value.copy_(t);
            t.shallow_clone().set_data(&value);
            t.grad().set_data(&grad);
        }
        TrainableParams { values, grads }
    }

    pub fn numel(&self) -> i64 {
        self.values.numel() as i64
    }

    /// The flat gradient buffer (what a data-parallel step all-reduces).
    pub fn grads(&self) -> &Tensor {
        &self.grads
    }

    /// The flat values (what rank 0 broadcasts to the other ranks at the start).
    pub fn values(&self) -> &Tensor {
        &self.values
    }

    pub fn zero_grads(&mut self) {
        let _ = self.grads.zero_();
    }
}

/// Views of the flat `buffer` with the shapes of `like`, in order (the packing above).
pub fn split_like(buffer: &Tensor, like: &[Tensor]) -> Vec<Tensor> {
    let mut offset = 0;
    like.iter()
        .map(|t| {
            let n = t.numel() as i64;
            let view = buffer.narrow(0, offset, n).view(t.size().as_slice());
            offset += n;
            view
        })
        .collect()
}

/// `torch.optim.AdamW`: decoupled weight decay, bias-corrected moments, eps outside the sqrt.
pub struct AdamW {
    pub weight_decay: f64,
    /// Optimizer steps taken.
    pub step: u64,
    /// First and second moments, packed like [`TrainableParams`] (see [`split_like`]).
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

impl AdamW {
    pub fn new(params: &TrainableParams, weight_decay: f64) -> AdamW {
        AdamW {
            weight_decay,
            step: 0,
            exp_avg: params.values.zeros_like(),
            exp_avg_sq: params.values.zeros_like(),
        }
    }

    /// One update of every parameter from its gradient, at learning rate `lr`.
    pub fn update(&mut self, params: &mut TrainableParams, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let bias1 = 1.0 - BETA1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - BETA2.powi(self.step as i32)).sqrt();
        let (p, grad) = (&mut params.values, &params.grads);
        let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
        let _ = self.exp_avg.lerp_(grad, 1.0 - BETA1);
        let _ = self
            .exp_avg_sq
            .g_mul_scalar_(BETA2)
            .g_add_(&(grad.square() * (1.0 - BETA2)));
        let denom = self.exp_avg_sq.sqrt() / bias2_sqrt + EPS;
        let _ = p.addcdiv_(&(&self.exp_avg * (-lr / bias1)), &denom);
    }
}

/// Clips the global L2 norm of all gradients to `max_norm` (PyTorch's `clip_grad_norm_`:
/// grads scaled by `min(1, max_norm / (norm + 1e-6))`). Returns the norm before clipping.
pub fn clip_grad_norm(params: &mut TrainableParams, max_norm: f64) -> f64 {
    let _guard = tch::no_grad_guard();
    let total = params
        .grads
        .square()
        .sum(Kind::Float)
        .sqrt()
        .double_value(&[]);
    if max_norm > 0.0 {
        let coef = (max_norm / (total + 1e-6)).min(1.0);
        let _ = params.grads.g_mul_scalar_(coef);
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
        let mut params = TrainableParams::new(vec![p.shallow_clone()]);
        (&p * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        let norm = clip_grad_norm(&mut params, 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let g: Vec<f32> = Vec::try_from(p.grad()).unwrap();
        assert!(
            (g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6,
            "{g:?}"
        );
    }

    /// The packed tensors stay the caller's: autograd accumulates their gradients into the
    /// flat buffer, and updates of the flat values reach them.
    #[test]
    fn packed_tensors_share_the_buffers() {
        let a = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[3.0f32, 4.0, 5.0, 6.0])
            .view([2, 2])
            .set_requires_grad(true);
        let mut params = TrainableParams::new(vec![a.shallow_clone(), b.shallow_clone()]);
        assert_eq!(
            Vec::<f32>::try_from(&params.values).unwrap(),
            [1., 2., 3., 4., 5., 6.]
        );
        assert_eq!(Vec::<f32>::try_from(&params.grads).unwrap(), [0.0; 6]);
        let loss = || (&a * 2.0).sum(Kind::Float) + (&b * &b).sum(Kind::Float);
        loss().backward();
        loss().backward(); // accumulates
        assert_eq!(
            Vec::<f32>::try_from(&params.grads).unwrap(),
            [4., 4., 12., 16., 20., 24.]
        );
        let mut opt = AdamW::new(&params, 0.0);
        opt.update(&mut params, 0.5);
        // The first AdamW step moves every element by lr (less eps) against its gradient.
        let mut now = Vec::<f32>::try_from(&a.detach()).unwrap();
        now.extend(Vec::<f32>::try_from(&b.detach().view([-1])).unwrap());
        for (got, want) in now.iter().zip([0.5, 1.5, 2.5, 3.5, 4.5, 5.5]) {
            assert!((got - want).abs() < 1e-6, "{now:?}");
        }
        params.zero_grads();
        assert_eq!(Vec::<f32>::try_from(&a.grad()).unwrap(), [0.0, 0.0]);
        loss().backward();
        assert_eq!(Vec::<f32>::try_from(&a.grad()).unwrap(), [2.0, 2.0]);
    }
}

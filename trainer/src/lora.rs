//! LoRA and DoRA on a linear layer, exactly as PEFT computes them.
//!
//! ```text
//! LoRA:  y = W x + b + s · B A dropout(x)                   s = alpha / r  (rsLoRA: alpha / √r)
//! DoRA:  y = W x + b + (m / ‖W + s·BA‖_row − 1) · W x_d + (m / ‖W + s·BA‖_row) · s · B A x_d
//!        with x_d = dropout(x) and the row norm detached (not differentiated), as in PEFT.
//! ```
//! A `[r, in]`, B `[out, r]` and the DoRA magnitude `[out]` are f32 master weights; they are
//! cast to the compute dtype for the forward pass, so gradients land on the f32 masters.
//!
//! PiSSA starts A and B from the top-r singular triplets of W and trains on the residual
//! `W − s·B₀A₀` instead of W, so the model is unchanged at step 0. The saved adapter is
//! converted back into a plain LoRA on the original W (see [`Lora::to_plain_lora`]).

use crate::model::quant::LinearWeight;
use tch::{Kind, Tensor};

/// How A and B start (recipe `lora.init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoraInit {
    /// A kaiming-uniform (a = √5), B zeros: PEFT's default.
    #[default]
    Default,
    /// A normal with std 1/r, B zeros.
    Gaussian,
    /// PiSSA: A, B from W's top-r singular vectors; the base weight becomes the residual.
    Pissa,
}

pub struct Lora {
    /// `[r, in]`, f32, trainable.
    pub a: Tensor,
    /// `[out, r]`, f32, trainable.
    pub b: Tensor,
    /// DoRA magnitude `[out]`, f32, trainable.
    pub magnitude: Option<Tensor>,
    pub scale: f64,
    pub dropout: f64,
    /// PiSSA's starting `(A₀, B₀)`, kept to convert the trained adapter back to plain LoRA.
    pub pissa_start: Option<(Tensor, Tensor)>,
}

/// `alpha / r`, or `alpha / √r` with rsLoRA.
pub fn scale(r: i64, alpha: f64, rslora: bool) -> f64 {
    if rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    }
}

impl Lora {
    /// A fresh adapter for the base weight `[out, in]`. PiSSA replaces `weight` with the
    /// residual `W − s·B₀A₀` (in W's dtype), as PEFT does; the other inits leave it alone.
    /// PiSSA needs a dense weight (the caller refuses a 4-bit one).
    pub fn init(
        weight: &mut LinearWeight,
        r: i64,
        scale: f64,
        dropout: f64,
        init: LoraInit,
        dora: bool,
    ) -> Lora {
        let (out, inp) = weight.size2();
        let opts = (Kind::Float, weight.device());
        let (a, b) = match init {
            // kaiming_uniform_(a=√5) on [r, in]: bound = gain·√3/√fan_in = 1/√in.
            LoraInit::Default => {
                let bound = 1.0 / (inp as f64).sqrt();
                let a = Tensor::empty([r, inp], opts).uniform_(-bound, bound);
                (a, Tensor::zeros([out, r], opts))
            }
            LoraInit::Gaussian => {
                let a = Tensor::empty([r, inp], opts).normal_(0.0, 1.0 / r as f64);
                (a, Tensor::zeros([out, r], opts))
            }
            LoraInit::Pissa => {
                let _guard = tch::no_grad_guard();
                let LinearWeight::Dense(weight) = weight else {
                    panic!("PiSSA rewrites the base weight: it needs a 16-bit one")
                };
                let w = weight.to_kind(Kind::Float);
                // torch.svd, not linalg_svd: tch always passes linalg_svd a `driver`, which
                // the CPU rejects. Same LAPACK call, V = Vhᵀ.
                let (u, s, v) = w.svd(true, true);
                let vh = v.tr();
                // Split S/s evenly between the factors: s·B₀A₀ = U_r S_r Vh_r.
                let root = (s.narrow(0, 0, r) / scale).sqrt();
                let a = (root.unsqueeze(1) * vh.narrow(0, 0, r)).contiguous();
                let b = (u.narrow(1, 0, r) * root.unsqueeze(0)).contiguous();
                *weight = (w - b.matmul(&a) * scale).to_kind(weight.kind());
                (a, b)
            }
        };
        // DoRA's magnitude is the row norm of the weight the adapter starts from.
        let magnitude = dora.then(|| {
            let _guard = tch::no_grad_guard();
            l2_rows(&(weight.dense(Kind::Float) + b.matmul(&a) * scale), false)
        });
        let pissa_start = (init == LoraInit::Pissa).then(|| (a.copy(), b.copy()));
        Lora {
            a,
            b,
            magnitude,
            scale,
            dropout,
            pissa_start,
        }
        .with_grad()
    }

    /// The adapter as a plain LoRA on the original base weight. For PiSSA that is rank 2r:
    /// `W = W_res + s·B₀A₀`, so `W_res + s·BA = W + s·[B, −B₀]·[A; A₀]` (PEFT's conversion).
    pub fn to_plain_lora(&self) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        match &self.pissa_start {
            None => (self.a.detach(), self.b.detach()),
            Some((a0, b0)) => (
                Tensor::cat(&[self.a.detach(), a0.shallow_clone()], 0),
                Tensor::cat(&[self.b.detach(), -b0], 1),
            ),
        }
    }

    /// Marks the master weights trainable.
    pub fn with_grad(mut self) -> Lora {
        self.a = self.a.set_requires_grad(true);
        self.b = self.b.set_requires_grad(true);
        self.magnitude = self.magnitude.map(|m| m.set_requires_grad(true));
        self
    }

    pub fn rank(&self) -> i64 {
        self.a.size()[0]
    }

    /// The adapted layer's output, given `base_out = W x + b` for input `x` (compute dtype).
    pub fn forward(
        &self,
        x: &Tensor,
        weight: &LinearWeight,
        bias: Option<&Tensor>,
        base_out: Tensor,
        train: bool,
    ) -> Tensor {
        let kind = x.kind();
        let x_d = if train && self.dropout > 0.0 {
            x.dropout(self.dropout, true)
        } else {
            x.shallow_clone()
        };
        let x_a = x_d.linear::<Tensor>(&self.a.to_kind(kind), None);
        let Some(magnitude) = &self.magnitude else {
            return self.add_low_rank(base_out, &x_a);
        };
        let lora_out = x_a.linear::<Tensor>(&self.b.to_kind(kind), None);
        let norm = self.row_norm(weight).detach();
        let mag_scale = (magnitude / norm).to_kind(kind).view([1, -1]);
        // W x_d: reuse the base output when dropout left x unchanged (PEFT does the same).
        let wx = if train && self.dropout > 0.0 {
            weight.linear(&x_d, None)
        } else {
            match bias {
                Some(bias) => &base_out - bias,
                None => base_out.shallow_clone(),
            }
        };
        let delta = (&mag_scale - 1.0) * wx + mag_scale * lora_out * self.scale;
        base_out + delta
    }

    /// Plain LoRA without active dropout: its output is `W x + b + s·B (A x)`, so linears
    /// reading the same input can share the A projection (see [`Lora::add_low_rank`]).
    pub fn is_plain_at(&self, train: bool) -> bool {
        self.magnitude.is_none() && !(train && self.dropout > 0.0)
    }

    /// `base_out + s·B x_a` for `x_a = A x` (compute dtype), the sum done inside one matmul
    /// (addmm) and s folded into the small B: no extra pass over the `[tokens, out]` output.
    pub fn add_low_rank(&self, base_out: Tensor, x_a: &Tensor) -> Tensor {
        let b_scaled = (&self.b * self.scale).to_kind(base_out.kind());
        let shape = base_out.size();
        let (out_features, rank) = (shape[shape.len() - 1], self.rank());
        base_out
            .view([-1, out_features])
            .addmm(&x_a.reshape([-1, rank]), &b_scaled.tr())
            .view(shape.as_slice())
    }

    /// `‖W + s·B A‖` over each output row, in f32.
    fn row_norm(&self, weight: &LinearWeight) -> Tensor {
        let merged = weight.dense(Kind::Float) + self.b.matmul(&self.a) * self.scale;
        l2_rows(&merged, false)
    }

    /// The merged weight in f32: `W + s·BA`, or DoRA's `m / ‖W + s·BA‖_row · (W + s·BA)`.
    pub fn merged_weight(&self, weight: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let merged = weight.to_kind(Kind::Float) + self.b.matmul(&self.a) * self.scale;
        match &self.magnitude {
            None => merged,
            Some(m) => {
                let norm = l2_rows(&merged, true);
                merged * (m.view([-1, 1]) / norm)
            }
        }
    }
}

/// The L2 norm of each row of `[out, in]` (`torch.linalg.norm(w, dim=1)`).
fn l2_rows(w: &Tensor, keepdim: bool) -> Tensor {
    w.square()
        .sum_dim_intlist([1i64].as_slice(), keepdim, Kind::Float)
        .sqrt()
}

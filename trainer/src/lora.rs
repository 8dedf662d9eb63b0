//! LoRA and DoRA on a linear layer, exactly as PEFT computes them.
//!
//! ```text
//! LoRA:  y = W x + b + s · B A dropout(x)                   s = alpha / r  (rsLoRA: alpha / √r)
//! DoRA:  y = W x + b + (m / ‖W + s·BA‖_row − 1) · W x_d + (m / ‖W + s·BA‖_row) · s · B A x_d
//!        with x_d = dropout(x) and the row norm detached (not differentiated), as in PEFT.
//! ```
//! A `[r, in]`, B `[out, r]` and the DoRA magnitude `[out]` are f32 master weights; they are
//! cast to the compute dtype for the forward pass, so gradients land on the f32 masters.

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
    /// A fresh adapter for a base weight `[out, in]` (the weight is read for DoRA's magnitude).
    pub fn init(
        base_weight: &Tensor,
        r: i64,
        scale: f64,
        dropout: f64,
        init: LoraInit,
        dora: bool,
    ) -> Lora {
        let (out, inp) = base_weight.size2().expect("linear weight is [out, in]");
        let opts = (Kind::Float, base_weight.device());
        let a = match init {
            // kaiming_uniform_(a=√5) on [r, in]: bound = gain·√3/√fan_in = 1/√in.
            LoraInit::Default => {
                let bound = 1.0 / (inp as f64).sqrt();
                Tensor::empty([r, inp], opts).uniform_(-bound, bound)
            }
            LoraInit::Gaussian => Tensor::empty([r, inp], opts).normal_(0.0, 1.0 / r as f64),
        };
        let b = Tensor::zeros([out, r], opts);
        let magnitude = dora.then(|| l2_rows(&base_weight.to_kind(Kind::Float), false));
        Lora {
            a,
            b,
            magnitude,
            scale,
            dropout,
        }
        .with_grad()
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

    /// What the adapter adds to `base_out = W x + b` for input `x` (compute dtype).
    pub fn delta(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        base_out: &Tensor,
        train: bool,
    ) -> Tensor {
        let kind = x.kind();
        let x_d = if train && self.dropout > 0.0 {
            x.dropout(self.dropout, true)
        } else {
            x.shallow_clone()
        };
        let (a, b) = (self.a.to_kind(kind), self.b.to_kind(kind));
        let lora_out = x_d.linear::<Tensor>(&a, None).linear::<Tensor>(&b, None);
        let Some(magnitude) = &self.magnitude else {
            return lora_out * self.scale;
        };
        let norm = self.row_norm(weight).detach();
        let mag_scale = (magnitude / norm).to_kind(kind).view([1, -1]);
        // W x_d: reuse the base output when dropout left x unchanged (PEFT does the same).
        let wx = if train && self.dropout > 0.0 {
            x_d.linear::<Tensor>(weight, None)
        } else {
            match bias {
                Some(bias) => base_out - bias,
                None => base_out.shallow_clone(),
            }
        };
        (&mag_scale - 1.0) * wx + mag_scale * lora_out * self.scale
    }

    /// `‖W + s·B A‖` over each output row, in f32.
    fn row_norm(&self, weight: &Tensor) -> Tensor {
        let merged = weight.to_kind(Kind::Float) + self.b.matmul(&self.a) * self.scale;
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

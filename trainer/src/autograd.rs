//! Autograd functions whose backward is a Rust closure.
//!
//! tch exposes libtorch's autograd but no way to define a new differentiable operation.
//! [`custom`] runs a forward closure on tensors with autograd off, then attaches its outputs
//! to the graph through a libtorch `torch::autograd::Function` (trainer/csrc/autograd_bridge.cpp)
//! whose backward calls the backward closure with the outputs' gradients. What backward
//! needs, it captures: nothing is saved for it unless the closure holds it.
//!
//! A panic or libtorch error inside the backward closure becomes a libtorch error of the
//! `backward()` call (tch panics with its message, as for any failed op).

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Tensor;
use torch_sys::C_tensor;

/// The C++ side's collector of tensors or an error message.
#[repr(C)]
struct Sink {
    _opaque: [u8; 0],
}

type BackwardFn = unsafe extern "C" fn(*mut c_void, *const *const C_tensor, usize, *mut Sink);
type DropFn = unsafe extern "C" fn(*mut c_void);

extern "C" {
    fn loam_sink_push(sink: *mut Sink, tensor: *const C_tensor);
    fn loam_sink_fail(sink: *mut Sink, msg: *const c_char, len: usize);
    fn loam_autograd_apply(
        inputs: *const *const C_tensor,
        n_inputs: usize,
        outputs: *const *const C_tensor,
        n_outputs: usize,
        state: *mut c_void,
        backward: BackwardFn,
        drop: DropFn,
        attached: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn loam_autograd_free(msg: *mut c_char);
    fn loam_autograd_grad_enabled() -> i32;
}

/// Whether autograd records operations on this thread (off inside `tch::no_grad`).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { loam_autograd_grad_enabled() != 0 }
}

/// `forward(inputs)` as one differentiable operation: its outputs carry a gradient function
/// that, in backward, calls `backward(gradients of the outputs)`, which returns one gradient
/// per input (`None`: no gradient). `forward` runs with autograd off; when autograd is off
/// here or no input requires a gradient, its outputs are returned as they are.
pub fn custom<B>(
    inputs: &[&Tensor],
    forward: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
    backward: B,
) -> Vec<Tensor>
where
    B: FnMut(&[Tensor]) -> Vec<Option<Tensor>> + Send + 'static,
{
    let detached: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let outputs = {
        let _guard = tch::no_grad_guard();
        forward(&detached)
    };
    if !grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
        return outputs;
    }
    let state = Box::into_raw(Box::new(Backward {
        closure: backward,
        inputs: inputs.len(),
    }));
    let input_ptrs: Vec<*const C_tensor> = inputs.iter().map(|t| t.as_ptr()).collect();
    let output_ptrs: Vec<*const C_tensor> = outputs.iter().map(|t| t.as_ptr()).collect();
    let mut attached: Vec<*mut C_tensor> = vec![std::ptr::null_mut(); outputs.len()];
    // SAFETY: every pointer is a live tensor for the duration of the call; `state` is handed
    // over (the C++ side drops it through `drop_state::<B>` exactly once); on success
    // `attached` holds one new tensor per output, owned by us from here.
    let error = unsafe {
        loam_autograd_apply(
            input_ptrs.as_ptr(),
            input_ptrs.len(),
            output_ptrs.as_ptr(),
            output_ptrs.len(),
            state.cast(),
            run_backward::<B>,
            drop_state::<B>,
            attached.as_mut_ptr(),
        )
    };
    if !error.is_null() {
        panic!("custom autograd function: {}", take_message(error));
    }
    attached
        .into_iter()
        // SAFETY: fresh `at::Tensor*` allocated with `new`, as tch's own tensors are.
        .map(|p| unsafe { Tensor::from_ptr(p) })
        .collect()
}

/// The text of a message loam's C++ returned (`malloc`'d, NUL-terminated), freed.
pub(crate) fn take_message(msg: *mut c_char) -> String {
    // SAFETY: a NUL-terminated string from trainer/csrc, freed with the matching `free`.
    let text = unsafe { CStr::from_ptr(msg) }
        .to_string_lossy()
        .into_owned();
    unsafe { loam_autograd_free(msg) };
    text
}

struct Backward<B> {
    closure: B,
    inputs: usize,
}

unsafe extern "C" fn run_backward<B>(
    state: *mut c_void,
    grads: *const *const C_tensor,
    n: usize,
    sink: *mut Sink,
) where
    B: FnMut(&[Tensor]) -> Vec<Option<Tensor>> + Send + 'static,
{
    // SAFETY: `state` is the `Backward<B>` boxed in `custom`, alive until `drop_state`;
    // `grads` points to `n` live tensors.
    let backward = unsafe { &mut *(state as *mut Backward<B>) };
    let grads: Vec<Tensor> = (0..n)
        .map(|i| unsafe { Tensor::clone_from_ptr(*grads.add(i) as *mut C_tensor) })
        .collect();
    let result = catch_unwind(AssertUnwindSafe(|| (backward.closure)(&grads)));
    let fail = |msg: String| unsafe { loam_sink_fail(sink, msg.as_ptr().cast(), msg.len()) };
    match result {
        Ok(input_grads) if input_grads.len() == backward.inputs => {
            for grad in &input_grads {
                let ptr = grad.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
                // SAFETY: the sink copies the tensor handle.
                unsafe { loam_sink_push(sink, ptr) };
            }
        }
        Ok(input_grads) => fail(format!(
            "the backward closure returned {} gradients for {} inputs",
            input_grads.len(),
            backward.inputs
        )),
        Err(payload) => fail(panic_message(payload.as_ref())),
    }
}

unsafe extern "C" fn drop_state<B>(state: *mut c_void) {
    // SAFETY: called once, by the node that owns the box made in `custom`.
    drop(unsafe { Box::from_raw(state as *mut Backward<B>) });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the backward closure panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tch::{Device, Kind};

    /// y = x Wᵀ with W recomputed in backward, against plain autograd.
    #[test]
    fn custom_linear_gradients_equal_plain_autograd() {
        tch::manual_seed(0);
        let w = Tensor::randn([5, 7], (Kind::Double, Device::Cpu));
        let x0 = Tensor::randn([3, 4, 7], (Kind::Double, Device::Cpu));
        let gy = Tensor::randn([3, 4, 5], (Kind::Double, Device::Cpu));

        let x = x0.copy().set_requires_grad(true);
        let w_back = w.shallow_clone();
        let y = custom(
            &[&x],
            |inp| vec![inp[0].linear::<Tensor>(&w, None)],
            move |g| vec![Some(g[0].matmul(&w_back))],
        )
        .remove(0);
        assert!(y.requires_grad());
        // Something after the custom op, so the graph continues through it.
        (y.tanh() * &gy).sum(Kind::Double).backward();

        let x_ref = x0.copy().set_requires_grad(true);
        (x_ref.linear::<Tensor>(&w, None).tanh() * &gy)
            .sum(Kind::Double)
            .backward();
        let diff = (x.grad() - x_ref.grad()).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "gradient differs by {diff}");
    }

    /// Two inputs, one without a gradient; the closure is dropped with the graph.
    #[test]
    fn gradients_reach_each_input_and_the_closure_is_dropped() {
        let drops = Arc::new(AtomicUsize::new(0));
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let a = Tensor::from_slice(&[1.0f64, 2.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[3.0f64, 4.0]).set_requires_grad(true);
        {
            let counted = Counted(drops.clone());
            let b2 = b.detach();
            let y = custom(
                &[&a, &b],
                |inp| vec![&inp[0] * &inp[1]],
                move |g| {
                    let _keep = &counted;
                    vec![Some(&g[0] * &b2), None]
                },
            )
            .remove(0);
            y.sum(Kind::Double).backward();
            assert_eq!(drops.load(Ordering::SeqCst), 0, "alive while y is");
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped with the graph");
        assert_eq!(Vec::<f64>::try_from(a.grad()).unwrap(), [3.0, 4.0]);
        assert!(!b.grad().defined(), "no gradient was returned for b");

        // Not differentiated: the closure is never attached, and dropped at once.
        let counted = Counted(drops.clone());
        let out = tch::no_grad(|| {
            custom(
                &[&a],
                |inp| vec![inp[0].shallow_clone()],
                move |_| {
                    let _keep = &counted;
                    vec![None]
                },
            )
        });
        assert!(!out[0].requires_grad());
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    /// A panic in the backward closure is an error of `backward`, not an abort.
    #[test]
    fn a_panicking_backward_is_an_error() {
        let x = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let y = custom(
            &[&x],
            |inp| vec![&inp[0] * 2.0],
            |_| -> Vec<Option<Tensor>> { panic!("boom in backward") },
        )
        .remove(0);
        let err = y.sum(Kind::Double).f_backward().unwrap_err().to_string();
        assert!(err.contains("boom in backward"), "{err}");
        let wrong = custom(&[&x], |inp| vec![&inp[0] * 2.0], |_| vec![]).remove(0);
        let err = wrong
            .sum(Kind::Double)
            .f_backward()
            .unwrap_err()
            .to_string();
        assert!(err.contains("returned 0 gradients for 1 inputs"), "{err}");
    }
}

//! Where and in what precision tensors live: `device = auto|cpu|cuda|cuda:N`,
//! `dtype = f32|bf16|f16`.

use anyhow::{bail, Result};
use tch::{Device, Kind};

/// Keeps freed memory in the process for the next step instead of returning it to the
/// kernel: turns jemalloc's time-based page purging off (see main.rs for the allocator).
/// Each training step frees and reallocates the same activation and logits buffers; pages
/// given back are zeroed by the kernel when touched again, which cost 12% of a bf16 CPU step
/// with glibc's default, and jemalloc's default 10 s decay was still slower than keeping them.
/// Only `train` and `eval` do this: `merge` streams tensors once, and there purging keeps
/// peak RSS down (0.93 vs 1.17 GB on SmolLM2).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::{c_void, CStr, CString};
        use std::ptr::null_mut;
        use tikv_jemalloc_sys::mallctl;

        /// Writes -1 ("never purge") into jemalloc's ssize_t setting `name`. A refusal (an
        /// arena not yet initialised) changes nothing.
        fn never_purge(name: &CStr) {
            let mut never: isize = -1;
            // SAFETY: mallctl reads exactly `size_of::<isize>()` bytes from a valid local;
            // the decay settings are ssize_t.
            unsafe {
                mallctl(
                    name.as_ptr(),
                    null_mut(),
                    null_mut(),
                    (&mut never as *mut isize).cast::<c_void>(),
                    std::mem::size_of::<isize>(),
                );
            }
        }

        // Arenas made from now on, then each one that exists.
        never_purge(c"arenas.dirty_decay_ms");
        never_purge(c"arenas.muzzy_decay_ms");
        let mut arenas: u32 = 0;
        let mut len = std::mem::size_of::<u32>();
        // SAFETY: mallctl writes at most `len` bytes into a valid local; `arenas.narenas` is
        // an unsigned.
        unsafe {
            mallctl(
                c"arenas.narenas".as_ptr(),
                (&mut arenas as *mut u32).cast::<c_void>(),
                &mut len,
                null_mut(),
                0,
            );
        }
        for i in 0..arenas {
            for kind in ["dirty", "muzzy"] {
                let name = CString::new(format!("arena.{i}.{kind}_decay_ms"))
                    .expect("a formatted setting name has no NUL");
                never_purge(&name);
            }
        }
    }
}

/// Runs `f` with libtorch on one thread (this thread's OpenMP setting, restored after):
/// a reduction inside sums in the order a one-thread run does, so its result does not
/// depend on the thread count (libtorch splits a sum of over 32768 values across threads).
pub fn single_threaded<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            tch::set_num_threads(self.0);
        }
    }
    let _restore = Restore(tch::get_num_threads());
    tch::set_num_threads(1);
    f()
}

pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => cuda(0)?,
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n)?,
            _ => bail!("unknown device `{s}`; use auto, cpu, cuda or cuda:N"),
        },
    })
}

fn cuda(n: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if n >= count {
        bail!("device cuda:{n} asked for, but this machine has {count} CUDA device(s); use device = \"auto\" or \"cpu\"");
    }
    Ok(Device::Cuda(n))
}

pub fn parse_dtype(s: &str) -> Result<Kind> {
    Ok(match s {
        "f32" | "float32" => Kind::Float,
        "bf16" | "bfloat16" => Kind::BFloat16,
        "f16" | "float16" => Kind::Half,
        _ => bail!("unknown dtype `{s}`; use f32, bf16 or f16"),
    })
}

/// What to say when `kind` is bf16 on a CPU without native bf16 arithmetic (AVX-512 BF16 or
/// AMX): libtorch's bf16 matmul is then a scalar loop, tens of times slower than f32.
pub fn slow_dtype_warning(kind: Kind, device: Device) -> Option<String> {
    if kind != Kind::BFloat16 || device != Device::Cpu || !cfg!(target_arch = "x86_64") {
        return None;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    let native = flags
        .split_whitespace()
        .any(|f| f == "avx512_bf16" || f == "amx_bf16");
    (!native).then(|| {
        "model.dtype = \"bf16\" on a CPU without native bf16 (AVX-512 BF16 or AMX): \
         libtorch's bf16 matmul is a scalar loop here, about 30x slower than f32; set \
         model.dtype = \"f32\" to train faster on this machine (peak memory roughly doubles)"
            .to_string()
    })
}

/// Name of a compute dtype as the CLI and recipes spell it.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        _ => "f32",
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// [`peak_rss_bytes`] for people, e.g. "1.2 GiB".
pub fn peak_rss_human() -> String {
    match peak_rss_bytes().map(|b| b as f64 / 1024.0) {
        Some(k) if k >= 1024.0 * 1024.0 => format!("{:.2} GiB", k / 1024.0 / 1024.0),
        Some(k) => format!("{:.0} MiB", k / 1024.0),
        None => "unknown".into(),
    }
}

thread_local! {
    /// Set while [`guard`] runs: its panics become errors, so the panic hook stays quiet.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// tch panics when libtorch fails (out of memory, a shape bug). This hook keeps such a
/// panic silent inside [`guard`], which turns it into an error; elsewhere the default hook
/// reports it.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !GUARDED.with(|g| g.get()) {
            default(info)
        }
    }));
}

/// Runs `f`; a libtorch failure becomes an error. Running out of memory names the knobs.
pub fn guard<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let was = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    match result {
        Ok(result) => result,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let first = msg
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("unknown error");
            if is_out_of_memory(&msg) {
                anyhow::bail!(
                    "{what} ran out of memory ({first}). Turn these knobs: lower train.micro_batch (raise \
                     train.grad_accum to keep the batch), lower data.seq_len, set \
                     train.activation_checkpointing = true, use model.dtype = \"bf16\""
                )
            }
            anyhow::bail!("{what} failed inside libtorch: {first}")
        }
    }
}

fn is_out_of_memory(msg: &str) -> bool {
    let m = msg.to_lowercase();
    m.contains("out of memory")
        || m.contains("can't allocate memory")
        || m.contains("failed to allocate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_threaded_reductions_equal_a_one_thread_run() {
        use tch::Tensor;
        tch::manual_seed(1);
        let x = Tensor::randn([3 << 20], (Kind::Float, Device::Cpu));
        let threads = tch::get_num_threads();
        let ours = single_threaded(|| x.mean(Kind::Float).double_value(&[]));
        tch::set_num_threads(1);
        let one = x.mean(Kind::Float).double_value(&[]);
        tch::set_num_threads(threads);
        assert_eq!(ours.to_bits(), one.to_bits());
        assert_eq!(single_threaded(|| 7), 7);
    }

    #[test]
    fn an_out_of_memory_panic_becomes_an_error_with_the_knobs() {
        install_panic_hook();
        let err = guard("training step 3", || -> anyhow::Result<()> {
            panic!("Torch(\"CUDA out of memory. Tried to allocate 2.00 GiB\")")
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("training step 3 ran out of memory") && err.contains("train.micro_batch"),
            "{err}"
        );
        let err = guard("eval", || -> anyhow::Result<()> {
            panic!("shape mismatch")
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("eval failed inside libtorch: shape mismatch"),
            "{err}"
        );
        assert_eq!(guard("ok", || Ok(7)).unwrap(), 7);
    }
}

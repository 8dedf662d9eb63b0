use std::process::ExitCode;

// The allocator of the whole process, libtorch's C++ included: jemalloc, linked in and
// exporting `malloc`/`free`. A training step frees and reallocates the same activation
// buffers thousands of times; glibc's malloc spent 5% of a bf16 CPU step (8% of the main
// thread, all serial) in its free lists. With jemalloc, and page purging off while training
// (`runtime::keep_freed_memory`), the SmolLM2 4×256 bf16 step ran ≈ 7% faster in 0.93× the
// peak RSS (scripts/bench/README.md). `MALLOC_CONF` tunes it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
use tikv_jemalloc_sys as _;

fn main() -> ExitCode {
    match loam::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One readable message: what went wrong, then each cause, then what to do.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

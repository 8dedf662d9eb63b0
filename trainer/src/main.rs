use std::process::ExitCode;

// The allocator of the whole process, libtorch's C++ included: jemalloc, linked in and
// exporting `malloc`/`free`. A training step frees and reallocates the same activation
// buffers hundreds of times; glibc's malloc spent 5% of a bf16 CPU step searching its free
// lists, and unless told otherwise returned big blocks to the kernel, which then zeroed
// fresh pages every step (12%). jemalloc with page purging off ran the SmolLM2 4×256 bf16
// step 8–10% faster in 0.85× the peak RSS (scripts/bench/README.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
use tikv_jemalloc_sys as _;

/// jemalloc's options, read before `main`: keep freed pages for reuse (no decay-based
/// purging). `MALLOC_CONF` in the environment still overrides them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[no_mangle]
static malloc_conf: JemallocOptions =
    JemallocOptions(c"dirty_decay_ms:-1,muzzy_decay_ms:-1".as_ptr());

/// A C string pointer that may live in a static (`const char *malloc_conf` in C).
#[repr(transparent)]
struct JemallocOptions(*const std::ffi::c_char);
// SAFETY: it points to a constant, never written.
unsafe impl Sync for JemallocOptions {}

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

//! Link `loam` so it runs with no environment variables set:
//! an rpath to libtorch's lib dir (the PyPI torch wheel inside loam's venv), and an explicit
//! `libtorch_cuda` dependency so CUDA is available when the wheel has it. Without
//! `--no-as-needed` the linker drops `libtorch_cuda.so` (loam calls none of its symbols
//! directly) and `tch::Cuda::is_available()` would always be false.
use std::path::Path;

fn main() {
    // Exported by torch-sys (`links = "tch"`), which found libtorch via LIBTORCH or
    // LIBTORCH_USE_PYTORCH.
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
    }
}

//! Link `loam` so it runs with no environment variables set:
//! an rpath to libtorch's lib dir (the PyPI torch wheel inside loam's venv), and an explicit
//! `libtorch_cuda` dependency so CUDA is available when the wheel has it. Without
//! `--no-as-needed` the linker drops `libtorch_cuda.so` (loam calls none of its symbols
//! directly) and `tch::Cuda::is_available()` would always be false.
//!
//! It also compiles loam's own C++ (`csrc/`, one file per idea) against the same libtorch.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Exported by torch-sys (`links = "tch"`), which found libtorch via LIBTORCH or
    // LIBTORCH_USE_PYTORCH.
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
    }
    compile_against_libtorch(
        "loam_torch_ext",
        &["csrc/autograd_bridge.cpp"],
        Path::new(&lib_dir),
    );
}

/// Compiles C++ `sources` into the static library `name`, linked into loam, with libtorch's
/// headers (the wheel's `include/` beside its `lib/`) and the wheel's C++ ABI.
fn compile_against_libtorch(name: &str, sources: &[&str], lib_dir: &Path) {
    let include = lib_dir.parent().unwrap_or(lib_dir).join("include");
    for source in sources {
        println!("cargo:rerun-if-changed={source}");
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // The PyPI torch wheels are built with the C++11 ABI (torch._C._GLIBCXX_USE_CXX11_ABI).
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .files(sources)
        .compile(name);
}

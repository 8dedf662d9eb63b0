//! Link `loam` so it runs with no environment variables set:
//! an rpath to libtorch's lib dir (the PyPI torch wheel inside loam's venv), and an explicit
//! `libtorch_cuda` dependency so CUDA is available when the wheel has it. Without
//! `--no-as-needed` the linker drops `libtorch_cuda.so` (loam calls none of its symbols
//! directly) and `tch::Cuda::is_available()` would always be false.
//!
//! It also compiles loam's C++ shims (`csrc/`, one file per idea) against the wheel's headers:
//! `autograd_bridge.cpp`, differentiable operations whose backward is Rust (`crate::autograd`);
//! `dequantize_4bit.cpp`, the fused CPU kernel for 4-bit weights (`model::quant::nf4`);
//! `c10d_shim.cpp`, the C ABI over libtorch's c10d (TCPStore, ProcessGroupGloo, and
//! ProcessGroupNCCL when their headers are found; `loam --version` names what was built).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Exported by torch-sys (`links = "tch"`), which found libtorch via LIBTORCH or
    // LIBTORCH_USE_PYTORCH.
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:rustc-env=LOAM_C10D_BACKENDS=none (libtorch not found at build time)");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    let has_cuda = Path::new(&lib_dir).join("libtorch_cuda.so").exists();
    if has_cuda {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
    }
    let torch = Path::new(&lib_dir)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    compile_cpp("autograd_bridge", &torch, &[], &[]);
    compile_cpp("dequantize_4bit", &torch, &[], &[]);
    build_c10d_shim(&torch, &lib_dir, has_cuda);
}

/// Compiles one C++ file of `csrc/` against libtorch's headers (C++17, the wheel's C++ ABI,
/// as torch-sys compiles its own glue) into a static library linked into `loam`.
fn compile_cpp(name: &str, torch: &Path, defines: &[&str], includes: &[PathBuf]) {
    let file = format!("csrc/{name}.cpp");
    println!("cargo:rerun-if-changed={file}");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .includes(includes)
        .file(file);
    for d in defines {
        build.define(d, None);
    }
    build.compile(name);
}

/// The c10d shim: TCPStore always; Gloo when its headers are found (they do not ship in the
/// torch wheel; scripts/setup_dist.sh unpacks Debian's libgloo-dev under $LOAM_HOME/deps);
/// NCCL when `nccl.h` and CUDA's runtime headers are found (the NVIDIA wheels torch depends
/// on, plus nvidia-cuda-crt and nvidia-cuda-cccl from scripts/requirements.txt).
fn build_c10d_shim(torch: &Path, lib_dir: &str, has_cuda: bool) {
    let mut defines = Vec::new();
    let mut includes = Vec::new();
    let mut backends = Vec::new();
    match gloo_include() {
        Some(dir) => {
            defines.extend(["USE_C10D_GLOO", "LOAM_WITH_GLOO"]);
            includes.push(dir);
            backends.push("gloo");
        }
        None => {
            println!("cargo:warning=loam: Gloo's headers not found (run scripts/setup_dist.sh, or set LOAM_GLOO_INCLUDE): no data-parallel training on CPUs");
            backends.push("no gloo (headers missing at build time: run scripts/setup_dist.sh)");
        }
    }
    match has_cuda.then(|| cuda_includes(torch)).flatten() {
        Some(dirs) => {
            defines.extend(["USE_C10D_NCCL", "LOAM_WITH_NCCL"]);
            includes.extend(dirs);
            backends.push("nccl");
        }
        None => backends.push("no nccl (CUDA headers missing at build time)"),
    }
    compile_cpp("c10d_shim", torch, &defines, &includes);
    println!("cargo:rustc-link-search=native={lib_dir}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if defines.contains(&"LOAM_WITH_NCCL") {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-env=LOAM_C10D_BACKENDS={}", backends.join(", "));
}

/// `$LOAM_GLOO_INCLUDE`, else the headers setup_dist.sh unpacked, else a system libgloo-dev.
fn gloo_include() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=LOAM_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=LOAM_HOME");
    let has_gloo = |dir: &Path| dir.join("gloo/rendezvous/store.h").exists();
    if let Some(dir) = std::env::var_os("LOAM_GLOO_INCLUDE").map(PathBuf::from) {
        return has_gloo(&dir).then_some(dir);
    }
    let home = std::env::var_os("LOAM_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/loam")));
    if let Some(deps) = home.map(|h| h.join("deps")) {
        if deps.is_dir() {
            println!("cargo:rerun-if-changed={}", deps.display());
        }
        let unpacked = std::fs::read_dir(&deps)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("libgloo-dev"))
            .map(|e| e.path().join("usr/include"))
            .find(|dir| has_gloo(dir));
        if unpacked.is_some() {
            return unpacked;
        }
    }
    let system = PathBuf::from("/usr/include");
    has_gloo(&system).then_some(system)
}

/// Include dirs for ProcessGroupNCCL.hpp's chain: `nccl.h`, and CUDA's runtime headers with
/// their `crt/` and `nv/` parts. `$LOAM_CUDA_INCLUDE` (e.g. /usr/local/cuda/include) first,
/// then the NVIDIA wheels beside torch in site-packages.
fn cuda_includes(torch: &Path) -> Option<Vec<PathBuf>> {
    println!("cargo:rerun-if-env-changed=LOAM_CUDA_INCLUDE");
    let mut candidates: Vec<PathBuf> = std::env::var_os("LOAM_CUDA_INCLUDE")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let nvidia = torch.parent().map(|p| p.join("nvidia")).unwrap_or_default();
    for entry in std::fs::read_dir(&nvidia).into_iter().flatten().flatten() {
        candidates.push(entry.path().join("include"));
    }
    candidates.retain(|d| d.is_dir());
    let find = |file: &str| candidates.iter().find(|d| d.join(file).exists()).cloned();
    let needed = [
        "nccl.h",
        "cuda_runtime_api.h",
        "crt/host_config.h",
        "nv/target",
    ];
    let mut dirs = Vec::new();
    for file in needed {
        let dir = find(file)?;
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    Some(dirs)
}

//! loam-gguf: the GGUF file format (read, dequantize, quantize, write). No libtorch.
//!
//! - [`GgufFile`] opens a GGUF v2/v3 file through a memory map: metadata with typed getters,
//!   tensor infos, raw tensor bytes and dequantization to f32.
//! - [`dequantize`] / [`quantize`] convert blocks of ggml types, bit-identical to ggml's
//!   reference code and to gguf-py (checked by the oracle tests against `gguf` 0.19).
//! - [`GgufWriter`] writes GGUF v3, streaming tensor data one tensor at a time.
//!
//! **Dimension order.** GGUF lists dimensions innermost first (`ne`): a PyTorch weight of
//! shape `[rows, cols]` is stored with `ne = [cols, rows]`, same bytes. Use
//! [`shape_to_ne`] / [`ne_to_shape`] and [`TensorInfo::shape`]; see [`shape`].
//!
//! ```no_run
//! # fn main() -> loam_gguf::Result<()> {
//! let f = loam_gguf::GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let layers = f.get_u32("llama.block_count")?;
//! let tokens = f.get_str_array("tokenizer.ggml.tokens")?;
//! let q = f.tensor("blk.0.attn_q.weight").unwrap();
//! let values = f.dequantize(q.name())?; // row-major, shape q.shape() = [576, 576]
//! # Ok(()) }
//! ```

mod dequant;
mod error;
mod quant;
mod reader;
pub mod shape;
mod types;
mod value;
mod writer;

pub use dequant::dequantize;
pub use error::{GgufError, Result};
pub use quant::{f32_to_bf16_bits, quantize, quantize_into};
pub use reader::{GgufFile, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_DIMS};
pub use shape::{ne_to_shape, shape_to_ne};
pub use types::{GgmlType, QK_K};
pub use value::{Array, FromValue, TypedValue, Value, ValueType};
pub use writer::{GgufDataWriter, GgufWriter, MAX_TENSOR_NAME};

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh empty directory under the system temp dir, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "loam-gguf-unit-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        pub fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

//! GGUF in and out: llama.cpp's file format for a Hugging Face model directory.
//!
//! - `export`: model directory → GGUF v3 (+ Ollama Modelfile)
//! - `import`: GGUF → model directory (f32 safetensors, config, tokenizer)
//! - `names`: tensor names and the llama Q/K row permutation, both ways
//! - `rope_freqs`: Llama 3.1 rope scaling ↔ llama.cpp's `rope_freqs.weight`, both ways
//! - `tokenizer`: `tokenizer.ggml.*` ↔ `tokenizer.json`
//!
//! The file format itself (reading, quantization, writing) is the `loam-gguf` crate.

pub mod arch;
pub mod export;
pub mod import;
pub mod names;
pub mod rope_freqs;
pub mod tokenizer;

pub use export::export;
pub use import::import;

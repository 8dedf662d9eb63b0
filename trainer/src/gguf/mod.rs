//! GGUF in and out: llama.cpp's file format for a Hugging Face model directory.
//!
//! - `export`: model directory → GGUF v3 (+ Ollama Modelfile)
//! - `import`: GGUF → model directory (f32 safetensors, config, tokenizer)
//! - `adapter`: PEFT LoRA adapter → llama.cpp's LoRA GGUF
//! - `names`: tensor names and the llama Q/K row permutation, both ways
//! - `rope_freqs`: Llama 3.1 rope scaling ↔ llama.cpp's `rope_freqs.weight`, both ways
//! - `tokenizer`: `tokenizer.ggml.*` ↔ `tokenizer.json` (pre-tokenizer names, SentencePiece)
//!
//! The file format itself (reading, quantization, writing) is the `loam-gguf` crate.

pub mod adapter;
pub mod arch;
pub mod export;
pub mod general;
pub mod import;
pub mod names;
pub mod rope_freqs;
pub mod tokenizer;

pub use adapter::export_adapter;
pub use export::export;
pub use import::import;

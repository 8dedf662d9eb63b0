//! loam: LoRA fine-tuning for open language models on libtorch.
//!
//! - `model/`: base models in the Hugging Face layout (one decoder for Llama, Mistral, Qwen2/3,
//!   Gemma 1/2/3, Phi-3, SmolLM3)
//! - `weights`: memory-mapped safetensors checkpoints; `hub`: finding a model directory
//! - `lora`: the LoRA / DoRA math; `adapter`: PEFT adapter directories
//! - `train/`: the training recipe, top to bottom (`train/mod.rs`), with its optimizer,
//!   loss, checkpoints and plot; `recipe`: the TOML that describes a run
//! - `eval/`: held-out loss and perplexity; `generate`: text generation with a KV cache
//! - `export/`: merged model directories and their model card; `gguf/`: GGUF import and export
//! - `dist/`: data-parallel training over libtorch's c10d (torchrun, Slurm)
//! - `autograd`: differentiable operations whose backward is Rust (a small libtorch C++ bridge)
//! - `vocab/`: `loam vocab extend` (new tokens, resized embeddings) and the trainable
//!   token rows of `lora.trainable_tokens`
//! - `runtime`: devices, dtypes, memory, libtorch failures; `fsutil`: atomic outputs
//! - `cli`: the `loam` command line, a thin layer over the above

pub mod adapter;
pub mod autograd;
pub mod cli;
pub mod dist;
pub mod eval;
pub mod export;
pub mod fsutil;
pub mod generate;
pub mod gguf;
pub mod hub;
pub mod lora;
pub mod model;
pub mod recipe;
pub mod runtime;
pub mod train;
pub mod vocab;
pub mod weights;

#[cfg(test)]
mod testing;

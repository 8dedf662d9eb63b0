//! What leaves loam as a model: merged Hugging Face directories (`merge`) with their model
//! card (`model_card`), both written through `shards` (tensors streamed into sharded
//! safetensors), which `loam vocab extend` uses too. GGUF files are written by `crate::gguf`.

pub mod merge;
pub mod model_card;
pub mod shards;

//! What leaves loam as a model: merged Hugging Face directories (`merge`) and the cards of
//! models and datasets (`card`), written through `shards` (tensors streamed into sharded
//! safetensors), which `loam vocab extend` uses too. GGUF files are written by `crate::gguf`.

pub mod card;
pub mod merge;
pub mod shards;

//! What leaves loam as a model: merged Hugging Face directories (`merge`) with their model
//! card (`model_card`). GGUF files are written by `crate::gguf`.

pub mod merge;
pub mod model_card;

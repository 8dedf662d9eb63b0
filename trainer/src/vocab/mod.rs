//! A bigger vocabulary for a new language.
//!
//! - `extend`: `loam vocab extend`: learns new tokens on a corpus (the tokenizer side is
//!   `loam_data::vocab`), writes a complete model directory with the extended tokenizer and
//!   resized embeddings (`resize`), and reports tokens per byte / word before and after
//!   (`report`, also `vocab_extension.json` in the directory).
//! - `trainable_tokens`: training those rows beside the adapter (`lora.trainable_tokens`,
//!   PEFT's `trainable_token_indices`), saved, resumed and merged with it.

pub mod extend;
pub mod report;
pub mod resize;
pub mod trainable_tokens;

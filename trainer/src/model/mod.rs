//! Base models in the Hugging Face layout: `config.json` → [`ModelSpec`], checkpoint
//! tensors → [`CausalLm`].

pub mod attention;
pub mod config;
pub mod decoder;
mod family_defaults;
pub mod fused;
pub mod norm;
pub mod rope;

pub use config::{Family, ModelSpec, SUPPORTED_ARCHITECTURES};
pub use decoder::{CausalLm, KvCache, LmHead, Positions};

use crate::weights::Weights;
use anyhow::{Context, Result};
use std::path::Path;
use tch::{Device, Kind};

/// Loads the model in `dir` (a resolved local directory) in `kind` on `device`.
pub fn load(dir: &Path, kind: Kind, device: Device) -> Result<CausalLm> {
    let spec = ModelSpec::from_model_dir(dir)?;
    let mut weights = Weights::open(dir)?;
    CausalLm::load(spec, &mut weights, kind, device)
        .with_context(|| format!("loading the model in {}", dir.display()))
}

#[cfg(test)]
mod parity_tests;

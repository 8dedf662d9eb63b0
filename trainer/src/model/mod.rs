//! Base models in the Hugging Face layout: `config.json` → [`ModelSpec`], checkpoint
//! tensors → [`CausalLm`].

pub mod attention;
pub mod config;
pub mod decoder;
mod family_defaults;
pub mod fused;
pub mod norm;
pub mod quant;
pub mod rope;

pub use config::{Family, ModelSpec, SUPPORTED_ARCHITECTURES};
pub use decoder::{CausalLm, KvCache, LmHead, Positions};

use crate::weights::Weights;
use anyhow::{Context, Result};
use std::path::Path;
use tch::{Device, Kind};

/// Loads the model in `dir` (a resolved local directory) in `kind` on `device`.
pub fn load(dir: &Path, kind: Kind, device: Device) -> Result<CausalLm> {
    load_with(dir, kind, device, quant::Quantize::None, &[])
}

/// [`load`], quantizing a 16-bit checkpoint's linears to 4 bits as it reads them when
/// `quantize` asks (except the modules `skip` names). A checkpoint that is 4-bit already
/// loads as it is, whatever `quantize` says.
pub fn load_with(
    dir: &Path,
    kind: Kind,
    device: Device,
    quantize: quant::Quantize,
    skip: &[String],
) -> Result<CausalLm> {
    let mut spec = ModelSpec::from_model_dir(dir)?;
    if spec.quantization.is_none() {
        spec.quantization = quant::Quantization::at_load(quantize, skip.to_vec());
    }
    let mut weights = Weights::open(dir)?;
    let mut lm = CausalLm::load(spec, &mut weights, kind, device)
        .with_context(|| format!("loading the model in {}", dir.display()))?;
    if let Some(summary) = quant::summary(&mut lm) {
        tracing::info!("{summary}");
    }
    Ok(lm)
}

#[cfg(test)]
mod parity_tests;

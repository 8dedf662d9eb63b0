//! `loam gguf export-adapter`: a PEFT LoRA adapter → llama.cpp's LoRA GGUF, which
//! `llama-cli --lora A.gguf` and Ollama's `ADAPTER` line apply to the base model's GGUF without
//! merging.
//!
//! The layout is that of llama.cpp's `convert_lora_to_gguf.py`, as `src/llama-adapter.cpp`
//! reads it: `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and for
//! each adapted linear `<gguf name>.lora_a` (PEFT's A, `[r, in]`) and `.lora_b` (B, `[out, r]`),
//! with B's rows transformed as export transforms the base's (llama.cpp's Q/K order, Gemma's
//! query fold: permuting or scaling the rows of `B·A` is doing so to B's). llama.cpp scales
//! each pair by `alpha / r`, `r` read from the tensor shape. PEFT's scale is `alpha / r`, or `alpha / √r` with rsLoRA, and may differ per module
//! (`rank_pattern`, `alpha_pattern`): loam writes `alpha = scale · r` of the first module, which
//! folds rsLoRA into alpha, and folds any other module's difference into its B.

use super::export::write_modelfile;
use super::names::{hf_to_gguf_in, permute_rows};
use super::tokenizer::Vocab;
use crate::export::merge::read_checked_adapter;
use crate::model::config::ModelSpec;
use anyhow::{bail, Context, Result};
use loam_gguf::{shape_to_ne, GgmlType, GgufWriter};
use std::path::{Path, PathBuf};

/// What was written.
pub struct ExportedAdapter {
    pub gguf: PathBuf,
    pub modelfile: Option<PathBuf>,
    /// Adapted linears (each a lora_a / lora_b pair).
    pub modules: usize,
    /// `adapter.lora.alpha`.
    pub alpha: f32,
}

/// One adapted linear, ready to write.
struct Pair {
    gguf: String,
    a: Vec<f32>,
    a_shape: [usize; 2],
    b: Vec<f32>,
    b_shape: [usize; 2],
}

/// Writes the adapter in `adapter_dir` (for the base in `model_dir`) to `out`; with
/// `base_gguf`, also an Ollama Modelfile beside `out` (`FROM base_gguf`, `ADAPTER ./out`).
pub fn export_adapter(
    adapter_dir: &Path,
    model_dir: &Path,
    out: &Path,
    base_gguf: Option<&Path>,
    force: bool,
) -> Result<ExportedAdapter> {
    let modelfile = base_gguf.map(|_| out.with_file_name("Modelfile"));
    for path in std::iter::once(out).chain(modelfile.as_deref()) {
        if path.exists() && !force {
            bail!(
                "{} already exists; pass --force to replace it",
                path.display()
            );
        }
    }
    let spec = ModelSpec::from_model_dir(model_dir)?;
    let rules = super::arch::rules_for(&spec)
        .with_context(|| format!("exporting an adapter for {}", model_dir.display()))?;
    let arch = rules.arch;
    let (cfg, loras) = read_checked_adapter(model_dir, adapter_dir)?;
    let config_path = adapter_dir.join("adapter_config.json");
    if cfg.use_dora {
        bail!(
            "{}: use_dora is true; llama.cpp's LoRA adapters have no DoRA magnitude. Merge the \
             adapter (`loam merge`) and export the merged model with `loam gguf export`",
            config_path.display()
        );
    }
    let mut alpha: Option<f64> = None;
    let mut pairs = Vec::new();
    for (weight, lora) in &loras {
        let Some(gguf) = hf_to_gguf_in(arch, weight) else {
            bail!(
                "{}: the adapter adapts `{weight}`, which has no llama.cpp tensor",
                config_path.display()
            );
        };
        if weight == "lm_head.weight" && spec.tie_word_embeddings {
            bail!(
                "{}: the adapter adapts lm_head, which this base ties to the embeddings; \
                 llama.cpp has no separate output tensor to apply it to. Merge the adapter \
                 (`loam merge`) and export the merged model",
                config_path.display()
            );
        }
        let (r, inp) = lora.a.size2()?;
        let (outp, _) = lora.b.size2()?;
        // llama.cpp's scale is alpha / r for every module; fold what differs into B.
        let wanted = lora.scale * r as f64;
        let global = *alpha.get_or_insert(wanted);
        let fold = wanted / global;
        let a = Vec::<f32>::try_from(lora.a.flatten(0, -1))
            .with_context(|| format!("cannot read lora_A of `{weight}`"))?;
        // W = B·A: what export does to W's rows (Gemma's query fold, llama's Q/K
        // permutation) is done to B's.
        let transform = rules.transform(weight);
        let mut b =
            Vec::<f32>::try_from((&lora.b * (fold * transform.scale as f64)).flatten(0, -1))
                .with_context(|| format!("cannot read lora_B of `{weight}`"))?;
        if let Some(heads) = transform.permute_heads {
            b = permute_rows(&b, r as usize, heads);
        }
        pairs.push(Pair {
            gguf,
            a,
            a_shape: [r as usize, inp as usize],
            b,
            b_shape: [outp as usize, r as usize],
        });
    }
    let alpha = alpha.context("the adapter holds no LoRA tensors")? as f32;

    crate::fsutil::create_parent_dir(out)?;
    let mut w = GgufWriter::new(out);
    w.add_metadata("general.architecture", arch)?;
    w.add_metadata("general.type", "adapter")?;
    w.add_metadata("general.name", adapter_name(adapter_dir).as_str())?;
    w.add_metadata("adapter.type", "lora")?;
    w.add_metadata("adapter.lora.alpha", alpha)?;
    for p in &pairs {
        w.add_tensor(
            &format!("{}.lora_a", p.gguf),
            &shape_to_ne(&p.a_shape),
            GgmlType::F32,
        )?;
        w.add_tensor(
            &format!("{}.lora_b", p.gguf),
            &shape_to_ne(&p.b_shape),
            GgmlType::F32,
        )?;
    }
    let mut data = w.start_data()?;
    for p in &pairs {
        data.write_tensor_f32(&format!("{}.lora_a", p.gguf), &p.a)?;
        data.write_tensor_f32(&format!("{}.lora_b", p.gguf), &p.b)?;
    }
    let gguf = data.finish()?;
    if let (Some(path), Some(base)) = (&modelfile, base_gguf) {
        let vocab = Vocab::from_hf_dir(model_dir, spec.vocab_size as usize)?;
        let adapter = format!(
            "./{}",
            out.file_name().unwrap_or_default().to_string_lossy()
        );
        write_modelfile(path, &base.display().to_string(), Some(&adapter), &vocab)?;
    }
    Ok(ExportedAdapter {
        gguf,
        modelfile,
        modules: pairs.len(),
        alpha,
    })
}

/// `general.name`: the adapter directory's name, or its parent's for `runs/NAME/adapter`.
fn adapter_name(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match name(&dir) {
        Some(n) if n == "adapter" => dir.parent().and_then(name).unwrap_or(n),
        Some(n) => n,
        None => "adapter".into(),
    }
}

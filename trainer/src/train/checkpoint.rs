//! Checkpoints: `checkpoints/step-N/` holds the adapter (PEFT format, for the user),
//! `optimizer.safetensors` (the trainable tensors as they are and their AdamW moments: what
//! a resume loads), and `state.json` (step, tokens, losses, data cursor). Each is written under a
//! temporary name and renamed when complete, so a run killed mid-write resumes from the
//! previous good one.

use crate::adapter::{self, AdapterConfig};
use crate::model::CausalLm;
use crate::train::optim::{split_like, AdamW};
use anyhow::{bail, Context, Result};
use loam_data::stream::{BatchStream, Cursor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// What a resumed run needs besides tensors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub step: u64,
    /// Trained tokens so far.
    pub tokens: i64,
    pub elapsed_s: f64,
    /// Loss of every step so far (the loss curve, spike detection).
    pub losses: Vec<f64>,
    /// (step, eval loss) of every periodic eval.
    #[serde(default)]
    pub evals: Vec<(u64, f64)>,
    pub eval_before: Option<f64>,
    /// Processes and `grad_accum` of the run that wrote it (0: written before data-parallel
    /// training existed). A resume keeps their product, the micro-batches of one step.
    #[serde(default)]
    pub world: usize,
    #[serde(default)]
    pub grad_accum: usize,
    /// The held-out eval before the first step, all of it (bits per byte, chrF++, BLEU).
    #[serde(default)]
    pub held_out_before: Option<crate::train::held_out::HeldOutScores>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    state: TrainState,
    optimizer_step: u64,
    cursor: Cursor,
}

pub fn dir(out_dir: &Path) -> PathBuf {
    out_dir.join("checkpoints")
}

/// The newest complete checkpoint (`step-N`), if any.
pub fn latest(out_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(out_dir)?.pop().map(|(_, p)| p))
}

/// Complete checkpoints, oldest first. Half-written `.step-N.tmp` directories are ignored.
fn list(out_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = dir(out_dir);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path()
                .join("state.json")
                .exists()
                .then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

pub fn save(
    out_dir: &Path,
    lm: &mut CausalLm,
    cfg: &AdapterConfig,
    opt: &AdamW,
    stream: &BatchStream,
    state: &TrainState,
    keep: usize,
) -> Result<()> {
    let root = dir(out_dir);
    let final_dir = root.join(format!("step-{}", state.step));
    let tmp = root.join(format!(".step-{}.tmp", state.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;

    adapter::save(lm, cfg, &tmp.join("adapter"))?;
    // The raw trainable tensors, not the adapter/ above: a PiSSA adapter is saved converted
    // to plain LoRA there, while a resume continues on PiSSA's residual base.
    let params = crate::train::trainable_params(lm);
    let cpu = |t: &Tensor| t.detach().to_device(tch::Device::Cpu).contiguous();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let (exp_avg, exp_avg_sq) = (
        split_like(&opt.exp_avg, &params),
        split_like(&opt.exp_avg_sq, &params),
    );
    for (i, ((p, m), v)) in params.iter().zip(&exp_avg).zip(&exp_avg_sq).enumerate() {
        tensors.push((format!("param.{i}"), cpu(p)));
        tensors.push((format!("exp_avg.{i}"), cpu(m)));
        tensors.push((format!("exp_avg_sq.{i}"), cpu(v)));
    }
    Tensor::write_safetensors(&tensors, tmp.join("optimizer.safetensors"))
        .map_err(|e| anyhow::anyhow!("cannot write optimizer state in {}: {e}", tmp.display()))?;
    let file = StateFile {
        state: state.clone(),
        optimizer_step: opt.step,
        cursor: stream.cursor(),
    };
    std::fs::write(tmp.join("state.json"), serde_json::to_vec(&file)?)?;
    crate::fsutil::replace_dir(&tmp, &final_dir)?;

    let all = list(out_dir)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

/// Loads the checkpoint into the model's adapters (freshly attached by the same recipe),
/// the optimizer and the data stream.
pub fn restore(
    ckpt: &Path,
    lm: &mut CausalLm,
    opt: &mut AdamW,
    stream: &mut BatchStream,
) -> Result<TrainState> {
    let state_path = ckpt.join("state.json");
    let file: StateFile = serde_json::from_slice(
        &std::fs::read(&state_path)
            .with_context(|| format!("cannot read {}", state_path.display()))?,
    )
    .with_context(|| {
        format!(
            "{} is damaged; delete {} to resume from the one before",
            state_path.display(),
            ckpt.display()
        )
    })?;
    let path = ckpt.join("optimizer.safetensors");
    let tensors: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .into_iter()
        .collect();
    let params = crate::train::trainable_params(lm);
    let changed = || {
        format!(
            "{}: the checkpoint does not fit the adapter this recipe makes (the recipe's [lora] changed since it was written?)",
            path.display()
        )
    };
    if tensors.len() != 3 * params.len() {
        bail!("{}", changed());
    }
    let device = lm.device;
    let get = |name: &str, like: &Tensor| -> Result<Tensor> {
        let t = tensors
            .get(name)
            .with_context(|| format!("{}: `{name}` missing", changed()))?;
        if t.size() != like.size() {
            bail!(
                "{}: `{name}` is {:?}, expected {:?}",
                changed(),
                t.size(),
                like.size()
            );
        }
        Ok(t.to_device(device))
    };
    let _guard = tch::no_grad_guard();
    for (i, p) in params.iter().enumerate() {
        p.shallow_clone().copy_(&get(&format!("param.{i}"), p)?);
    }
    let moments = [("exp_avg", &opt.exp_avg), ("exp_avg_sq", &opt.exp_avg_sq)];
    for (name, packed) in moments {
        for (i, mut view) in split_like(packed, &params).into_iter().enumerate() {
            view.copy_(&get(&format!("{name}.{i}"), &params[i])?);
        }
    }
    opt.step = file.optimizer_step;
    stream.restore(file.cursor)?;
    Ok(file.state)
}

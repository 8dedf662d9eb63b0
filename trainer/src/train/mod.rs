//! `loam train`: the LoRA training recipe, top to bottom.
//!
//! setup → model + adapter → data → optimizer → (resume) → loop { accumulate micro-batches,
//! clip, AdamW, log, eval, checkpoint } → adapter/ + summary.
//!
//! Beside it: `optim` (AdamW, schedules, clipping), `loss` (chunked next-token
//! cross-entropy), `checkpoint` (save / resume), `held_out` (the evals), `plot` (the
//! training plot). Under torchrun or Slurm the same recipe runs on every rank: `crate::dist`
//! hands each rank its micro-batches and sums the gradients; only rank 0
//! (`replicas.is_writer()`) writes files.

pub mod checkpoint;
pub mod held_out;
pub mod loss;
pub mod objective;
pub mod optim;
pub mod plot;
pub mod preference;

use self::checkpoint::TrainState;
use self::held_out::{HeldOut, HeldOutScores};
use self::loss::{next_token_nll_sum, DEFAULT_CHUNK};
use self::objective::Objective;
use self::optim::{AdamW, TrainableParams};
use self::preference::Metrics;
use crate::adapter::{self, AdapterConfig};
use crate::dist::{self, Replicas};
use crate::export::card::identity::Identity;
use crate::export::card::model as card;
use crate::model::{self, CausalLm, Positions};
use crate::recipe::Recipe;
use crate::{hub, runtime};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use loam_data::encode::Encoder;
use loam_data::provenance::Provenance;
use loam_data::stream::{BatchStream, EncodeOptions, Split};
use loam_data::{Batch, Example, Sample, Tokenizer, IGNORE_INDEX};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Kind, Tensor};

/// One line of `metrics.jsonl` (DESIGN's contract; more keys may be added).
#[derive(Debug, Serialize)]
struct StepMetrics {
    step: u64,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    /// Trained tokens in this step.
    tokens: i64,
    tokens_per_s: f64,
    elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_loss: Option<f64>,
    /// The objective's own metrics (DPO / ORPO: TRL's `rewards/…`, `logps/…`; `eval_…`).
    #[serde(flatten)]
    objective: Metrics,
    /// Data parallel: seconds of this step in the gradient all-reduce (rank 0's view).
    #[serde(skip_serializing_if = "Option::is_none")]
    allreduce_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_bits_per_byte: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_chrf: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_bleu: Option<f64>,
}

#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub out_dir: PathBuf,
    pub steps: u64,
    pub tokens: i64,
    pub wall_s: f64,
    /// Held-out loss before the first step and after the last (when there is an eval split).
    pub eval_loss_before: Option<f64>,
    pub eval_loss_after: Option<f64>,
    /// Everything the held-out evals before and after measured (bits per byte; chrF++ and
    /// BLEU with `train.eval_generate`).
    pub eval_before: Option<HeldOutScores>,
    pub eval_after: Option<HeldOutScores>,
    /// False when the run stopped early (`--stop-after`) and waits for `--resume`.
    pub finished: bool,
    /// This process writes the run's files (rank 0, or the only process).
    #[serde(skip)]
    pub writer: bool,
}

/// How one invocation of `loam train` runs.
pub struct RunControl {
    /// Continue from the latest checkpoint.
    pub resume: bool,
    /// Set by Ctrl-C: checkpoint after the current step and stop.
    pub stop: Arc<AtomicBool>,
    /// Checkpoint and stop after this many steps of this invocation (the schedule still
    /// spans all `train.steps`); `--resume` continues.
    pub stop_after: Option<u64>,
}

/// Trains on this process, and on its peers when a launcher started several (see `dist`).
pub fn run(recipe: Recipe, control: RunControl) -> Result<Summary> {
    let world = dist::World::from_env()?;
    let device = dist::rank_device(&recipe.model.device, &world)?;
    let mut replicas = Replicas::join(world, device)?;
    let result = run_replica(recipe, control, &mut replicas, device);
    replicas.finish(result)
}

fn run_replica(
    recipe: Recipe,
    control: RunControl,
    replicas: &mut Replicas,
    device: tch::Device,
) -> Result<Summary> {
    let RunControl {
        resume,
        stop,
        stop_after,
    } = control;
    // A job torchrun restarted (--max-restarts) continues from the last checkpoint.
    let resume = resume || replicas.world.restart > 0;
    let writer = replicas.is_writer();
    // ── setup ──────────────────────────────────────────────────────────────────────────
    let out_dir = PathBuf::from(&recipe.output.dir);
    let mut latest = None;
    if writer {
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create output dir {}", out_dir.display()))?;
        latest = checkpoint::latest(&out_dir)?;
        if !resume && latest.is_some() {
            bail!(
                "{} already holds checkpoints of a run; add --resume to continue it, or choose another output.dir",
                out_dir.display()
            );
        }
        std::fs::write(
            out_dir.join("recipe.toml"),
            toml::to_string_pretty(&recipe)?,
        )?;
    }
    let kind = runtime::parse_dtype(&recipe.model.dtype)?;
    let t = &recipe.train;
    tch::manual_seed(t.seed as i64);

    let model_dir = hub::resolve_model(&recipe.model.path)?;
    let hub_id = recipe.model.hub_id.as_deref();
    let base = if writer {
        Identity::of_base(&model_dir, &recipe.model.path, hub_id, "model.hub_id")?
    } else {
        Identity::of(&model_dir, &recipe.model.path, hub_id)
    };

    // ── data (opened first: bad data fails before the model loads) ─────────────────────
    let tokenizer = Tokenizer::from_model_dir(&model_dir)?;
    let encoder = Arc::new(Encoder::for_data_config(tokenizer, &recipe.data)?);
    let mut stream = BatchStream::new(&recipe.data, Split::Train, t.seed, 0, 1, shared(&encoder))?;
    if writer {
        write_data_provenance(&recipe, &out_dir)?;
    }
    if let Some(epochs) = t.epochs {
        stream = stream.with_epochs(epochs.ceil() as u32);
    }
    // One step takes `world × grad_accum` micro-batches of the one stream (see dist::feed).
    let step_micro_batches = replicas.world.size * t.grad_accum;
    let total_steps = match t.steps {
        Some(steps) => steps,
        // Counting reads all the data: rank 0 does, and tells the others below.
        None if !writer => 0,
        None => {
            let per_epoch = BatchStream::count_batches(
                &recipe.data,
                t.seed,
                0,
                1,
                t.micro_batch,
                shared(&encoder),
            )?;
            let micro = (per_epoch as f64 * t.epochs.unwrap_or(1.0)).ceil() as u64;
            micro.div_ceil(step_micro_batches as u64).max(1)
        }
    };

    // ── model + adapter ────────────────────────────────────────────────────────────────
    let m = &recipe.model;
    let mut lm = model::load_with(&model_dir, kind, device, m.quantize, &m.quantize_skip)?;
    let adapter_cfg = attach_adapter(&mut lm, &recipe, &model_dir, &base)?;
    let objective = Objective::new(&recipe, &mut lm, &encoder, replicas)?;
    let adapted = lm
        .linears_mut()
        .iter()
        .filter(|(_, l)| l.lora.is_some())
        .count();
    let mut params = TrainableParams::new(trainable_params(&mut lm));
    tracing::info!(
        "{} trainable adapter parameters on {adapted} linears",
        params.numel()
    );
    // Said once everything is checked, so that a refused run still gets one error alone.
    if let Some(warning) = runtime::slow_dtype_warning(kind, device).filter(|_| writer) {
        tracing::warn!("{warning}");
    }

    // ── optimizer, and the state a resume restores ─────────────────────────────────────
    let mut opt = AdamW::new(&params, t.weight_decay);
    let mut state = TrainState::default();
    if let Some(ckpt) = &latest {
        state = checkpoint::restore(ckpt, &mut lm, &mut opt, &mut stream)?;
        dist::check_resume_world(
            (state.world, state.grad_accum),
            (replicas.world.size, t.grad_accum),
        )?;
        tracing::info!("resumed from {} (step {})", ckpt.display(), state.step);
    }
    (state.world, state.grad_accum) = (replicas.world.size, t.grad_accum);
    let mut metrics: Box<dyn Write> = if writer {
        Box::new(metrics_file(&out_dir, state.step)?)
    } else {
        Box::new(std::io::sink())
    };
    // Every rank is set up: the first collective. Rank 0's adapter, optimizer state and
    // counters (fresh or resumed) become every rank's.
    replicas.ready()?;
    let mut counters = [state.step as i64, opt.step as i64, total_steps as i64];
    replicas.broadcast_i64(&mut counters, "the run's counters")?;
    (state.step, opt.step) = (counters[0] as u64, counters[1] as u64);
    let total_steps = counters[2] as u64;
    replicas.broadcast_all(
        &[params.values(), &opt.exp_avg, &opt.exp_avg_sq],
        "the adapter and optimizer state",
    )?;
    let warmup = optim::warmup_steps(t.warmup, total_steps);

    let held_out = HeldOut::new(&recipe, encoder.clone());
    let has_eval = BatchStream::has_eval(&recipe.data);
    if state.step == 0 && has_eval {
        let scores = objective
            .evaluate(&mut lm, &held_out, replicas, &recipe, &encoder)?
            .scores;
        state.eval_before = Some(scores.loss);
        state.held_out_before = Some(scores);
    }

    // ── the loop ───────────────────────────────────────────────────────────────────────
    let stop_at = stop_after.map(|n| state.step + n);
    let bar = progress_bar(total_steps, state.step, writer);
    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut last_eval = None;
    while state.step < total_steps {
        let step_start = Instant::now();
        replicas.at_step(state.step);
        let feed = dist::feed::next_step(
            replicas,
            &mut stream,
            t.micro_batch,
            t.grad_accum,
            trained_targets,
        )?;
        let Some(share) = feed else {
            tracing::info!("the data is exhausted after {} steps", state.step);
            break;
        };
        let (outcome, sums) = objective.step(
            &mut lm,
            replicas,
            &share,
            params.grads(),
            stop.load(Ordering::SeqCst),
            t.seed,
            state.step,
            t.activation_checkpointing,
        )?;
        let interrupted = sums.stop;
        let (loss, step_tokens) = (outcome.loss, outcome.tokens);
        let mut objective_metrics = outcome.metrics;
        let grad_norm = optim::clip_grad_norm(&mut params, t.max_grad_norm);
        if !loss.is_finite() || !grad_norm.is_finite() {
            bail!(
                "the loss became {loss} (gradient norm {grad_norm}) at step {}; the last good checkpoint is kept in {}. \
                 Try a lower train.lr, a higher train.warmup, or dtype = \"f32\"",
                state.step + 1,
                checkpoint::dir(&out_dir).display()
            );
        }
        let lr = optim::learning_rate(t.schedule, t.lr, state.step, total_steps, warmup);
        opt.update(&mut params, lr);
        params.zero_grads();
        if writer && state.losses.len() >= 20 {
            let recent = state.losses[state.losses.len() - 20..].iter().sum::<f64>() / 20.0;
            if loss > 2.0 * recent {
                tracing::warn!(
                    "loss spike at step {}: {loss:.4} against a recent mean of {recent:.4}",
                    state.step + 1
                );
            }
        }
        state.step += 1;
        state.tokens += step_tokens;
        state.losses.push(loss);
        state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();

        let mut eval = None;
        if has_eval
            && t.eval_every > 0
            && (state.step % t.eval_every == 0 || state.step == total_steps)
        {
            let evaluation = objective.evaluate(&mut lm, &held_out, replicas, &recipe, &encoder)?;
            let scores = evaluation.scores;
            objective_metrics.extend(evaluation.metrics);
            bar.suspend(|| tracing::info!("step {}: held-out {scores}", state.step));
            state.evals.push((state.step, scores.loss));
            last_eval = Some((state.step, scores));
            eval = Some(scores);
        }
        let line = StepMetrics {
            step: state.step,
            loss,
            lr,
            grad_norm,
            tokens: step_tokens,
            tokens_per_s: step_tokens as f64 / step_start.elapsed().as_secs_f64(),
            elapsed_s: state.elapsed_s,
            eval_loss: eval.map(|e| e.loss),
            eval_bits_per_byte: eval.map(|e| e.bits_per_byte).filter(|b| b.is_finite()),
            eval_chrf: eval.and_then(|e| e.chrf),
            eval_bleu: eval.and_then(|e| e.bleu),
            allreduce_s: sums.allreduce_s,
            objective: objective_metrics,
        };
        writeln!(metrics, "{}", serde_json::to_string(&line)?)?;
        bar.set_position(state.step);
        bar.set_message(format!(
            "loss {loss:.4}{}  lr {lr:.2e}  {:.0} tok/s",
            objective.progress(&line.objective),
            line.tokens_per_s
        ));

        let pause = stop_at == Some(state.step) && state.step < total_steps;
        let checkpoint_due = (t.checkpoint_every > 0 && state.step % t.checkpoint_every == 0)
            || interrupted
            || pause;
        if writer && checkpoint_due {
            checkpoint::save(
                &out_dir,
                &mut lm,
                &adapter_cfg,
                &opt,
                &stream,
                &state,
                t.keep_checkpoints,
            )?;
        }
        if interrupted {
            bar.abandon();
            bail!("interrupted at step {}; checkpoint saved. Continue with `loam train RECIPE --resume`", state.step);
        }
        if pause {
            bar.abandon();
            eprintln!("stopped after step {} as asked (--stop-after); continue with `loam train RECIPE --resume`", state.step);
            return Ok(Summary {
                out_dir,
                steps: state.step,
                tokens: state.tokens,
                wall_s: state.elapsed_s,
                eval_loss_before: None,
                eval_loss_after: None,
                eval_before: None,
                eval_after: None,
                finished: false,
                writer,
            });
        }
    }
    bar.finish_and_clear();

    // ── save ───────────────────────────────────────────────────────────────────────────
    // The last step's eval, when it had one, is the eval after training.
    let eval_after = match last_eval {
        Some((step, scores)) if step == state.step => Some(scores),
        _ if has_eval => Some(
            objective
                .evaluate(&mut lm, &held_out, replicas, &recipe, &encoder)?
                .scores,
        ),
        _ => None,
    };
    let eval_loss_after = eval_after.map(|e| e.loss);
    if writer {
        checkpoint::save(
            &out_dir,
            &mut lm,
            &adapter_cfg,
            &opt,
            &stream,
            &state,
            t.keep_checkpoints,
        )?;
        let adapter_dir = out_dir.join("adapter");
        adapter::save(&mut lm, &adapter_cfg, &adapter_dir)?;
        if let Some(setting) = &recipe.data.chat_template {
            // The template the adapter learned goes with it: `loam eval` / `generate
            // --adapter` use it, and `loam merge` installs it in the merged model.
            let source = loam_data::template::setting_source("data.chat_template", setting)?;
            loam_data::template::install::save_beside_adapter(&adapter_dir, &source)?;
        }
        let curves = plot::Curves::of_run(&out_dir, state.held_out_before.as_ref())?;
        plot::write_training_plot(&out_dir, &curves)?;
        card::write(&card::CardInput {
            out: &adapter_dir,
            base: &base,
            adapter_dir: &adapter_dir,
            adapter: &adapter_cfg,
            card: card::Card::Adapter,
            eval_results: None,
        })?;
        base.warn_if_unlinked("model.hub_id");
    }
    Ok(Summary {
        out_dir,
        steps: state.step,
        tokens: state.tokens,
        wall_s: state.elapsed_s,
        eval_loss_before: state.eval_before,
        eval_loss_after,
        eval_before: state.held_out_before,
        eval_after,
        finished: true,
        writer,
    })
}

/// The one encoder, shared by the train stream and every eval pass.
fn shared(
    encoder: &Arc<Encoder>,
) -> impl Fn(&Sample, &EncodeOptions) -> Result<Example> + Send + Sync + 'static {
    let encoder = encoder.clone();
    move |sample, opts| encoder.encode_with(sample, opts)
}

/// Where the training data came from, as its Parquet files record it (`loam data gettext`
/// writes that), into the run directory for the cards: nothing when no file says.
fn write_data_provenance(recipe: &Recipe, out_dir: &Path) -> Result<()> {
    let mut all = Vec::new();
    for source in &recipe.data.train {
        let path = Path::new(&source.path);
        if path.is_file() {
            all.extend(Provenance::read(path)?);
        }
    }
    if let Some(provenance) = Provenance::union(&all) {
        let path = out_dir.join(card::PROVENANCE_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&provenance)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A fresh adapter from `[lora]`, or the PEFT adapter `lora.from` names (its own r/alpha/targets).
fn attach_adapter(
    lm: &mut CausalLm,
    recipe: &Recipe,
    model_dir: &Path,
    base: &Identity,
) -> Result<AdapterConfig> {
    let l = &recipe.lora;
    if !l.from.is_empty() {
        if l.trainable_tokens != Default::default() {
            bail!("set lora.trainable_tokens or lora.from, not both: the adapter in lora.from brings its own");
        }
        let cfg = adapter::load(lm, Path::new(&l.from))
            .with_context(|| format!("loading lora.from = {}", l.from))?;
        return Ok(AdapterConfig {
            inference_mode: false,
            ..cfg
        });
    }
    let cfg = AdapterConfig {
        peft_type: "LORA".into(),
        task_type: Some("CAUSAL_LM".into()),
        r: l.r,
        lora_alpha: l.alpha,
        target_modules: l.targets.clone(),
        use_rslora: l.rslora,
        use_dora: l.dora,
        lora_dropout: l.dropout,
        bias: "none".into(),
        // The base's Hub id where known (what PEFT loads it by once published), else the
        // model as the user named it, as PEFT records it.
        base_model_name_or_path: Some(
            base.hub_id
                .clone()
                .unwrap_or_else(|| recipe.model.path.clone()),
        ),
        inference_mode: false,
        fan_in_fan_out: false,
        rank_pattern: Default::default(),
        alpha_pattern: Default::default(),
        init_lora_weights: None,
        trainable_token_indices: None,
    };
    adapter::attach_new(lm, &cfg, l.init)?;
    crate::vocab::trainable_tokens::attach(lm, &l.trainable_tokens, model_dir)?;
    Ok(cfg)
}

/// Every adapter tensor in a fixed order (the optimizer's state follows it).
pub fn trainable_params(lm: &mut CausalLm) -> Vec<Tensor> {
    let mut params = Vec::new();
    for (_, linear) in lm.linears_mut() {
        if let Some(lora) = &linear.lora {
            params.push(lora.a.shallow_clone());
            params.push(lora.b.shallow_clone());
            if let Some(m) = &lora.magnitude {
                params.push(m.shallow_clone());
            }
        }
    }
    if let Some(tokens) = &lm.trainable_tokens {
        params.extend(tokens.params());
    }
    params
}

/// Forward and backward over the micro-batches of one optimizer step, the loss normalized
/// by every trained token of the whole step (not a mean of per-batch means). Gradients
/// accumulate on the adapter tensors. Returns (loss, trained tokens).
pub fn accumulate_gradients(
    lm: &CausalLm,
    micro_batches: &[Batch],
    seed: u64,
    step: u64,
    checkpointing: bool,
) -> Result<(f64, i64)> {
    let step_tokens: i64 = micro_batches.iter().map(trained_targets).sum();
    let nll = accumulate_share(lm, micro_batches, 0, step_tokens, seed, step, checkpointing)?;
    Ok((nll / step_tokens.max(1) as f64, step_tokens))
}

/// This rank's part of [`accumulate_gradients`]: its micro-batches, the first being number
/// `first_micro` of the step (dropout seeds follow the step's numbering, whatever the world
/// size), each loss scaled by the whole step's `step_tokens`. Returns the summed NLL.
pub fn accumulate_share(
    lm: &CausalLm,
    micro_batches: &[Batch],
    first_micro: u64,
    step_tokens: i64,
    seed: u64,
    step: u64,
    checkpointing: bool,
) -> Result<f64> {
    let mut nll = 0.0;
    for (micro, batch) in micro_batches.iter().enumerate() {
        nll += forward_backward(
            lm,
            batch,
            step_tokens,
            dropout_seed(seed, step, first_micro + micro as u64),
            checkpointing,
        )?;
    }
    Ok(nll)
}

/// Targets that carry loss: label t+1 of each row, excluding each document's first token
/// (a packed row's previous document must not be trained to predict the next one's start).
fn trained_targets(batch: &Batch) -> i64 {
    let mut n = 0;
    for row in 0..batch.rows {
        for t in 1..batch.seq_len {
            let i = row * batch.seq_len + t;
            n += i64::from(batch.labels[i] != IGNORE_INDEX && batch.position_ids[i] != 0);
        }
    }
    n
}

/// A seed for adapter dropout in one micro-batch, so a resumed or recomputed forward pass
/// draws the same masks as the first one did.
fn dropout_seed(seed: u64, step: u64, micro: u64) -> i64 {
    let mut x =
        seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ micro.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    (x & 0x7FFF_FFFF_FFFF) as i64
}

/// Forward and backward of one micro-batch, loss scaled by `1 / step_tokens`. Returns the
/// summed NLL of the micro-batch.
fn forward_backward(
    lm: &CausalLm,
    batch: &Batch,
    step_tokens: i64,
    seed: i64,
    checkpointing: bool,
) -> Result<f64> {
    let BatchTensors {
        input_ids,
        positions,
        labels,
    } = batch_tensors(lm, batch);
    let scale = 1.0 / step_tokens.max(1) as f64;
    let nll = forward_backward_with(lm, &input_ids, &positions, seed, checkpointing, |hidden| {
        let (nll, _) = next_token_nll_sum(hidden, &lm.head(), &labels, DEFAULT_CHUNK);
        (&nll * scale).backward();
        nll.detach()
    });
    Ok(nll.double_value(&[]))
}

/// A micro-batch on the model's device.
pub(crate) struct BatchTensors {
    pub input_ids: Tensor,
    pub positions: Positions,
    /// Unshifted; a document's first token is never a target (see `trained_targets`).
    pub labels: Tensor,
}

pub(crate) fn batch_tensors(lm: &CausalLm, batch: &Batch) -> BatchTensors {
    let shape = [batch.rows as i64, batch.seq_len as i64];
    let tensor = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(lm.device);
    let input_ids = tensor(&batch.input_ids);
    let position_ids = tensor(&batch.position_ids);
    let labels = tensor(&batch.labels).masked_fill(&position_ids.eq(0), IGNORE_INDEX);
    let packed = batch.doc_ids.iter().any(|&d| d > 0);
    let positions = Positions {
        position_ids,
        doc_ids: packed.then(|| tensor(&batch.doc_ids)),
    };
    BatchTensors {
        input_ids,
        positions,
        labels,
    }
}

/// Forward through the decoder, then `head` turns the final hidden states (after the last
/// norm) into a loss and runs its `backward`. With activation checkpointing the forward pass
/// keeps only each block's input; backward then recomputes one block at a time (same dropout
/// seeds) and pushes the gradient through it.
pub(crate) fn forward_backward_with<R>(
    lm: &CausalLm,
    input_ids: &Tensor,
    positions: &Positions,
    seed: i64,
    checkpointing: bool,
    head: impl FnOnce(&Tensor) -> R,
) -> R {
    if !checkpointing {
        return head(&lm.forward_hidden_seeded(input_ids, positions, Some(seed)));
    }
    let ctx = lm.attention_inputs(positions, input_ids.size()[1]);
    let mut block_inputs = Vec::with_capacity(lm.model.layers.len());
    let mut h = {
        let _guard = tch::no_grad_guard();
        let mut h = lm.embed(input_ids);
        for (i, layer) in lm.model.layers.iter().enumerate() {
            block_inputs.push(h.shallow_clone());
            tch::manual_seed(model::decoder::layer_seed(seed, i));
            h = layer.forward(&h, &ctx, true, None);
        }
        h
    };
    h = h.detach().set_requires_grad(true);
    let result = head(&lm.model.norm.forward(&h));
    let mut grad = h.grad();
    for (i, layer) in lm.model.layers.iter().enumerate().rev() {
        let x = block_inputs[i].detach().set_requires_grad(true);
        tch::manual_seed(model::decoder::layer_seed(seed, i));
        let out = layer.forward(&x, &ctx, true, None);
        (out * &grad).sum(Kind::Float).backward();
        grad = x.grad();
    }
    // trained token rows sit before the first block: carry the gradient into them
    if lm.trainable_tokens.is_some() {
        (lm.embed(input_ids) * &grad).sum(Kind::Float).backward();
    }
    result
}

/// `metrics.jsonl`, cut back to `step` lines when resuming (later lines came from steps the
/// resumed run will redo).
fn metrics_file(out_dir: &Path, step: u64) -> Result<std::fs::File> {
    let path = out_dir.join("metrics.jsonl");
    let kept: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(str::to_string)
        .collect();
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    for line in kept {
        writeln!(file, "{line}")?;
    }
    Ok(file)
}

fn progress_bar(total: u64, at: u64, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("train {bar:30} step {pos}/{len}  {msg}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(at);
    bar
}

#[cfg(test)]
mod peft_parity_tests;

//! The training step against PEFT + torch (scripts/oracle/fixtures_train.py): the same base,
//! the same PEFT adapter (non-zero B), the same batches (one of them packed with two
//! documents). Loss, every adapter gradient, and the adapter after 3 AdamW steps with
//! warmup, weight decay and clipping must equal PEFT's within 1e-5 relative (also on a
//! bitsandbytes 4-bit base, against PEFT + bitsandbytes). PiSSA starts
//! from loam's own SVD init instead (compared to PEFT's), and its saved adapter must equal
//! PEFT's conversion to a plain rank-2r LoRA.

use super::{accumulate_gradients, trainable_params};
use crate::adapter;
use crate::model;
use crate::recipe::Schedule;
use crate::testing::{family_fixtures, fixtures};
use crate::train::optim::{self, AdamW};
use loam_data::Batch;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub(crate) fn read(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn batch(tensors: &HashMap<String, Tensor>, step: usize, micro: usize) -> Batch {
    let get = |k: &str| -> Vec<i64> {
        Vec::try_from(tensors[&format!("s{step}.m{micro}.{k}")].flatten(0, -1)).unwrap()
    };
    let ids = &tensors[&format!("s{step}.m{micro}.input_ids")];
    let (rows, seq_len) = ids.size2().unwrap();
    Batch {
        rows: rows as usize,
        seq_len: seq_len as usize,
        input_ids: get("input_ids"),
        labels: get("labels"),
        position_ids: get("position_ids"),
        doc_ids: get("doc_ids"),
    }
}

/// max |a − b| ≤ 1e-5 · max |b| (+ a tiny absolute floor for all-zero tensors).
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_close_within(what, got, want, 1e-5);
}

/// max |a − b| ≤ `tolerance` · max |b| (+ a tiny absolute floor for all-zero tensors);
/// returns max |a − b| / max |b|.
pub(crate) fn assert_close_within(what: &str, got: &Tensor, want: &Tensor, tolerance: f64) -> f64 {
    let diff = (got.to_kind(Kind::Double) - want.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[]);
    let scale = want.abs().max().to_kind(Kind::Double).double_value(&[]);
    assert!(
        diff <= tolerance * scale + 1e-9,
        "{what}: max diff {diff:e} vs scale {scale:e}"
    );
    diff / scale.max(1e-30)
}

/// One case of the fixture root `root` (its `train/<case>` directory is `case_dir`).
fn run_case(root: &Path, case_dir: &Path, checkpointing: bool) {
    let name = case_dir.file_name().unwrap().to_string_lossy().to_string();
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case_dir.join("case.json")).unwrap())
            .unwrap();
    let base = root.join(case["base"].as_str().unwrap());
    let mut lm = model::load(&base, Kind::Float, Device::Cpu).unwrap();
    let batches = read(&case_dir.join("batches.safetensors"));
    let expected = read(&case_dir.join("expected.safetensors"));
    let pissa = case["init"] == "pissa";
    if pissa {
        // PEFT's unconverted PiSSA adapter needs PEFT's modified base: refused, clearly
        let err = adapter::load(&mut lm, &case_dir.join("adapter_init")).unwrap_err();
        assert!(format!("{err:#}").contains("path_initial_model_for_weight_conversion"));
        let cfg = adapter::read_config(&case_dir.join("adapter_init"));
        assert!(cfg.is_err());
        let targets = case["targets"].as_array().unwrap().iter();
        let cfg = adapter::AdapterConfig {
            peft_type: "LORA".into(),
            task_type: None,
            r: case["r"].as_i64().unwrap(),
            lora_alpha: case["alpha"].as_f64().unwrap(),
            target_modules: adapter::Targets::List(
                targets.map(|t| t.as_str().unwrap().into()).collect(),
            ),
            use_rslora: false,
            use_dora: false,
            lora_dropout: 0.0,
            bias: "none".into(),
            base_model_name_or_path: None,
            inference_mode: false,
            fan_in_fan_out: false,
            rank_pattern: Default::default(),
            alpha_pattern: Default::default(),
            init_lora_weights: None,
            trainable_token_indices: None,
        };
        // PiSSA's SVD on one intra-op thread, as the reference computed it: LAPACK's
        // threaded SVD of a tall matrix (Phi-3's gate_up_proj) differs by ~3e-5 relative.
        let threads = tch::get_num_threads();
        tch::set_num_threads(1);
        adapter::attach_new(&mut lm, &cfg, crate::lora::LoraInit::Pissa).unwrap();
        tch::set_num_threads(threads);
        for (key, tensor) in adapter::state_dict(&mut lm) {
            assert_close(
                &format!("{name} init {key}"),
                &tensor,
                &expected[&format!("init.{key}")],
            );
        }
    } else {
        adapter::load(&mut lm, &case_dir.join("adapter_init")).unwrap();
    }
    let losses: Vec<f64> = Vec::try_from(&expected["losses"]).unwrap();
    let norms: Vec<f64> = Vec::try_from(&expected["grad_norms"]).unwrap();
    let total = case["total_steps"].as_u64().unwrap();
    let warmup = case["warmup_steps"].as_u64().unwrap();
    let (lr, max_norm) = (
        case["lr"].as_f64().unwrap(),
        case["max_grad_norm"].as_f64().unwrap(),
    );

    let mut params = optim::TrainableParams::new(trainable_params(&mut lm));
    let mut opt = AdamW::new(&params, case["weight_decay"].as_f64().unwrap());
    for step in 0..total as usize {
        let micro: Vec<Batch> = (0..case["grad_accum"].as_u64().unwrap() as usize)
            .map(|m| batch(&batches, step, m))
            .collect();
        let (loss, _) = accumulate_gradients(&lm, &micro, 0, step as u64, checkpointing).unwrap();
        assert!(
            ((loss - losses[step]) / losses[step]).abs() <= 1e-5,
            "{name} step {step}: loss {loss} vs PEFT {}",
            losses[step]
        );
        if step == 0 {
            for (key, grad) in named_grads(&mut lm) {
                let want = expected
                    .get(&format!("step0.grad.{key}"))
                    .unwrap_or_else(|| panic!("{name}: PEFT has no gradient for {key}"));
                assert_close(&format!("{name} grad {key}"), &grad, want);
            }
        }
        let norm = optim::clip_grad_norm(&mut params, max_norm);
        assert!(
            ((norm - norms[step]) / norms[step]).abs() <= 1e-5,
            "{name} step {step}: grad norm {norm} vs {}",
            norms[step]
        );
        let lr_now = optim::learning_rate(Schedule::Cosine, lr, step as u64, total, warmup);
        opt.update(&mut params, lr_now);
        params.zero_grads();
    }
    for (key, tensor) in adapter::state_dict(&mut lm) {
        let want = expected
            .get(&format!("final.{key}"))
            .unwrap_or_else(|| panic!("{name}: PEFT has no final {key}"));
        // After three AdamW steps: each element's update is m / (√v + ε), which amplifies
        // the f32 rounding of a gradient whose steps nearly cancel (the kernels and thread
        // counts libtorch picks change that rounding): measured up to 1.14e-5 of the
        // tensor's largest weight on AVX2, so 1e-4 — still a thousandth of one step's update
        // (lr 1e-2). The losses, gradient norms and gradients above stay at 1e-5.
        assert_close_within(&format!("{name} final {key}"), &tensor, want, 1e-4);
    }
    drop(params);
    if pissa {
        check_pissa_conversion(&mut lm, &case, case_dir);
    }
    println!("{name}: loss, gradients and the adapter after {total} steps equal PEFT's");
}

/// loam's saved PiSSA adapter equals PEFT's conversion of the same trained adapter.
fn check_pissa_conversion(lm: &mut model::CausalLm, case: &serde_json::Value, case_dir: &Path) {
    let name = case_dir.file_name().unwrap();
    let peft_dir = case_dir.parent().unwrap().join("peft-trained").join(name);
    let dir = std::env::temp_dir().join(format!("loam-pissa-{}", std::process::id()));
    let mut cfg = adapter::read_config(&peft_dir).unwrap();
    (cfg.r, cfg.lora_alpha) = (case["r"].as_i64().unwrap(), case["alpha"].as_f64().unwrap());
    adapter::save(lm, &cfg, &dir).unwrap();
    let ours = adapter::read_config(&dir).unwrap();
    let theirs = adapter::read_config(&peft_dir).unwrap();
    assert_eq!((ours.r, ours.lora_alpha), (theirs.r, theirs.lora_alpha));
    let want = read(&peft_dir.join("adapter_model.safetensors"));
    let got = read(&dir.join("adapter_model.safetensors"));
    assert_eq!(got.len(), want.len());
    for (key, tensor) in &got {
        assert_close(&format!("converted {key}"), tensor, &want[key]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The gradient of every adapter tensor under its PEFT key.
pub(crate) fn named_grads(lm: &mut model::CausalLm) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (path, linear) in lm.linears_mut() {
        if let Some(lora) = &linear.lora {
            out.push((
                format!("base_model.model.{path}.lora_A.weight"),
                lora.a.grad(),
            ));
            out.push((
                format!("base_model.model.{path}.lora_B.weight"),
                lora.b.grad(),
            ));
            if let Some(m) = &lora.magnitude {
                out.push((
                    format!("base_model.model.{path}.lora_magnitude_vector"),
                    m.grad(),
                ));
            }
        }
    }
    if let Some(tokens) = &lm.trainable_tokens {
        let keys = tokens.state_dict().into_iter().map(|(k, _)| k);
        out.extend(keys.zip(tokens.params()).map(|(k, p)| (k, p.grad())));
    }
    out
}

fn cases_in(root: &Path) -> Vec<std::path::PathBuf> {
    let root = root.join("train");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|_| panic!("{} missing: run scripts/oracle/build.sh", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").exists())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn training_steps_match_peft_lora_rslora_dora_and_pissa() {
    let root = fixtures();
    for case in cases_in(&root) {
        run_case(&root, &case, false);
    }
}

/// LoRA beside trainable token rows (PEFT's `trainable_token_indices`), tied and untied
/// (scripts/oracle/fixtures_vocab.py): the rows' gradients and values after 3 steps too.
#[test]
fn trainable_tokens_match_peft_tied_and_untied() {
    use crate::vocab::trainable_tokens::{TrainableTokens, TrainableTokensSpec};
    let root = fixtures().join("vocab/train");
    for case in ["tokens-untied", "tokens-tied"] {
        let dir = root.join(case);
        assert!(
            dir.join("case.json").exists(),
            "{} missing: run scripts/oracle/build.sh",
            dir.display()
        );
        // `trainable_tokens = "new"` starts the same rows PEFT started (copies of the base's)
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        let base_dir = fixtures().join(spec["base"].as_str().unwrap());
        let mut lm = model::load(&base_dir, Kind::Float, Device::Cpu).unwrap();
        let ids = TrainableTokensSpec::Keyword("new".into())
            .ids(&base_dir)
            .unwrap()
            .unwrap();
        let fresh = TrainableTokens::new(&lm, &ids).unwrap();
        let cfg = adapter::load(&mut lm, &dir.join("adapter_init")).unwrap();
        let loaded = lm.trainable_tokens.as_ref().unwrap();
        assert_eq!(Some(fresh.indices()), cfg.trainable_token_indices, "{case}");
        let (ours, peft) = (fresh.state_dict(), loaded.state_dict());
        assert_eq!(
            ours.len(),
            if spec["tied"] == true { 1 } else { 2 },
            "{case}"
        );
        for ((k1, a), (k2, b)) in ours.iter().zip(&peft) {
            assert_eq!(k1, k2);
            assert!(a.equal(b), "{case}: {k1} starts other rows than PEFT's");
        }
        run_case(&fixtures(), &dir, false);
        run_case(&fixtures(), &dir, true);
    }
}

#[test]
fn activation_checkpointing_gives_the_same_gradients() {
    let root = fixtures();
    for case in cases_in(&root) {
        run_case(&root, &case, true);
    }
}

/// Gemma 3 (sliding windows in a packed batch, two rotary bases, q/k norms) and Phi-3
/// (fused projections, partial rotary, LongRoPE's long factors) with LoRA, rsLoRA, DoRA
/// and PiSSA; Gemma 2 (soft-caps), Gemma and SmolLM3 (NoPE, sliding NoPE layers) with LoRA.
#[test]
fn training_steps_match_peft_on_gemma_phi3_and_smollm3() {
    let root = family_fixtures();
    let cases = cases_in(&root);
    for family in ["gemma3-", "phi3-"] {
        let n = cases
            .iter()
            .filter(|c| c.file_name().unwrap().to_string_lossy().starts_with(family))
            .count();
        assert!(
            n >= 4,
            "{family}: lora, rslora, dora and pissa cases expected, got {n}"
        );
    }
    for case in &cases {
        run_case(&root, case, false);
    }
}

#[test]
fn activation_checkpointing_gives_the_same_gradients_on_the_new_families() {
    let root = family_fixtures();
    for case in cases_in(&root) {
        run_case(&root, &case, true);
    }
}

/// QLoRA: LoRA and DoRA on a bitsandbytes 4-bit base (scripts/oracle/fixtures_qlora.py),
/// against PEFT + bitsandbytes in f32 compute, with and without activation checkpointing.
#[test]
fn qlora_training_steps_match_peft_and_bitsandbytes() {
    let root = fixtures();
    let cases = cases_in(&root.join("qlora"));
    assert!(
        cases.len() >= 2,
        "expected the qlora-lora and qlora-dora cases"
    );
    for case in cases {
        run_case(&root, &case, false);
        run_case(&root, &case, true);
    }
}

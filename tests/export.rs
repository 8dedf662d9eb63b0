//! End-to-end tests of what loam exports, each checked by the tool that consumes it:
//! PEFT loads loam's adapters, loam reads PEFT's, transformers loads `loam merge` output.
//! The Python side is scripts/oracle/check_peft.py and check_merge.py (the oracle venv).

mod common;
use common::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

fn text_data() -> PathBuf {
    fixtures().join("data/text.parquet")
}

/// The run dir of `loam train` on `base` with `sets`, trained once per test binary.
fn trained(base: &str, sets: &[&str]) -> PathBuf {
    static RUNS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{base} {}", sets.join(" "));
    let mut runs = RUNS.get_or_init(Default::default).lock().unwrap();
    if let Some(run) = runs.get(&key) {
        return run.clone();
    }
    let dir = temp_dir(&format!("train-{}", runs.len()));
    let recipe = write_recipe(&dir, base);
    let run = dir.join("run");
    let mut args = vec!["train", s(&recipe), "--out", s(&run)];
    for set in sets {
        args.extend_from_slice(&["--set", set]);
    }
    assert_success(&loam(&args), &format!("loam train {key}"));
    runs.insert(key, run.clone());
    run
}

/// `loam eval --json` loss on data/text.parquet at seq_len 64 (f32, CPU, default --train-on).
fn loam_loss(model: &Path, adapter: Option<&Path>) -> f64 {
    loam_eval(model, adapter).0
}

/// `loam eval --json` (loss, predicted tokens), as [`loam_loss`].
fn loam_eval(model: &Path, adapter: Option<&Path>) -> (f64, u64) {
    text_eval(model, adapter, 64)
}

fn merge(base: &Path, adapter: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "merge",
        "--model",
        s(base),
        "--adapter",
        s(adapter),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    loam(&args)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn peft_loads_loams_adapter_with_the_same_loss() {
    let cases = [
        ("llama-gqa", vec![]),
        ("llama-gqa", vec!["lora.dora=true"]),
        ("qwen2", vec!["lora.rslora=true"]),
    ];
    for (base, sets) in &cases {
        let adapter = trained(base, sets).join("adapter");
        let cfg = read_json(&adapter.join("adapter_config.json"));
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["task_type"], "CAUSAL_LM");
        assert_eq!(cfg["use_dora"], sets.contains(&"lora.dora=true"));
        assert_eq!(cfg["use_rslora"], sets.contains(&"lora.rslora=true"));
        let peft = oracle(
            "check_peft.py",
            &[
                "--model",
                s(&model(base)),
                "--data",
                s(&text_data()),
                s(&adapter),
            ],
        );
        let p = &peft[0];
        for field in ["missing", "unexpected", "differ"] {
            assert_eq!(p[field], serde_json::json!([]), "{base} {sets:?}: {p}");
        }
        let want = p["loss"].as_f64().unwrap();
        let (got, tokens) = loam_eval(&model(base), Some(&adapter));
        assert_eq!(p["tokens"], tokens, "{base}: predicted-token counts differ");
        assert_close(&format!("{base} {sets:?} loam vs PEFT"), got, want, 1e-4);
        assert!(
            (got - loam_loss(&model(base), None)).abs() > 1e-3,
            "{base} {sets:?}: the trained adapter changes nothing"
        );
    }
}

#[test]
fn loam_reads_adapters_peft_trained() {
    let root = fixtures().join("train/peft-trained");
    let dir = temp_dir("peft-trained");
    for case in ["llama-lora", "qwen2-rslora", "llama-dora"] {
        let adapter = root.join(case);
        let base = fixtures().join(
            read_json(&fixtures().join("train").join(case).join("case.json"))["base"]
                .as_str()
                .unwrap(),
        );
        let want = read_json(&adapter.join("eval.json"))["loss"]
            .as_f64()
            .unwrap();
        assert_close(
            &format!("{case}: loam eval --adapter vs PEFT"),
            loam_loss(&base, Some(&adapter)),
            want,
            1e-4,
        );
        let merged = dir.join(case);
        assert_success(&merge(&base, &adapter, &merged, &[]), "loam merge");
        assert_close(
            &format!("{case}: loam eval of the merged model vs PEFT"),
            loam_loss(&merged, None),
            want,
            1e-4,
        );
    }
}

#[test]
fn merged_model_loads_in_transformers_with_the_adapters_loss() {
    let dir = temp_dir("merged");
    let base = model("llama-gqa");
    let lora = trained("llama-gqa", &[]).join("adapter");
    let dora = trained("llama-gqa", &["lora.dora=true"]).join("adapter");
    let jobs: [(&str, &Path, &[&str]); 4] = [
        ("lora-f32", &lora, &["--dtype", "f32"]),
        ("dora-f32", &dora, &["--dtype", "f32"]),
        ("lora-bf16", &lora, &["--dtype", "bf16"]),
        ("lora-sharded", &lora, &["--shard-size", "1MB"]),
    ];
    let mut dirs = Vec::new();
    for (name, adapter, extra) in jobs {
        let out = dir.join(name);
        assert_success(&merge(&base, adapter, &out, extra), "loam merge");
        dirs.push(out);
    }
    let data = text_data();
    let mut args = vec!["--data", s(&data)];
    args.extend(dirs.iter().map(|d| s(d)));
    let tf = oracle("check_merge.py", &args);
    let tf_loss = |i: usize| tf[i]["loss"].as_f64().unwrap();
    let (lora_loss, dora_loss) = (loam_loss(&base, Some(&lora)), loam_loss(&base, Some(&dora)));

    assert_eq!(tf[0]["dtype"], "torch.float32");
    assert_close(
        "LoRA f32: transformers(merged) vs loam --adapter",
        tf_loss(0),
        lora_loss,
        1e-4,
    );
    assert_close(
        "LoRA f32: loam(merged) vs loam --adapter",
        loam_loss(&dirs[0], None),
        lora_loss,
        1e-4,
    );
    assert_close(
        "DoRA f32: transformers(merged) vs loam --adapter",
        tf_loss(1),
        dora_loss,
        1e-4,
    );
    assert_close(
        "DoRA f32: loam(merged) vs loam --adapter",
        loam_loss(&dirs[1], None),
        dora_loss,
        1e-4,
    );
    // bf16 weights (upcast to f32 for the forward): rounding the weights to 8 mantissa
    // bits moved the loss by rel 1.1e-4 here and 4.5e-4 on SmolLM2-135M; the bound is 1e-3.
    assert_eq!(tf[2]["dtype"], "torch.bfloat16");
    assert_close(
        "LoRA bf16: transformers(merged) vs loam --adapter",
        tf_loss(2),
        lora_loss,
        1e-3,
    );
    // The base is f32, so the default dtype is f32 and sharding changes nothing.
    assert_eq!(tf[3]["dtype"], "torch.float32");
    assert_close(
        "sharded: transformers vs single file",
        tf_loss(3),
        tf_loss(0),
        1e-6,
    );

    let config = read_json(&dirs[2].join("config.json"));
    assert_eq!(
        config["torch_dtype"], "bfloat16",
        "llama-gqa's config is t4 layout"
    );
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
    ] {
        assert!(dirs[0].join(f).exists(), "{f} not copied");
    }
    let card = std::fs::read_to_string(dirs[1].join("README.md")).unwrap();
    // The fixture has no Hub id: the card leaves `base_model` out rather than name a path,
    // and a local dataset is no Hub dataset.
    assert!(card.starts_with("---\n"), "{card}");
    for absent in ["base_model:", "datasets:", s(&fixtures())] {
        assert!(!card.contains(absent), "{absent} in {card}");
    }
    assert_mentions(
        &card,
        &[
            "- \"loam\"",
            "- \"lora\"",
            "- \"dora\"",
            "text.parquet",
            "held-out loss: ",
            " → ",
            "| r | 4 |",
            "training_loss.svg",
        ],
        "model card",
    );
    assert!(dirs[1].join("training_loss.svg").exists());
}

#[test]
fn sharded_merge_has_an_index_of_every_tensor() {
    let dir = temp_dir("sharded");
    let adapter = fixtures().join("train/peft-trained/llama-lora");
    let out = dir.join("merged");
    assert_success(
        &merge(
            &model("llama-gqa"),
            &adapter,
            &out,
            &["--shard-size", "1MB"],
        ),
        "loam merge",
    );
    let index = read_json(&out.join("model.safetensors.index.json"));
    let map = index["weight_map"].as_object().unwrap();
    let mut files: Vec<&str> = map.values().map(|v| v.as_str().unwrap()).collect();
    files.sort();
    files.dedup();
    let n = files.len();
    assert!(n > 2, "expected several shards, got {files:?}");
    for (i, f) in files.iter().enumerate() {
        assert_eq!(*f, format!("model-{:05}-of-{n:05}.safetensors", i + 1));
    }
    let on_disk: u64 = files
        .iter()
        .map(|f| std::fs::metadata(out.join(f)).unwrap().len())
        .sum();
    let total = index["metadata"]["total_size"].as_u64().unwrap();
    assert!(total <= on_disk && on_disk < total + n as u64 * 4096);
    assert!(!out.join("model.safetensors").exists());
    assert!(map.contains_key("model.layers.0.self_attn.q_proj.weight"));
}

#[test]
fn merge_refuses_to_overwrite_without_force() {
    let dir = temp_dir("force");
    let base = model("llama-gqa");
    let adapter = fixtures().join("train/peft-trained/llama-lora");
    let out = dir.join("merged");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    assert_clean_failure(
        &merge(&base, &adapter, &out, &[]),
        &["already exists", "--force"],
    );
    assert!(
        out.join("keep.txt").exists(),
        "refusal touched the directory"
    );
    assert_success(
        &merge(&base, &adapter, &out, &["--force"]),
        "loam merge --force",
    );
    assert!(out.join("model.safetensors").exists() && !out.join("keep.txt").exists());
}

#[test]
fn merging_an_adapter_made_for_another_base_fails_cleanly() {
    let dir = temp_dir("mismatch");
    let adapter = fixtures().join("train/peft-trained/qwen2-rslora");
    let out = dir.join("merged");
    assert_clean_failure(
        &merge(&model("llama-gqa"), &adapter, &out, &[]),
        &["adapter_model.safetensors", "another base model"],
    );
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "partial output left behind: {left:?}");
}

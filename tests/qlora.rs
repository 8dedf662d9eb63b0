//! End-to-end tests of QLoRA: training, evaluating, generating and merging on 4-bit bases,
//! a bitsandbytes `-bnb-4bit` directory or a 16-bit one with `--quantize nf4`. References
//! come from transformers + bitsandbytes (scripts/oracle/fixtures_qlora.py) and, for
//! merged models, from transformers loading them (scripts/oracle/check_merge.py).

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest() -> serde_json::Value {
    let path = fixtures().join("qlora/manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run scripts/oracle/build.sh", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn text_data() -> PathBuf {
    fixtures().join("data/text.parquet")
}

/// `loam eval --json` (f32, CPU, seq_len 64) of `model` with `extra` flags: (loss, tokens).
fn eval(model: &Path, extra: &[&str]) -> (f64, u64) {
    let data = text_data();
    let mut args = vec![
        "eval",
        "--model",
        s(model),
        "--data",
        s(&data),
        "--seq-len",
        "64",
        "--json",
        "--dtype",
        "f32",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    let out = loam(&args);
    assert_success(&out, &format!("loam eval {}", model.display()));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["loss"].as_f64().unwrap(), v["tokens"].as_u64().unwrap())
}

fn expected_eval(entry: &serde_json::Value) -> (f64, u64) {
    let path = fixtures()
        .join(entry["expected"].as_str().unwrap())
        .join("eval_text.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (v["loss"].as_f64().unwrap(), v["tokens"].as_u64().unwrap())
}

fn assert_close(what: &str, got: f64, want: f64, rel: f64) {
    println!("{what}: {got:.7} vs {want:.7}");
    assert!(
        ((got - want) / want).abs() <= rel,
        "{what}: {got} vs {want} (rel {:.2e} > {rel:.0e})",
        ((got - want) / want).abs()
    );
}

/// Every saved 4-bit model (NF4 and FP4, double quantization on and off, uint8 and bf16
/// storage, a quantized lm_head, every family) evaluates to transformers' loss.
#[test]
fn eval_of_bnb_4bit_models_equals_transformers() {
    let models = manifest()["models"].as_array().unwrap().clone();
    assert!(models.len() >= 7);
    for m in &models {
        let (loss, tokens) = eval(&fixtures().join(m["dir"].as_str().unwrap()), &[]);
        let (want, want_tokens) = expected_eval(m);
        assert_eq!(tokens, want_tokens, "{}", m["name"]);
        assert_close(m["name"].as_str().unwrap(), loss, want, 1e-4);
    }
}

/// `--quantize nf4` on the f32 models equals transformers loading them with
/// `BitsAndBytesConfig(load_in_4bit, nf4, double quantization, compute f32)`.
#[test]
fn quantize_nf4_at_load_equals_transformers_with_the_same_config() {
    let mut checked = 0;
    for m in manifest()["models"].as_array().unwrap() {
        if m["quant_type"] != "nf4" || m["double_quant"] != true || !m["skip_modules"].is_null() {
            continue;
        }
        let source = model(m["source"].as_str().unwrap());
        let (loss, _) = eval(&source, &["--quantize", "nf4"]);
        assert_close(
            &format!("{} --quantize nf4", m["source"]),
            loss,
            expected_eval(m).0,
            1e-4,
        );
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn greedy_generation_on_a_4bit_model_equals_transformers() {
    for case in manifest()["generate"].as_array().unwrap() {
        let dir = fixtures().join(case["model"].as_str().unwrap());
        let max = case["max_new_tokens"].to_string();
        let out = loam(&[
            "generate",
            "--model",
            s(&dir),
            "--raw",
            "--prompt",
            case["prompt"].as_str().unwrap(),
            "--max-new-tokens",
            &max,
            "--json",
            "--device",
            "cpu",
        ]);
        assert_success(&out, "loam generate");
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_greedy_equal(&got, case, &case["model"].to_string());
    }
}

/// A QLoRA training run on `base` (a fixture path relative to the fixtures' `models/`
/// dir), with `sets`; `stop_after` pauses it, and a second call resumes it.
fn train(dir: &Path, base: &str, sets: &[&str], stop_after: Option<u64>) -> PathBuf {
    let recipe = write_recipe(dir, base);
    let run = dir.join("run");
    let mut args = vec!["train", s(&recipe), "--out", s(&run)];
    for set in sets {
        args.extend_from_slice(&["--set", set]);
    }
    let stop = stop_after.map(|n| n.to_string());
    if let Some(n) = &stop {
        args.extend_from_slice(&["--stop-after", n]);
    } else if run.join("checkpoints").exists() {
        args.push("--resume");
    }
    assert_success(&loam(&args), &format!("loam train on {base}"));
    run
}

fn adapter_bytes(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap()
}

/// On a bitsandbytes 4-bit directory and with `model.quantize = "nf4"`, LoRA and DoRA:
/// a run stopped and resumed ends with the adapter an uninterrupted run ends with.
#[test]
fn qlora_resume_is_bit_identical() {
    let bnb = "../qlora/models/llama-gqa-bnb-nf4";
    let cases: [(&str, &[&str]); 3] = [
        (bnb, &[]),
        (bnb, &["lora.dora=true"]),
        ("llama-gqa", &["model.quantize=\"nf4\""]),
    ];
    for (i, (base, sets)) in cases.iter().enumerate() {
        let straight = train(&temp_dir(&format!("qlora-straight-{i}")), base, sets, None);
        let dir = temp_dir(&format!("qlora-resumed-{i}"));
        train(&dir, base, sets, Some(3));
        let resumed = train(&dir, base, sets, None);
        assert!(
            adapter_bytes(&straight) == adapter_bytes(&resumed),
            "{base} {sets:?}: resumed adapter differs"
        );
        let log = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 6, "{base}: one metrics line per step");
    }
}

/// Runs an oracle script; returns its JSON lines.
fn oracle(script: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/oracle")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("run the oracle python");
    assert_success(&out, script);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A QLoRA adapter merged onto the 16-bit base (the default) and onto the dequantized
/// 4-bit weights (`--onto-dequantized`): transformers loads both with loam's loss of the
/// unmerged adapter on that base, and each card says which it is.
#[test]
fn merged_qlora_models_load_in_transformers_with_loams_loss() {
    let dir = temp_dir("qlora-merge");
    let bnb = fixtures().join("qlora/models/llama-gqa-bnb-nf4");
    let base16 = model("llama-gqa");
    let run = train(&dir, "../qlora/models/llama-gqa-bnb-nf4", &[], None);
    let adapter = run.join("adapter");
    let merge = |base: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "merge",
            "--model",
            s(base),
            "--adapter",
            s(&adapter),
            "--out",
            s(out),
            "--dtype",
            "f32",
        ];
        args.extend_from_slice(extra);
        loam(&args)
    };
    let onto16 = dir.join("merged-16bit");
    let onto4 = dir.join("merged-dequantized");
    assert_success(&merge(&base16, &onto16, &[]), "merge onto the 16-bit base");
    assert_success(
        &merge(&bnb, &onto4, &["--onto-dequantized"]),
        "merge --onto-dequantized",
    );
    let refused = merge(&bnb, &dir.join("refused"), &[]);
    assert_clean_failure(&refused, &["4-bit", "--onto-dequantized", "16-bit"]);
    assert!(!dir.join("refused").exists());

    let data = text_data();
    let tf = oracle(
        "check_merge.py",
        &["--data", s(&data), s(&onto16), s(&onto4)],
    );
    let adapter_arg = ["--adapter", s(&adapter)];
    assert_close(
        "onto 16-bit: transformers(merged) vs loam base16 --adapter",
        tf[0]["loss"].as_f64().unwrap(),
        eval(&base16, &adapter_arg).0,
        1e-4,
    );
    assert_close(
        "onto dequantized: transformers(merged) vs loam 4-bit --adapter",
        tf[1]["loss"].as_f64().unwrap(),
        eval(&bnb, &adapter_arg).0,
        1e-4,
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(onto4.join("config.json")).unwrap()).unwrap();
    assert!(config.get("quantization_config").is_none(), "{config}");

    let card16 = std::fs::read_to_string(onto16.join("README.md")).unwrap();
    assert_mentions(
        &card16,
        &[
            "- \"qlora\"",
            "trained on a 4-bit base",
            "original 16-bit weights",
        ],
        "card (16-bit)",
    );
    // A card never names a local path: the fixture has no Hub id, so no `base_model`.
    assert!(
        !card16.contains(s(&base16)) && !card16.contains("base_model:"),
        "{card16}"
    );
    let card4 = std::fs::read_to_string(onto4.join("README.md")).unwrap();
    assert_mentions(
        &card4,
        &["dequantized 4-bit weights", "not quantized again"],
        "card (dequantized)",
    );
}

/// Quantized formats loam does not read are named in one clear error; so is PiSSA on a
/// 4-bit base.
#[test]
fn unsupported_quantized_models_get_one_clear_error() {
    let src = fixtures().join("qlora/models/llama-gqa-bnb-nf4");
    let cases = [
        (
            r#"{"quant_method": "gptq", "bits": 4}"#,
            vec!["gptq", "quant_method"],
        ),
        (r#"{"quant_method": "awq", "bits": 4}"#, vec!["awq"]),
        (
            r#"{"quant_method": "bitsandbytes", "load_in_8bit": true}"#,
            vec!["8-bit", "load_in_8bit"],
        ),
    ];
    for (i, (qc, needles)) in cases.iter().enumerate() {
        let dir = temp_dir(&format!("quantized-{i}"));
        for entry in std::fs::read_dir(&src).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        config["quantization_config"] = serde_json::from_str(qc).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let data = text_data();
        let out = loam(&["eval", "--model", s(&dir), "--data", s(&data)]);
        let mut needles = needles.clone();
        needles.push("config.json");
        assert_clean_failure(&out, &needles);
    }

    let dir = temp_dir("qlora-pissa");
    let recipe = write_recipe(&dir, "../qlora/models/llama-gqa-bnb-nf4");
    let out = loam(&[
        "train",
        s(&recipe),
        "--out",
        s(&dir.join("run")),
        "--set",
        "lora.init=\"pissa\"",
    ]);
    // The model loads (and logs) before the adapter is made: the error is the last line.
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error:"), "{err}");
    assert_mentions(last, &["pissa", "4-bit"], "error");
    let out = loam(&[
        "train",
        s(&write_recipe(&dir, "llama-gqa")),
        "--out",
        s(&dir.join("run2")),
        "--set",
        "lora.init=\"pissa\"",
        "--set",
        "model.quantize=\"nf4\"",
    ]);
    assert_clean_failure(&out, &["pissa", "model.quantize"]);
}

//! End-to-end tests of the `loam` binary: what a user types, what a user sees.
//! Reference numbers come from transformers via scripts/oracle (see scripts/oracle/README.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("LOAM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/loam/fixtures")
        });
    assert!(
        dir.join("manifest.json").exists(),
        "fixtures missing in {}: run scripts/oracle/build.sh",
        dir.display()
    );
    dir
}

fn loam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loam"))
        .args(args)
        .output()
        .expect("run loam")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure as users must see it: non-zero exit, one `error:` message, no panic or backtrace.
fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    assert!(
        err.trim_start().starts_with("error:"),
        "no error message: {err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "error should mention `{needle}`: {err}"
        );
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loam-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn eval_json(model: &Path, data: &Path, seq_len: usize) -> serde_json::Value {
    let seq = seq_len.to_string();
    let out = loam(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--seq-len",
        &seq,
        "--json",
        "--dtype",
        "f32",
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "loam eval failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn assert_eval_matches(model: &Path, expected: &Path) {
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(expected).unwrap()).unwrap();
    let got = eval_json(
        model,
        &fixtures().join("data/text.parquet"),
        exp["seq_len"].as_u64().unwrap() as usize,
    );
    let (loss, want) = (got["loss"].as_f64().unwrap(), exp["loss"].as_f64().unwrap());
    println!("{}: loam {loss:.6} transformers {want:.6}", model.display());
    assert_eq!(
        got["tokens"],
        exp["tokens"],
        "{}: predicted-token counts differ",
        model.display()
    );
    assert!(
        ((loss - want) / want).abs() <= 1e-4,
        "{}: loss {loss} vs transformers {want}",
        model.display()
    );
    assert!((got["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-6 * loss.exp());
}

#[test]
fn eval_loss_equals_transformers_for_every_fixture_model() {
    let root = fixtures();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    for m in manifest["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        assert_eval_matches(
            &root.join(m["dir"].as_str().unwrap()),
            &root.join("expected").join(name).join("eval_text.json"),
        );
    }
}

#[test]
fn eval_truncates_rows_to_seq_len_like_transformers() {
    let root = fixtures();
    assert_eval_matches(
        &root.join("models/smollm2-135m"),
        &root.join("expected/smollm2-135m/eval_text_seq16.json"),
    );
}

#[test]
fn missing_model_directory_is_a_clear_error() {
    let out = loam(&["eval", "--model", "/no/such/model", "--data", "x.parquet"]);
    assert_clean_failure(&out, &["/no/such/model", "not found"]);
}

#[test]
fn unsupported_architecture_lists_the_supported_ones() {
    let dir = temp_dir("arch");
    std::fs::write(
        dir.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"], "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}"#,
    )
    .unwrap();
    let data = fixtures().join("data/text.parquet");
    let out = loam(&[
        "eval",
        "--model",
        dir.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(
        &out,
        &[
            "GPT2LMHeadModel",
            "LlamaForCausalLM",
            "Qwen3ForCausalLM",
            "config.json",
        ],
    );
}

/// A copy of a fixture model whose files can be damaged.
fn copy_model(name: &str, to: &str) -> PathBuf {
    let src = fixtures().join("models").join(name);
    let dir = temp_dir(to);
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn corrupt_safetensors_names_the_file() {
    let dir = copy_model("qwen2", "corrupt");
    std::fs::write(
        dir.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
    )
    .unwrap();
    let data = fixtures().join("data/text.parquet");
    let out = loam(&[
        "eval",
        "--model",
        dir.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["model.safetensors", "not a valid safetensors"]);
}

#[test]
fn wrong_shape_names_the_tensor_and_both_shapes() {
    let dir = copy_model("qwen2", "shape");
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let inter = config["intermediate_size"].as_i64().unwrap();
    config["intermediate_size"] = (inter + 1).into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let data = fixtures().join("data/text.parquet");
    let out = loam(&[
        "eval",
        "--model",
        dir.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(
        &out,
        &[
            "mlp.gate_proj.weight",
            &format!("[{inter}, "),
            &format!("[{}, ", inter + 1),
        ],
    );
}

#[test]
fn missing_data_file_is_a_clear_error() {
    let model = fixtures().join("models/qwen2");
    let out = loam(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "/no/such/data.parquet",
    ]);
    assert_clean_failure(&out, &["/no/such/data.parquet"]);
}

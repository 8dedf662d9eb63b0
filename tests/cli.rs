//! End-to-end tests of the `loam` binary: what a user types, what a user sees.
//! Reference numbers come from transformers via scripts/oracle (see scripts/oracle/README.md).

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn assert_eval_matches(model: &Path, expected: &Path) {
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(expected).unwrap()).unwrap();
    let got = eval_json(
        model,
        None,
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

/// `loam eval` of the model in `dir` on the fixture text file, as a user would run it.
fn eval_text(dir: &Path) -> Output {
    let data = fixtures().join("data/text.parquet");
    loam(&["eval", "--model", s(dir), "--data", s(&data)])
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
    let out = eval_text(&dir);
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
    let dir = temp_dir(to);
    copy_dir(&fixtures().join("models").join(name), &dir);
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
    let out = eval_text(&dir);
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
    let out = eval_text(&dir);
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

// ── loam train ─────────────────────────────────────────────────────────────────────────

fn adapter_config(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("adapter/adapter_config.json")).unwrap())
        .unwrap()
}

#[test]
fn resume_is_bit_identical() {
    let dir = temp_dir("resume");
    let recipe = write_recipe(&dir, "llama-gqa");
    let (straight, resumed) = straight_and_resumed(&dir, &recipe, &[]);
    let (a, b) = (metric_lines(&straight), metric_lines(&resumed));
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x["step"], &x["loss"], &x["lr"], &x["grad_norm"]),
            (&y["step"], &y["loss"], &y["lr"], &y["grad_norm"])
        );
    }
    // DESIGN's metrics contract.
    for key in [
        "step",
        "loss",
        "lr",
        "grad_norm",
        "tokens",
        "tokens_per_s",
        "elapsed_s",
    ] {
        assert!(a[0].get(key).is_some(), "metrics.jsonl lacks `{key}`");
    }
    assert!(straight.join("recipe.toml").exists());
    assert!(
        straight.join("loss.png").exists(),
        "a finished run plots its loss curve"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(straight.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 6);
    for key in [
        "tokens",
        "tokens_per_s",
        "peak_rss_bytes",
        "eval_loss_before",
        "eval_loss_after",
    ] {
        assert!(
            summary[key].as_f64().is_some_and(|v| v > 0.0),
            "summary.json `{key}`: {summary}"
        );
    }
    let config = adapter_config(&straight);
    assert_eq!(
        (
            config["peft_type"].as_str(),
            config["r"].as_i64(),
            config["task_type"].as_str()
        ),
        (Some("LORA"), Some(4), Some("CAUSAL_LM"))
    );
}

/// PiSSA trains on a residual base: a resume must rebuild that residual, not reload the
/// saved adapter (a plain rank-2r LoRA on the original base).
#[test]
fn pissa_resumes_bit_identically_and_saves_a_plain_lora() {
    let dir = temp_dir("resume-pissa");
    let recipe = write_recipe(&dir, "llama-gqa");
    let (straight, _) = straight_and_resumed(&dir, &recipe, &["--set", "lora.init=\"pissa\""]);
    let config = adapter_config(&straight);
    assert_eq!(
        (config["r"].as_i64(), config["lora_alpha"].as_f64()),
        (Some(8), Some(16.0)),
        "a PiSSA adapter is saved as a plain LoRA of twice the rank, same scale"
    );
}

#[test]
fn resume_continues_to_a_larger_step_count() {
    let dir = temp_dir("more-steps");
    let recipe = write_recipe(&dir, "llama-gqa");
    let run = dir.join("run");
    assert!(train(&recipe, &run, &[]).status.success());
    let out = train(&recipe, &run, &["--resume", "--set", "train.steps=8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = metric_lines(&run);
    assert_eq!(
        lines
            .iter()
            .map(|l| l["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
}

#[test]
fn a_second_run_into_the_same_directory_needs_resume() {
    let dir = temp_dir("exists");
    let recipe = write_recipe(&dir, "llama-gqa");
    let run = dir.join("run");
    assert!(train(&recipe, &run, &["--stop-after", "2"])
        .status
        .success());
    assert_clean_failure(&train(&recipe, &run, &[]), &["--resume"]);
}

#[test]
fn a_half_written_checkpoint_is_ignored_on_resume() {
    let dir = temp_dir("half");
    let recipe = write_recipe(&dir, "llama-gqa");
    let run = dir.join("run");
    assert!(train(&recipe, &run, &["--stop-after", "4"])
        .status
        .success());
    // What a SIGKILL during the write of step 6 leaves: a temporary directory, partly written.
    let partial = run.join("checkpoints/.step-6.tmp");
    std::fs::create_dir_all(partial.join("adapter")).unwrap();
    std::fs::write(partial.join("optimizer.safetensors"), b"trunc").unwrap();
    let out = train(&recipe, &run, &["--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let straight = dir.join("straight");
    assert!(train(&recipe, &straight, &[]).status.success());
    assert_eq!(adapter_bytes(&straight), adapter_bytes(&run));
}

#[test]
fn a_run_killed_with_sigkill_resumes() {
    let dir = temp_dir("sigkill");
    let recipe = write_recipe(&dir, "llama-gqa");
    let run = dir.join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loam"))
        .args([
            "train",
            recipe.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--set",
            "train.steps=400",
            "--set",
            "train.checkpoint_every=1",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some checkpoints exist, most likely in the middle of writing another.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !run.join("checkpoints/step-3").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = train(
        &recipe,
        &run,
        &[
            "--resume",
            "--set",
            "train.steps=400",
            "--set",
            "train.checkpoint_every=1",
            "--stop-after",
            "1",
        ],
    );
    assert!(
        out.status.success(),
        "resume after SIGKILL failed: {}",
        stderr(&out)
    );
}

fn bad_recipe(extra_sets: &[&str], needles: &[&str]) {
    let dir = temp_dir("bad");
    let recipe = write_recipe(&dir, "llama-gqa");
    let mut args = vec![];
    for s in extra_sets {
        args.push("--set");
        args.push(*s);
    }
    assert_clean_failure(&train(&recipe, &dir.join("run"), &args), needles);
}

#[test]
fn bad_recipes_get_one_clear_message_each() {
    bad_recipe(&["train.lerning_rate=1"], &["lerning_rate"]);
    bad_recipe(&["train.setps=3"], &["setps", "steps"]);
    bad_recipe(&["train.micro_batch=\"four\""], &["micro_batch"]);
    bad_recipe(
        &["data.train[0].path=/no/such/file.parquet"],
        &["/no/such/file.parquet"],
    );
    bad_recipe(&["lora.r=0"], &["lora.r"]);
    bad_recipe(
        &["lora.targets=[\"qkv_proj\"]"],
        &["qkv_proj", "match no linear"],
    );
}

#[test]
fn eval_applies_a_trained_adapter() {
    let dir = temp_dir("eval-adapter");
    let recipe = write_recipe(&dir, "llama-gqa");
    let run = dir.join("run");
    assert!(train(&recipe, &run, &[]).status.success());
    let model = fixtures().join("models/llama-gqa");
    let data = fixtures().join("data/text.parquet");
    let with = |adapter: Option<&Path>| {
        let mut args = vec![
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--seq-len",
            "32",
            "--json",
            "--train-on",
            "all",
        ];
        if let Some(a) = adapter {
            args.extend_from_slice(&["--adapter", a.to_str().unwrap()]);
        }
        let out = loam(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["loss"]
            .as_f64()
            .unwrap()
    };
    let (base, adapted) = (with(None), with(Some(&run.join("adapter"))));
    assert!(
        (base - adapted).abs() > 1e-4,
        "the adapter changed nothing: {base} vs {adapted}"
    );
}

// ── loam data ──────────────────────────────────────────────────────────────────────────

#[test]
fn data_preview_marks_trained_spans_and_counts_tokens() {
    let dir = temp_dir("preview");
    let recipe = write_recipe(&dir, "llama-gqa");
    let out = loam(&["data", "preview", recipe.to_str().unwrap(), "-n", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[[The quick brown fox"), "{text}");
    assert!(text.contains("23 tokens, 23 trained"), "{text}");
    assert!(text.contains("longer than seq_len 32"), "{text}");
}

#[test]
fn data_stats_counts_rows_tokens_and_waste() {
    let dir = temp_dir("stats");
    let recipe = write_recipe(&dir, "llama-gqa");
    let out = loam(&["data", "stats", recipe.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_mentions(
        &text,
        &[
            "rows read        11",
            "held out (eval)  3",
            "truncated",
            "padding waste",
        ],
        "output",
    );
}

fn gettext(locale: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "data",
        "gettext",
        "--lang",
        "cy",
        "--locale-dir",
        s(locale),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    loam(&args)
}

#[test]
fn data_gettext_builds_chats_that_training_reads() {
    let dir = temp_dir("gettext");
    let locale = dir.join("locale");
    write_welsh_catalog(&locale, 40);
    write_catalog(
        &locale,
        "cy",
        "gtk",
        &[
            ("_Save", "_Cadw"),
            ("Open file 0", "Agor ffeil 0"),
            ("GNOME", "GNOME"),
        ],
    );
    std::fs::write(locale.join("cy/LC_MESSAGES/broken.mo"), b"not a catalog").unwrap();
    let out_dir = dir.join("out");
    let out = gettext(&locale, &out_dir, &["--eval-fraction", "0.25"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_mentions(
        &text,
        &[
            "2 read, 1 skipped",
            "broken.mo: not a gettext .mo file",
            "43 seen",
            "1 identical",
            "1 same English in several catalogs",
            "41 distinct English messages into Welsh",
        ],
        "output",
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap()).unwrap();
    let (train, dev, eval) = (
        summary["train"].as_u64().unwrap(),
        summary["dev"].as_u64().unwrap(),
        summary["eval"].as_u64().unwrap(),
    );
    assert_eq!(train + dev + eval, 41);
    assert!(eval > 0 && train > eval, "train {train}, eval {eval}");
    // the dev split (5% by default) is a file beside the others
    assert!(out_dir.join("dev.parquet").is_file());

    // Training reads both files as chats: the prompt is untrained, the translation trained.
    let recipe = dir.join("recipe.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"
[model]
path = "{model}"
[data]
seq_len = 64
[[data.train]]
path = "{train}"
format = "chat"
[[data.eval]]
path = "{eval}"
format = "chat"
[train]
steps = 1
"#,
            model = fixtures().join("models/smollm2-135m").display(),
            train = out_dir.join("train.parquet").display(),
            eval = out_dir.join("eval.parquet").display(),
        ),
    )
    .unwrap();
    let out = loam(&["data", "preview", s(&recipe), "-n", "50"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("({train} rows, format chat)")),
        "{text}"
    );
    assert!(text.contains("Translate into Welsh:\nSave"), "{text}");
    assert!(text.contains("[[Cadw<|im_end|>"), "{text}");

    // The output is never replaced by accident.
    assert_clean_failure(
        &gettext(&locale, &out_dir, &[]),
        &["already exists", "--force"],
    );
    let out = gettext(&locale, &out_dir, &["--force", "--eval-fraction", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.join("out.tmp").exists() && !dir.join("out.old").exists());
}

#[test]
fn data_gettext_failures_say_what_to_do() {
    let dir = temp_dir("gettext-bad");
    let locale = dir.join("locale");
    std::fs::create_dir_all(&locale).unwrap();
    assert_clean_failure(
        &gettext(&locale, &dir.join("out"), &[]),
        &[
            "no gettext catalogs",
            "cy/LC_MESSAGES",
            "language-pack-cy",
            "--locale-dir",
        ],
    );
    let bad = dir.join("bad.mo");
    std::fs::write(&bad, b"\xde\x12\x04\x95\0\0\0\0").unwrap();
    let out = loam(&["data", "gettext", "--out", s(&dir.join("out")), s(&bad)]);
    assert_clean_failure(&out, &["bad.mo", "truncated"]);
    assert!(!dir.join("out").exists(), "nothing written on failure");
}

// ── a real model ───────────────────────────────────────────────────────────────────────

/// A small chat dataset written with pyarrow (the oracle environment): the user greets in
/// English, the assistant always answers in Welsh. Held-out rows follow the same pattern.
fn write_chat_parquet(path: &Path, rows: usize) {
    let script = format!(
        r#"
import pyarrow as pa, pyarrow.parquet as pq
names = ["Siân", "Rhys", "Gwen", "Dafydd", "Elin", "Owain", "Cerys", "Huw", "Nia", "Iolo"]
rows = []
for i in range({rows}):
    n = names[i % len(names)]
    rows.append([{{"role": "user", "content": f"Hello, my name is {{n}}. How do you greet me in Welsh?"}},
                 {{"role": "assistant", "content": f"Shwmae {{n}}! Croeso, a diolch yn fawr am ofyn."}}])
pq.write_table(pa.table({{"messages": rows}}), r"{path}", row_group_size=8)
"#,
        path = path.display()
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .output()
        .expect("run the oracle python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn smollm2_chat_sft_lowers_the_held_out_loss() {
    let dir = temp_dir("smollm2-sft");
    let data = dir.join("chats.parquet");
    write_chat_parquet(&data, 30);
    let recipe = dir.join("recipe.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"
[model]
path = "{model}"
dtype = "f32"
device = "cpu"
[lora]
r = 8
alpha = 16
dropout = 0.0
targets = ["q_proj", "v_proj"]
[data]
seq_len = 64
packing = false
train_on = "assistant"
eval_fraction = 0.2
[[data.train]]
path = "{data}"
format = "chat"
[train]
steps = 5
micro_batch = 2
grad_accum = 1
lr = 2e-3
warmup = 1
eval_every = 5
checkpoint_every = 5
activation_checkpointing = true
"#,
            model = fixtures().join("models/smollm2-135m").display(),
            data = data.display()
        ),
    )
    .unwrap();
    let run = dir.join("run");
    let out = train(&recipe, &run, &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("eval loss"))
        .unwrap_or_else(|| panic!("no eval summary: {err}"));
    let numbers: Vec<f64> = summary
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (before, after) = (numbers[0], numbers[1]);
    println!("SmolLM2 chat SFT: held-out loss {before} -> {after}");
    assert!(
        after < 0.8 * before,
        "held-out loss should fall clearly: {before} -> {after}"
    );
}

// ── loam generate ──────────────────────────────────────────────────────────────────────

/// Greedy generation equals transformers' `generate` token for token (f32, 32 new tokens),
/// through the chat template and on raw text (scripts/oracle/fixtures_generate.py).
#[test]
fn greedy_generation_equals_transformers() {
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("expected/smollm2-135m/generate.json")).unwrap(),
    )
    .unwrap();
    let cases = expected["generations"].as_array().unwrap();
    let model = fixtures().join("models/smollm2-135m");
    let mut compared = 0;
    for chat in [true, false] {
        let mine: Vec<&serde_json::Value> = cases.iter().filter(|c| c["chat"] == chat).collect();
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--json",
            "--max-new-tokens",
            "32",
            "--device",
            "cpu",
        ];
        if !chat {
            args.push("--raw");
        }
        for case in &mine {
            args.extend(["--prompt", case["prompt"].as_str().unwrap()]);
        }
        let out = loam(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let answers: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), mine.len());
        for (got, want) in answers.iter().zip(&mine) {
            let what = format!(
                "{:?}: loam said {:?}, transformers {:?}",
                want["prompt"], got["text"], want["text"]
            );
            compared += assert_greedy_equal(got, want, &what);
        }
    }
    assert!(
        compared >= 64,
        "only {compared} greedy tokens were decided clearly"
    );
}

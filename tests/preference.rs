//! End-to-end tests of preference tuning (`train.objective = "dpo" | "orpo"`) through the
//! `loam` binary: training, TRL's metric names, held-out pairs, bit-identical resume, the
//! data commands on pairs, and the errors a user sees. The numbers themselves are checked
//! against TRL in `trainer/src/train/preference/trl_parity_tests.rs`.

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// A small DPO (or ORPO) recipe on the tiny fixture model, with the oracle's pairs: a held-out
/// split, checkpoints every 2 steps, and (through `extra`) any other keys.
fn write_preference_recipe(dir: &Path, objective: &str, data: &str, extra: &str) -> PathBuf {
    let f = fixtures();
    let recipe = format!(
        r#"
[model]
path = "{model}"
dtype = "f32"
device = "cpu"
[lora]
r = 4
alpha = 8
dropout = 0.1
targets = "all-linear"
[data]
seq_len = 48
padding = "longest"
eval_fraction = 0.25
[[data.train]]
path = "{data}"
format = "preference"
[train]
objective = "{objective}"
steps = 6
micro_batch = 2
grad_accum = 2
lr = 1e-2
warmup = 1
checkpoint_every = 2
eval_every = 3
{extra}
"#,
        model = f.join("models/llama-gqa").display(),
        data = f
            .join("preference")
            .join(format!("{data}.parquet"))
            .display(),
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    path
}

const DPO_METRICS: [&str; 6] = [
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
];

/// DPO from an existing adapter (`lora.from`: the reference is a frozen copy of it), on
/// conversational pairs: stopped after 3 steps and resumed, it ends byte for byte where an
/// uninterrupted run ends, with the same metrics.
#[test]
fn dpo_from_an_adapter_resumes_bit_identically_with_trls_metrics() {
    let dir = temp_dir("dpo-resume");
    let from = fixtures().join("train/peft-trained/llama-lora");
    let recipe = write_preference_recipe(&dir, "dpo", "chat", "[dpo]\nbeta = 0.1\n");
    let sets = ["--set", &format!("lora.from=\"{}\"", from.display())];
    let (straight, resumed) = straight_and_resumed(&dir, &recipe, &sets);
    let (a, b) = (metric_lines(&straight), metric_lines(&resumed));
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        for key in DPO_METRICS
            .iter()
            .chain(&["step", "loss", "lr", "grad_norm", "eval_loss"])
        {
            assert_eq!(x.get(*key), y.get(*key), "{key} differs after resuming");
        }
    }
    for key in DPO_METRICS
        .iter()
        .chain(&["step", "loss", "lr", "grad_norm", "tokens"])
    {
        assert!(
            a[0].get(*key).is_some(),
            "metrics.jsonl lacks `{key}`: {}",
            a[0]
        );
    }
    // The reference is the starting adapter: before any update every reward is 0 and the
    // loss is ln 2; the held-out pairs report the same metrics, prefixed eval_.
    assert_eq!(a[0]["rewards/margins"].as_f64(), Some(0.0));
    assert!((a[0]["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-6);
    for key in DPO_METRICS {
        assert!(
            a[2].get(format!("eval_{key}")).is_some(),
            "no eval_{key}: {}",
            a[2]
        );
    }
    assert!(
        a[5]["rewards/margins"].as_f64().unwrap() > 0.0,
        "DPO moved nothing: {}",
        a[5]
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(straight.join("summary.json")).unwrap()).unwrap();
    assert!(summary["eval_loss_before"]
        .as_f64()
        .is_some_and(|l| (l - std::f64::consts::LN_2).abs() < 1e-6));
    assert!(
        summary["eval_loss_after"].as_f64().unwrap()
            < summary["eval_loss_before"].as_f64().unwrap()
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(straight.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
}

/// Precomputing the reference once per pair gives the run that computes it every step.
#[test]
fn a_precomputed_reference_trains_as_the_live_one() {
    let dir = temp_dir("dpo-precompute");
    let live = write_preference_recipe(&dir, "dpo", "plain", "");
    let out = train(&live, &dir.join("live"), &[]);
    assert_success(&out, "dpo");
    let out = train(
        &live,
        &dir.join("pre"),
        &["--set", "dpo.precompute_reference=true"],
    );
    assert_success(&out, "dpo with a precomputed reference");
    for (x, y) in metric_lines(&dir.join("live"))
        .iter()
        .zip(&metric_lines(&dir.join("pre")))
    {
        for key in ["loss", "rewards/margins", "grad_norm"] {
            let (x, y) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                "{key}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn orpo_trains_through_the_cli_with_its_metrics() {
    let dir = temp_dir("orpo");
    let recipe = write_preference_recipe(&dir, "orpo", "plain", "[orpo]\nbeta = 0.2\n");
    let run = dir.join("run");
    assert_success(&train(&recipe, &run, &[]), "orpo");
    let lines = metric_lines(&run);
    assert_eq!(lines.len(), 6);
    for key in DPO_METRICS
        .iter()
        .chain(&["nll_loss", "log_odds_ratio", "log_odds_chosen"])
    {
        assert!(
            lines[0].get(*key).is_some(),
            "metrics.jsonl lacks `{key}`: {}",
            lines[0]
        );
        assert!(
            lines[2].get(format!("eval_{key}")).is_some(),
            "no eval_{key}: {}",
            lines[2]
        );
    }
    let (first, last) = (
        lines[0]["loss"].as_f64().unwrap(),
        lines[5]["loss"].as_f64().unwrap(),
    );
    assert!(last < first, "ORPO's loss did not fall: {first} → {last}");
    assert!(run.join("adapter/adapter_model.safetensors").exists());
}

#[test]
fn data_preview_and_stats_show_pairs() {
    let dir = temp_dir("pairs-data");
    let recipe = write_preference_recipe(&dir, "dpo", "chat", "");
    let out = loam(&["data", "preview", s(&recipe), "-n", "1"]);
    assert_success(&out, "data preview");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_mentions(
        &text,
        &[
            "row 0 (row group 0, row 0 of the group) chosen",
            " rejected:",
            "[[Cardiff.<|im_end|>\n]]",
            "[[London.<|im_end|>\n]]",
        ],
        "preview",
    );
    let out = loam(&["data", "stats", s(&recipe)]);
    assert_success(&out, "data stats");
    assert_mentions(
        &String::from_utf8_lossy(&out.stdout),
        &["pairs            ", "held out (eval)"],
        "stats",
    );
}

#[test]
fn preference_mistakes_get_one_clear_message_each() {
    let dir = temp_dir("pairs-bad");
    let recipe = write_preference_recipe(&dir, "dpo", "plain", "");
    let run = |sets: &[&str]| {
        let mut args = vec![];
        for set in sets {
            args.extend(["--set", *set]);
        }
        train(&recipe, &dir.join("run"), &args)
    };
    assert_clean_failure(
        &run(&["train.objective=\"sft\""]),
        &["preference pairs", "train.objective"],
    );
    let text = fixtures().join("data/text.parquet");
    let sets = [
        format!("data.train[0].path=\"{}\"", text.display()),
        "data.train[0].format=\"text\"".into(),
    ];
    assert_clean_failure(
        &run(&[&sets[0], &sets[1]]),
        &["train.objective = \"dpo\"", "format \"text\"", "preference"],
    );
    assert_clean_failure(&run(&["dpo.beta=0"]), &["dpo.beta"]);
    assert_clean_failure(
        &run(&["dpo.loss=\"ipo\"", "dpo.label_smoothing=0.1"]),
        &["dpo.label_smoothing", "ipo"],
    );
    assert_clean_failure(
        &run(&["dpo.los=\"ipo\""]),
        &["dpo.los", "did you mean `loss`"],
    );
    assert_clean_failure(
        &run(&["data.overlong=\"split\""]),
        &["data.overlong", "preference pairs"],
    );
    // A bad row is met once training has started, after the log lines.
    let bad = fixtures().join("preference/bad.parquet");
    let set = format!("data.train[0].path=\"{}\"", bad.display());
    let out = run(&[&set, "data.eval_fraction=0"]);
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert_mentions(
        line,
        &[
            "bad.parquet",
            "row 1",
            "column `rejected`",
            "the same as `chosen`",
        ],
        "error",
    );
    assert_mentions(&err, &["on_error = \"skip\""], "hint");
    let out = loam(&[
        "eval",
        "--model",
        s(&model("llama-gqa")),
        "--data",
        s(&bad),
        "--format",
        "preference",
    ]);
    assert_clean_failure(&out, &["--format preference", "train.objective"]);
}

//! The README's demo command (scripts/demo.sh), end to end with a tiny step count: import
//! SmolLM2's GGUF, build translation chats from gettext catalogs, eval and translate the
//! held-out split (chrF++, BLEU), train, the same with the adapter, merge, export a q8_0
//! GGUF, summarize.
mod common;
use common::*;
use std::process::Command;

/// A small catalog of English → Welsh UI messages: every verb with every noun, so held-out
/// messages are new combinations of words the training messages teach.
fn welsh_pairs() -> Vec<(String, String)> {
    let verbs = [
        ("Open", "Agor"),
        ("Save", "Cadw"),
        ("Close", "Cau"),
        ("Delete", "Dileu"),
        ("Copy", "Copïo"),
        ("Print", "Argraffu"),
        ("Rename", "Ailenwi"),
        ("Find", "Canfod"),
        ("Edit", "Golygu"),
        ("Show", "Dangos"),
    ];
    let nouns = [
        ("file", "ffeil"),
        ("folder", "ffolder"),
        ("window", "ffenestr"),
        ("page", "tudalen"),
        ("picture", "llun"),
        ("message", "neges"),
        ("document", "dogfen"),
        ("settings", "gosodiadau"),
        ("list", "rhestr"),
        ("account", "cyfrif"),
    ];
    let mut pairs = Vec::new();
    for (ve, vc) in verbs {
        for (ne, nc) in nouns {
            pairs.push((format!("{ve} {ne}"), format!("{vc} {nc}")));
        }
    }
    pairs
}

#[test]
fn the_demo_runs_the_whole_story_and_the_held_out_loss_falls() {
    let dir = temp_dir("demo");
    let pairs = welsh_pairs();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_catalog(&dir.join("locale"), "cy", "demo", &pairs);
    let run = dir.join("run");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/demo.sh"))
        .env("LOAM_DEMO_SKIP_SETUP", "1")
        .env("LOAM_BIN", env!("CARGO_BIN_EXE_loam"))
        .env(
            "LOAM_DEMO_GGUF",
            fixtures().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        )
        .env("LOAM_DEMO_MODEL", dir.join("model"))
        .env("LOAM_DEMO_LOCALE_DIR", dir.join("locale"))
        .env("LOAM_DEMO_RUN", &run)
        .env("LOAM_DEMO_STEPS", "8")
        .env("LOAM_DEMO_GEN_TOKENS", "8")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        stderr(&out)
    );
    for line in [
        "eval loss:",
        "bits/byte",
        "chrF++:",
        "BLEU",
        "held-out translations",
        "ollama create",
    ] {
        assert!(
            stdout.contains(line),
            "the summary lacks `{line}`:\n{stdout}"
        );
    }
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join(p)).unwrap()).unwrap()
    };
    let (before, after) = (read("eval-before.json"), read("eval-after.json"));
    assert!(
        after["loss"].as_f64() < before["loss"].as_f64(),
        "held-out loss {before} -> {after}"
    );
    assert_eq!(read("train/summary.json")["steps"], 8);
    // chrF++ and BLEU of the answers to every held-out message, before and after
    for eval in [&before, &after] {
        assert_eq!(eval["generated"], eval["rows"], "{eval}");
        assert!(
            eval["chrf"].as_f64().is_some() && eval["bleu"].as_f64().is_some(),
            "{eval}"
        );
    }
    for artifact in [
        "train/adapter/adapter_model.safetensors",
        "merged/config.json",
        "merged/README.md",
        "merged/smollm2-135m-instruct-cy-q8_0.gguf",
        "merged/Modelfile",
        "train/adapter/README.md",
        "data/README.md",
    ] {
        assert!(run.join(artifact).is_file(), "{artifact} missing");
    }
    // What the summary says to upload is publishable: cards the Hub reads, naming the base
    // by its repo id, its licence, the data's languages and the held-out results; the
    // GGUF's metadata as llama.cpp's converter writes it; no local path anywhere.
    let (merged, adapter, data) = (
        run.join("merged"),
        run.join("train/adapter"),
        run.join("data"),
    );
    let gguf = merged.join("smollm2-135m-instruct-cy-q8_0.gguf");
    let home = home();
    let report = oracle(
        "check_cards.py",
        &[
            "--model",
            s(&merged),
            "--model",
            s(&adapter),
            "--dataset",
            s(&data),
            "--gguf",
            s(&gguf),
            "--forbid",
            s(&dir),
            "--forbid",
            s(&home),
            "--forbid",
            "runs/",
            "--forbid",
            "example.invalid",
        ],
    );
    let report = &report[0];
    for (card, relation) in [(&merged, "finetune"), (&adapter, "adapter")] {
        let meta = &report["models"][s(card)]["data"];
        assert_eq!(
            meta["base_model"], "HuggingFaceTB/SmolLM2-135M-Instruct",
            "{meta}"
        );
        assert_eq!(meta["base_model_relation"], relation);
        assert_eq!(meta["license"], "apache-2.0", "SmolLM2's GGUF says so");
        assert_eq!(meta["language"], serde_json::json!(["en", "cy"]));
    }
    // The merged card gets the held-out results through `merge --eval-results`, the
    // adapter's through `eval --card`: both show what step 5 measured.
    for card in [&merged, &adapter] {
        let results = report["models"][s(card)]["eval_results"]
            .as_array()
            .unwrap_or_else(|| panic!("no eval results in {}", card.display()));
        let chrf = results
            .iter()
            .find(|r| r["metric_type"] == "chrf")
            .expect("chrF++ in the model-index");
        assert!(
            (chrf["metric_value"].as_f64().unwrap() - after["chrf"].as_f64().unwrap()).abs() < 1e-3,
            "{chrf} vs {after}"
        );
        assert!(
            results.iter().any(|r| r["metric_type"] == "bleu"),
            "{results:?}"
        );
    }
    let general = &report["ggufs"][s(&gguf)];
    assert_eq!(
        general["general.name"], "SmolLM2 135M Instruct cy-lora",
        "{general}"
    );
    assert_eq!(general["general.license"], "apache-2.0");
    assert_eq!(
        general["general.base_model.0.organization"],
        "HuggingFaceTB"
    );
    assert!(
        stdout.contains("upload SmolLM2-135M-Instruct-cy-lora "),
        "{stdout}"
    );
}

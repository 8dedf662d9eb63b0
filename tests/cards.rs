//! End-to-end: what a user uploads is publishable. A dataset from gettext catalogs, a short
//! training run, its merge and its GGUF: the adapter's and the merged model's cards and the
//! dataset card are read with huggingface_hub's own parsers, the GGUF's `general.*` keys with
//! gguf-py and the file with llama.cpp (scripts/oracle/check_cards.py, check_llama_cpp.py).
//! No card or metadata names a local path.

mod common;
use common::*;

use serde_json::Value;
use std::path::{Path, PathBuf};

const BASE_ID: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

/// The tiny model as a Hub snapshot holds it: with a README whose front matter gives its
/// licence and language.
fn base_with_readme(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    copy_dir(&model("smollm2-135m"), &base);
    std::fs::write(
        base.join("README.md"),
        "---\nlibrary_name: transformers\nlicense: apache-2.0\nlanguage:\n- en\n---\n# SmolLM2\n",
    )
    .unwrap();
    base
}

fn cards(args: &[&str]) -> Value {
    let mut report = oracle("check_cards.py", args);
    assert_eq!(report.len(), 1, "{report:?}");
    report.remove(0)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

#[test]
fn cards_and_gguf_metadata_name_the_base_the_data_and_the_results() {
    let dir = temp_dir("cards");
    let data = welsh_gettext_data(&dir);
    let base = base_with_readme(&dir);
    let recipe = write_chat_recipe(&dir, &base, &data, &format!("hub_id = \"{BASE_ID}\""), "");
    let run = dir.join("run");
    assert_success(&train(&recipe, &run, &[]), "loam train");
    let merged = dir.join("merged");
    assert_success(
        &loam(&[
            "merge",
            "--model",
            s(&base),
            "--adapter",
            s(&run.join("adapter")),
            "--out",
            s(&merged),
        ]),
        "loam merge",
    );
    let gguf = dir.join("model-q8_0.gguf");
    assert_success(&gguf_export(&merged, &gguf, "q8_0"), "loam gguf export");
    let adapter = run.join("adapter");
    let home = home();
    let forbidden = [s(&dir), s(&home), "/tmp/", "runs/", "example.invalid"];
    let mut args = vec![
        "--model",
        s(&adapter),
        "--model",
        s(&merged),
        "--dataset",
        s(&data),
    ];
    args.extend(["--gguf", s(&gguf)]);
    for f in forbidden.iter().filter(|f| f.len() > 1) {
        args.extend(["--forbid", f]);
    }
    let report = cards(&args);

    for (card_dir, relation, library) in [
        (&adapter, "adapter", "peft"),
        (&merged, "finetune", "transformers"),
    ] {
        let card = &report["models"][s(card_dir)];
        let data = &card["data"];
        let what = format!("{relation} card");
        assert_eq!(data["base_model"], BASE_ID, "{what}: {data}");
        assert_eq!(data["base_model_relation"], relation, "{what}");
        assert_eq!(data["library_name"], library, "{what}");
        assert_eq!(data["license"], "apache-2.0", "{what}: the base's licence");
        assert_eq!(
            strings(&data["language"]),
            ["en", "cy"],
            "{what}: the data's languages"
        );
        assert!(
            data.get("datasets").is_none(),
            "{what}: a local dataset is no Hub id: {data}"
        );
        // huggingface_hub reads `model_name` as the name of the model-index results.
        let name = "SmolLM2 135M Instruct cy-lora";
        let results = card["eval_results"].as_array().unwrap();
        let metrics: Vec<&str> = results
            .iter()
            .map(|r| r["metric_type"].as_str().unwrap())
            .collect();
        assert_eq!(
            metrics,
            ["loss", "bits_per_byte", "chrf", "bleu"],
            "{what}: {results:?}"
        );
        for r in results {
            assert_eq!(r["dataset_split"], "held-out", "{what}");
            assert_eq!(r["model"], name, "{what}");
            assert!(
                r["metric_value"].as_f64().unwrap().is_finite(),
                "{what}: {r}"
            );
        }
        let text = card["text"].as_str().unwrap();
        assert_mentions(
            text,
            &[
                &format!("[{BASE_ID}](https://huggingface.co/{BASE_ID})"),
                "## Data",
                "| app | — | — |",
                "held-out chrF++",
                "Held out: eval.parquet",
                "apache-2.0",
            ],
            &what,
        );
    }
    let loss_after = report["models"][s(&merged)]["eval_results"][0]["metric_value"].as_f64();
    let metrics = metric_lines(&run);
    let last_eval = metrics.iter().rev().find_map(|m| m["eval_loss"].as_f64());
    assert_eq!(
        loss_after.map(|l| (l * 1e4).round()),
        last_eval.map(|l| (l * 1e4).round())
    );

    let dataset = &report["datasets"][s(&data)];
    let meta = &dataset["data"];
    assert_eq!(strings(&meta["language"]), ["en", "cy"]);
    assert_eq!(
        strings(&meta["license"]),
        ["unknown"],
        "a catalog no package installed"
    );
    assert_eq!(strings(&meta["task_categories"]), ["translation"]);
    assert_eq!(strings(&meta["size_categories"]), ["n<1K"]);
    assert_mentions(
        dataset["text"].as_str().unwrap(),
        &[
            "| app | not from a Debian package | unknown | 40 | 40 |",
            "loam data gettext --lang cy",
        ],
        "dataset card",
    );

    let general = &report["ggufs"][s(&gguf)];
    let want = [
        ("general.name", "SmolLM2 135M Instruct cy-lora"),
        ("general.basename", "SmolLM2"),
        ("general.finetune", "cy-lora"),
        ("general.license", "apache-2.0"),
        ("general.base_model.0.name", "SmolLM2 135M Instruct"),
        ("general.base_model.0.organization", "HuggingFaceTB"),
        (
            "general.base_model.0.repo_url",
            "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
    ];
    for (key, value) in want {
        assert_eq!(general[key], value, "{key}: {general}");
    }
    assert_eq!(general["general.base_model.count"], 1);
    assert_eq!(strings(&general["general.languages"]), ["en", "cy"]);
    assert!(
        strings(&general["general.tags"]).contains(&"loam"),
        "{general}"
    );
    let label = general["general.size_label"].as_str().unwrap();
    assert!(label.ends_with('M') || label.ends_with('K'), "{label}");

    // llama.cpp loads it and computes what transformers does on the merged model.
    oracle_report(
        "check_llama_cpp.py",
        &[s(&gguf), s(&merged), "--min-agreement", "0.9"],
    );

    // Imported back, the directory keeps the GGUF's name, licence and languages.
    let imported = dir.join("imported");
    assert_success(
        &loam(&["gguf", "import", s(&gguf), "--out", s(&imported)]),
        "loam gguf import",
    );
    let back = cards(&["--model", s(&imported)]);
    let meta = &back["models"][s(&imported)]["data"];
    assert_mentions(
        back["models"][s(&imported)]["text"].as_str().unwrap(),
        &["# SmolLM2 135M Instruct cy-lora"],
        "imported card",
    );
    assert_eq!(meta["license"], "apache-2.0");
    assert_eq!(strings(&meta["language"]), ["en", "cy"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_hub_id_cards_leave_the_base_out_and_say_how_to_set_it() {
    let dir = temp_dir("cards-no-id");
    let data = welsh_gettext_data(&dir);
    let recipe = write_chat_recipe(&dir, &model("smollm2-135m"), &data, "", "");
    let run = dir.join("run");
    let out = train(&recipe, &run, &[]);
    assert_success(&out, "loam train");
    assert_mentions(
        &stderr(&out),
        &["repo id is not known", "model.hub_id"],
        "train warning",
    );
    let adapter = run.join("adapter");
    let home = home();
    let report = cards(&[
        "--model",
        s(&adapter),
        "--forbid",
        s(&dir),
        "--forbid",
        s(&home),
    ]);
    let data = &report["models"][s(&adapter)]["data"];
    assert!(data.get("base_model").is_none(), "{data}");
    assert!(data.get("base_model_relation").is_none(), "{data}");

    // `loam eval --card` records what it measured in the adapter's model-index.
    let (tiny, held_out) = (model("smollm2-135m"), dir.join("data/eval.parquet"));
    let eval_args = [
        "eval",
        "--model",
        s(&tiny),
        "--data",
        s(&held_out),
        "--format",
        "chat",
        "--seq-len",
        "64",
        "--json",
        "--card",
    ];
    assert_clean_failure(&loam(&eval_args), &["--card", "--adapter"]);
    let out = loam(&[&eval_args[..], &["--adapter", s(&adapter)]].concat());
    assert_success(&out, "loam eval --card");
    let measured: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = cards(&["--model", s(&adapter)]);
    let results = report["models"][s(&adapter)]["eval_results"]
        .as_array()
        .unwrap();
    let loss = results.iter().find(|r| r["metric_type"] == "loss").unwrap();
    assert!(
        // the card rounds to 4 decimals
        (loss["metric_value"].as_f64().unwrap() - measured["loss"].as_f64().unwrap()).abs() <= 5e-5,
        "card {loss} vs eval {measured}"
    );

    // A hub id that is not `org/name` is refused, naming the key.
    for bad in ["SmolLM2-135M", "a/b/c", "has space/x"] {
        let out = train(
            &recipe,
            &dir.join("bad"),
            &["--set", &format!("model.hub_id=\"{bad}\"")],
        );
        assert_clean_failure(&out, &["model.hub_id", "org/name"]);
    }
    let out = loam(&[
        "merge",
        "--model",
        s(&model("smollm2-135m")),
        "--adapter",
        s(&adapter),
        "--out",
        s(&dir.join("merged")),
        "--base-model-id",
        "nope",
    ]);
    assert_clean_failure(&out, &["--base-model-id", "org/name"]);
    let _ = std::fs::remove_dir_all(&dir);
}

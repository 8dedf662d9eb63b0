//! End-to-end tests of `loam vocab extend` and of training the new rows
//! (`lora.trainable_tokens`), each checked by the tool that consumes the output:
//! transformers loads the extended model (same ids, same loss), PEFT loads the adapter on it,
//! transformers loads the merged model, llama.cpp tokenizes its GGUF as transformers does.
//! The Python side is scripts/oracle/check_vocab.py, check_merge.py and check_peft.py. The
//! base models are the tiny fixtures, which carry SmolLM2's tokenizer; the corpus is
//! fixtures_vocab.py's multilingual one (non-Latin scripts included).

mod common;
use common::*;

use loam_data::Tokenizer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const NEW_TOKENS: &str = "64";

fn corpus() -> PathBuf {
    fixtures().join("vocab/corpus.parquet")
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs a step at most once per test binary (tests run in parallel and share them).
fn once(key: &str, make: impl FnOnce(&Path)) -> PathBuf {
    static DONE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut done = DONE.get_or_init(Default::default).lock().unwrap();
    if let Some(dir) = done.get(key) {
        return dir.clone();
    }
    let dir = temp_dir(&format!("vocab-{}", key.replace(['/', ' '], "-")));
    let out = dir.join("out");
    make(&out);
    done.insert(key.to_string(), out.clone());
    out
}

/// `loam vocab extend` of the tiny fixture `base` on the corpus.
fn extended(base: &str) -> PathBuf {
    once(&format!("extend {base}"), |out| {
        let run = loam(&[
            "vocab",
            "extend",
            "--model",
            s(&model(base)),
            "--data",
            s(&corpus()),
            "--new-tokens",
            NEW_TOKENS,
            "--out",
            s(out),
        ]);
        assert_success(&run, "loam vocab extend");
        let summary = String::from_utf8_lossy(&run.stdout);
        assert_mentions(
            &summary,
            &["64 new tokens", "tokens/byte", "held out"],
            "summary",
        );
    })
}

/// `loam eval --json` on the corpus at seq_len 64 (f32, CPU): (loss, predicted tokens).
fn loam_eval(model: &Path, adapter: Option<&Path>) -> (f64, u64) {
    data_eval(model, adapter, &corpus(), 64)
}

#[test]
fn extended_tokenizer_is_transformers_and_keeps_every_base_token() {
    for base in ["llama-mqa-tied", "llama-gqa"] {
        let dir = extended(base);
        let report = read_json(&dir.join("vocab_extension.json"));
        assert_eq!(report["new_token_ids"].as_array().unwrap().len(), 64);
        assert_eq!(report["first_new_id"], 49152);
        // 49152 + 64 = 49216, rounded up to the base's multiple (128)
        assert_eq!(report["vocab_size"], 49280);
        assert_eq!(read_json(&dir.join("config.json"))["vocab_size"], 49280);
        for part in ["learn", "held_out"] {
            let p = &report[part];
            let (before, after) = (
                p["tokens_per_byte_before"].as_f64().unwrap(),
                p["tokens_per_byte_after"].as_f64().unwrap(),
            );
            println!("{base} {part}: tokens/byte {before:.4} -> {after:.4}");
            assert!(p["texts"].as_u64().unwrap() > 0, "{base}: no {part} texts");
            assert!(after < 0.8 * before, "{base} {part}: {before} -> {after}");
        }
        // transformers: base ids unchanged, expansion = base ids, rows = means (check_vocab.py)
        let ids_file = dir.parent().unwrap().join("transformers-ids.json");
        let check = oracle(
            "check_vocab.py",
            &[
                "tokenizer",
                s(&dir),
                s(&model(base)),
                "--data",
                s(&corpus()),
                "--out",
                s(&ids_file),
            ],
        );
        assert!(
            check[0]["new_tokens_seen"].as_u64().unwrap() > 500,
            "{}",
            check[0]
        );
        assert!(
            check[0]["texts_without_new_tokens_unchanged"]
                .as_u64()
                .unwrap()
                > 0
        );
        // loam's tokenizer on DIR gives transformers' ids (fast path and the tokenizers crate)
        let tok = Tokenizer::from_model_dir(&dir).unwrap();
        assert!(tok.has_fast_path());
        let slow = tok.clone().without_fast_path();
        for row in read_json(&ids_file).as_array().unwrap() {
            let text = row["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(row["input_ids"].clone()).unwrap();
            assert_eq!(tok.encode(text, true).unwrap(), want, "{base}: {text:?}");
            assert_eq!(slow.encode(text, true).unwrap(), want, "{base}: {text:?}");
        }
    }
}

#[test]
fn eval_of_the_extended_model_equals_transformers() {
    for base in ["llama-mqa-tied", "llama-gqa"] {
        let dir = extended(base);
        let want = oracle("check_merge.py", &["--data", s(&corpus()), s(&dir)]);
        let (loss, tokens) = loam_eval(&dir, None);
        assert_eq!(want[0]["tokens"], tokens, "{base}: predicted-token counts");
        assert_close(
            &format!("{base}: loam eval vs transformers on DIR"),
            loss,
            want[0]["loss"].as_f64().unwrap(),
            1e-5,
        );
    }
}

/// What the training runs set on top of common's recipe: the rows of the new tokens, the
/// corpus, 8 steps.
const TRAIN_SETS: &[&str] = &[
    "lora.trainable_tokens=\"new\"",
    "train.steps=8",
    "train.lr=2e-2",
    "train.checkpoint_every=4",
    "train.eval_every=4",
];

/// `loam train [--set ...] RECIPE --out OUT` with [`TRAIN_SETS`].
fn train(recipe: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", s(recipe), "--out", s(out)];
    for set in TRAIN_SETS {
        args.extend_from_slice(&["--set", set]);
    }
    args.extend_from_slice(extra);
    loam(&args)
}

/// `loam train` with `lora.trainable_tokens = "new"` on the extended model; the recipe is
/// `<out>.toml`.
fn trained(base: &str) -> PathBuf {
    let dir = extended(base);
    once(&format!("train {base}"), |out| {
        let parent = out.parent().unwrap();
        let recipe = write_recipe_at(parent, &dir, &corpus());
        std::fs::rename(&recipe, out.with_extension("toml")).unwrap();
        assert_success(&train(&out.with_extension("toml"), out, &[]), "loam train");
    })
}

#[test]
fn trained_rows_load_in_peft_merge_into_transformers_and_export_to_llama_cpp() {
    for (base, tied) in [("llama-mqa-tied", true), ("llama-gqa", false)] {
        let dir = extended(base);
        let run = trained(base);
        let adapter = run.join("adapter");
        let cfg = read_json(&adapter.join("adapter_config.json"));
        let new_ids = read_json(&dir.join("vocab_extension.json"))["new_token_ids"].clone();
        let want_indices = if tied {
            new_ids.clone()
        } else {
            serde_json::json!({"embed_tokens": new_ids, "lm_head": new_ids})
        };
        assert_eq!(cfg["trainable_token_indices"], want_indices, "{base}");

        // PEFT loads it on the extended base, every tensor as saved, at loam's loss
        let peft = oracle(
            "check_peft.py",
            &["--model", s(&dir), "--data", s(&corpus()), s(&adapter)],
        );
        for field in ["missing", "unexpected", "differ"] {
            assert_eq!(peft[0][field], serde_json::json!([]), "{base}: {}", peft[0]);
        }
        let (with_adapter, tokens) = loam_eval(&dir, Some(&adapter));
        assert_eq!(peft[0]["tokens"], tokens);
        assert_close(
            &format!("{base}: loam vs PEFT"),
            with_adapter,
            peft[0]["loss"].as_f64().unwrap(),
            1e-4,
        );
        let (before, _) = loam_eval(&dir, None);
        assert!(
            before - with_adapter > 0.05,
            "{base}: training changed little: {before} -> {with_adapter}"
        );

        // merged: trained rows in, tokenizer and vocab_size of DIR, tied stays tied
        let merged = run.parent().unwrap().join("merged");
        let out = loam(&[
            "merge",
            "--model",
            s(&dir),
            "--adapter",
            s(&adapter),
            "--out",
            s(&merged),
        ]);
        assert_success(&out, "loam merge");
        let config = read_json(&merged.join("config.json"));
        assert_eq!(config["vocab_size"], 49280);
        assert_eq!(config["tie_word_embeddings"], tied);
        assert_eq!(
            std::fs::read(merged.join("tokenizer.json")).unwrap(),
            std::fs::read(dir.join("tokenizer.json")).unwrap()
        );
        let hf = oracle("check_merge.py", &["--data", s(&corpus()), s(&merged)]);
        assert_close(
            &format!("{base}: transformers on the merged model vs the adapter"),
            hf[0]["loss"].as_f64().unwrap(),
            with_adapter,
            1e-4,
        );
        assert_close(
            &format!("{base}: loam eval of the merged model"),
            loam_eval(&merged, None).0,
            with_adapter,
            1e-4,
        );

        // GGUF: llama.cpp tokenizes as transformers on text full of new tokens
        let gguf = run.parent().unwrap().join("merged.f32.gguf");
        let out = loam(&[
            "gguf",
            "export",
            "--model",
            s(&merged),
            "--out",
            s(&gguf),
            "--type",
            "f32",
        ]);
        assert_success(&out, "loam gguf export");
        let check = "check_llama_cpp.py";
        oracle(check, &[s(&gguf), s(&merged), "--texts", s(&corpus())]);
        let tok = Tokenizer::from_model_dir(&merged).unwrap();
        let texts = loam_data::vocab::CorpusReader::open(
            &loam_data::SourceConfig::new(s(&corpus()), loam_data::Format::Text),
            0.0,
        )
        .unwrap();
        // the first 60 rows, which check_llama_cpp.py tokenized, hold many new tokens
        let (mut new_ids, mut chunks) = (0, 0);
        texts
            .for_each_chunk(60, |chunk| {
                for text in chunk.learn.iter().filter(|_| chunks == 0) {
                    let ids = tok.encode(text, true)?;
                    new_ids += ids.iter().filter(|&&id| id >= 49152).count();
                }
                chunks += 1;
                Ok(())
            })
            .unwrap();
        assert!(
            new_ids > 200,
            "{base}: only {new_ids} new tokens in the texts llama.cpp checked"
        );

        // loam generate emits the new tokens, as transformers' generate does. A tiny random
        // model rarely picks any given 64 of 49k tokens after a few steps: the new rows of a
        // copy are scaled up so that greedy decoding meets them.
        let loud = run.parent().unwrap().join("loud");
        scale_rows(&merged, &loud, 49152..49216, 3.0);
        let prompts = ["mae hen wlad", "ሰላም ዓለም ቋንቋ"];
        let hf = oracle(
            "check_vocab.py",
            &[
                "generate",
                s(&loud),
                "--max-new-tokens",
                "12",
                "--prompt",
                prompts[0],
                prompts[1],
            ],
        );
        let mut emitted_new = 0;
        for (prompt, want) in prompts.iter().zip(&hf) {
            let out = loam(&[
                "generate",
                "--model",
                s(&loud),
                "--raw",
                "--prompt",
                prompt,
                "--max-new-tokens",
                "12",
                "--json",
                "--dtype",
                "f32",
                "--device",
                "cpu",
            ]);
            assert_success(&out, "loam generate");
            let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let compared = assert_greedy_equal(&got, want, &format!("{base}: {prompt:?}"));
            emitted_new += got["token_ids"].as_array().unwrap()[..compared]
                .iter()
                .filter(|id| id.as_u64().unwrap() >= 49152)
                .count();
        }
        assert!(
            emitted_new > 0,
            "{base}: generation never emitted a new token"
        );
    }
}

/// A copy of the f32 model in `src` with `rows` of its embedding and output head scaled.
fn scale_rows(src: &Path, dst: &Path, rows: std::ops::Range<usize>, factor: f32) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
        }
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        let mut raw = view.data().to_vec();
        if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            let hidden = view.shape()[1];
            for value in raw[rows.start * hidden * 4..rows.end * hidden * 4].chunks_exact_mut(4) {
                let x = f32::from_le_bytes(value.try_into().unwrap()) * factor;
                value.copy_from_slice(&x.to_le_bytes());
            }
        }
        data.push((name, view.shape().to_vec(), raw));
    }
    let views: Vec<(&str, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, shape, raw)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw);
            (n.as_str(), view.unwrap())
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &dst.join("model.safetensors")).unwrap();
}

#[test]
fn resume_restores_the_trained_rows() {
    // a run stopped after 4 steps and resumed ends where the uninterrupted run does
    let full = trained("llama-mqa-tied");
    let recipe = full.with_extension("toml");
    let dir = temp_dir("vocab-resume");
    let run = dir.join("run");
    let stop = train(&recipe, &run, &["--stop-after", "4"]);
    assert_success(&stop, "loam train --stop-after 4");
    assert_success(&train(&recipe, &run, &["--resume"]), "loam train --resume");
    let a = std::fs::read(full.join("adapter/adapter_model.safetensors")).unwrap();
    let b = std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed adapter (token rows included) differs from the uninterrupted one"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_gets_one_clear_error() {
    let dir = temp_dir("vocab-errors");
    let base = model("llama-gqa");
    let data = corpus();
    let extend = |extra: &[&str]| {
        let mut args = vec!["vocab", "extend", "--model", s(&base), "--data", s(&data)];
        args.extend_from_slice(extra);
        loam(&args)
    };
    let out = dir.join("x");
    let out_s = s(&out);
    assert_clean_failure(
        &extend(&["--new-tokens", "0", "--out", out_s]),
        &["--new-tokens"],
    );
    assert_clean_failure(
        &extend(&["--new-tokens", "4", "--column", "body", "--out", out_s]),
        &["body", "corpus.parquet"],
    );
    assert_clean_failure(
        &extend(&["--new-tokens", "4", "--out", out_s, "--held-out", "1.5"]),
        &["held-out"],
    );
    std::fs::create_dir_all(&out).unwrap();
    assert_clean_failure(
        &extend(&["--new-tokens", "4", "--out", out_s]),
        &["--force"],
    );
    // "new" on a model that `loam vocab extend` did not write
    let recipe = dir.join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[model]\npath = \"{}\"\ndevice = \"cpu\"\n[lora]\ntrainable_tokens = \"new\"\n\
             [[data.train]]\npath = \"{}\"\nformat = \"text\"\n[train]\nsteps = 1\n",
            base.display(),
            data.display()
        ),
    )
    .unwrap();
    let run = dir.join("run");
    assert_clean_failure(
        &loam(&["train", s(&recipe), "--out", s(&run)]),
        &["vocab_extension.json", "list of token ids"],
    );
    let bad = loam(&[
        "train",
        s(&recipe),
        "--out",
        s(&run),
        "--set",
        "lora.trainable_tokens=[1, 99999999]",
    ]);
    assert_clean_failure(&bad, &["99999999"]);
    let _ = std::fs::remove_dir_all(&dir);
}

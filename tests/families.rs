//! End-to-end tests of Gemma 1/2/3 (a multimodal Gemma 3 too), Phi-3 and SmolLM3 through
//! the `loam` binary, each checked by the reference stack: transformers' losses and greedy
//! generations (scripts/oracle/fixtures_families.py), PEFT loading loam's adapters
//! (check_peft.py), transformers loading loam's merges (check_merge.py), and llama.cpp
//! running loam's GGUF exports (check_llama_cpp.py).

mod common;
use common::*;

use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

fn text_data() -> PathBuf {
    fixtures().join("data/text.parquet")
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn assert_rel(what: &str, got: f64, want: f64, rel: f64) {
    let err = ((got - want) / want).abs();
    println!("{what}: {got:.8} vs {want:.8} (rel {err:.1e})");
    assert!(
        err <= rel,
        "{what}: {got} vs {want} (rel {err:.2e} > {rel:.0e})"
    );
}

fn loam_loss(model: &Path, adapter: Option<&Path>) -> f64 {
    text_eval(model, adapter, 64).0
}

/// The run dir of `loam train` (the shared test recipe, targets `all-linear`) on a family
/// model, trained once per test binary.
fn trained(name: &str) -> PathBuf {
    static RUNS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut runs = RUNS.get_or_init(Default::default).lock().unwrap();
    if let Some(run) = runs.get(name) {
        return run.clone();
    }
    let dir = temp_dir(&format!("families-train-{name}"));
    let recipe = write_recipe_for(&dir, &family_model(name));
    let run = dir.join("run");
    assert_success(
        &loam(&["train", s(&recipe), "--out", s(&run)]),
        &format!("loam train on {name}"),
    );
    runs.insert(name.to_string(), run.clone());
    run
}

#[test]
fn eval_loss_equals_transformers_for_every_new_family() {
    let models = family_manifest();
    assert!(models.len() >= 10, "{models:?}");
    for m in models {
        let name = m["name"].as_str().unwrap();
        let exp = read_json(
            &families()
                .join(m["expected"].as_str().unwrap())
                .join("eval_text.json"),
        );
        let (loss, tokens) = text_eval(&families().join(m["dir"].as_str().unwrap()), None, 64);
        assert_eq!(
            tokens,
            exp["tokens"].as_u64().unwrap(),
            "{name}: predicted tokens"
        );
        assert_rel(
            &format!("{name}: loam eval vs transformers"),
            loss,
            exp["loss"].as_f64().unwrap(),
            1e-5,
        );
    }
}

/// Greedy generation with the KV cache (per-layer windows, LongRoPE switching factors as
/// the positions pass the original length) equals transformers' `generate`.
#[test]
fn greedy_generation_equals_transformers_generate() {
    for m in family_manifest() {
        let name = m["name"].as_str().unwrap();
        let exp = read_json(
            &families()
                .join(m["expected"].as_str().unwrap())
                .join("generate.json"),
        );
        let max_new = exp["max_new_tokens"].as_u64().unwrap().to_string();
        let dir = families().join(m["dir"].as_str().unwrap());
        let gens = exp["generations"].as_array().unwrap();
        let mut args = vec![
            "generate",
            "--model",
            s(&dir),
            "--raw",
            "--json",
            "--max-new-tokens",
            &max_new,
            "--dtype",
            "f32",
            "--device",
            "cpu",
        ];
        for g in gens {
            args.extend_from_slice(&["--prompt", g["prompt"].as_str().unwrap()]);
        }
        let out = loam(&args);
        assert_success(&out, &format!("loam generate {name}"));
        let answers: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), gens.len(), "{name}");
        let mut compared = 0;
        for (got, want) in answers.iter().zip(gens) {
            compared += assert_greedy_equal(got, want, &format!("{name}: {:?}", want["prompt"]));
        }
        println!(
            "{name}: {} greedy generations equal transformers' ({compared} clearly decided tokens compared)",
            gens.len()
        );
    }
}

/// Adapters PEFT trained (families/train/peft-trained): loam evaluates them, and merges
/// them, to PEFT's loss; transformers loads the merged models with the same loss.
#[test]
fn peft_trained_adapters_evaluate_and_merge_to_peft_loss() {
    let root = families().join("train/peft-trained");
    let dir = temp_dir("families-peft-trained");
    let mut merged = Vec::new();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "{cases:?}");
    for adapter in &cases {
        let case = adapter.file_name().unwrap().to_string_lossy().to_string();
        let case_json = read_json(&families().join("train").join(&case).join("case.json"));
        let base = families().join(case_json["base"].as_str().unwrap());
        let want = read_json(&adapter.join("eval.json"))["loss"]
            .as_f64()
            .unwrap();
        assert_rel(
            &format!("{case}: loam eval --adapter vs PEFT"),
            loam_loss(&base, Some(adapter)),
            want,
            1e-5,
        );
        let out = dir.join(&case);
        assert_success(
            &loam(&[
                "merge",
                "--model",
                s(&base),
                "--adapter",
                s(adapter),
                "--out",
                s(&out),
            ]),
            "loam merge",
        );
        assert_rel(
            &format!("{case}: loam eval of the merge vs PEFT"),
            loam_loss(&out, None),
            want,
            1e-5,
        );
        merged.push((case, out, want));
    }
    let data = text_data();
    let mut args = vec!["--data", s(&data)];
    args.extend(merged.iter().map(|(_, d, _)| s(d)));
    let tf = oracle("check_merge.py", &args);
    for ((case, _, want), t) in merged.iter().zip(&tf) {
        assert_eq!(t["dtype"], "torch.float32", "{case}");
        assert_rel(
            &format!("{case}: transformers on the merge vs PEFT"),
            t["loss"].as_f64().unwrap(),
            *want,
            1e-5,
        );
    }
}

/// loam's adapters (all-linear, trained by `loam train`) load in PEFT onto transformers'
/// model, every tensor in place, with loam's loss; on the multimodal Gemma 3 PEFT adapts
/// exactly the language model's linears (`target_modules` is a regex that leaves the
/// vision tower's `q_proj` / `fc1` alone).
#[test]
fn peft_loads_loams_adapters_on_the_new_families() {
    for name in ["gemma", "gemma2", "gemma3", "gemma3-mm", "phi3", "smollm3"] {
        let adapter = trained(name).join("adapter");
        let base = family_model(name);
        let peft = oracle(
            "check_peft.py",
            &["--model", s(&base), "--data", s(&text_data()), s(&adapter)],
        );
        let p = &peft[0];
        for field in ["missing", "unexpected", "differ"] {
            assert_eq!(p[field], serde_json::json!([]), "{name}: {p}");
        }
        let (got, tokens) = text_eval(&base, Some(&adapter), 64);
        assert_eq!(p["tokens"], tokens, "{name}");
        assert_rel(
            &format!("{name}: loam vs PEFT on loam's adapter"),
            got,
            p["loss"].as_f64().unwrap(),
            1e-5,
        );
        assert!(
            (got - loam_loss(&base, None)).abs() > 1e-3,
            "{name}: the adapter changes nothing"
        );
    }
    let cfg = read_json(&trained("gemma3-mm").join("adapter/adapter_config.json"));
    let targets = cfg["target_modules"]
        .as_str()
        .expect("a regex string on a multimodal model");
    assert!(
        targets.starts_with(r"model\.language_model\.layers\."),
        "{targets}"
    );
    let weights =
        std::fs::read(trained("gemma3-mm").join("adapter/adapter_model.safetensors")).unwrap();
    let names = SafeTensors::deserialize(&weights).unwrap().names().len();
    // 2 layers × 7 linears × (A, B)
    assert_eq!(names, 28);
}

/// The safetensors tensors of a model directory: name → (dtype, shape, bytes).
fn tensors_of(dir: &Path) -> HashMap<String, (String, Vec<usize>, Vec<u8>)> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let bytes = std::fs::read(&path).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            for (name, view) in st.tensors() {
                out.insert(
                    name,
                    (
                        format!("{:?}", view.dtype()),
                        view.shape().to_vec(),
                        view.data().to_vec(),
                    ),
                );
            }
        }
    }
    out
}

/// `loam merge` of a multimodal Gemma 3 writes a multimodal model: the vision tower and
/// projector byte for byte as they were, the language model merged, and transformers loads
/// it as Gemma3ForConditionalGeneration with the adapter's loss. Both file layouts.
#[test]
fn merging_a_multimodal_gemma3_keeps_its_vision_tower() {
    let adapter = trained("gemma3-mm").join("adapter");
    let dir = temp_dir("families-mm-merge");
    let want = loam_loss(&family_model("gemma3-mm"), Some(&adapter));
    let mut outs = Vec::new();
    for name in ["gemma3-mm", "gemma3-mm-v5names"] {
        let base = family_model(name);
        let out = dir.join(name);
        assert_success(
            &loam(&[
                "merge",
                "--model",
                s(&base),
                "--adapter",
                s(&adapter),
                "--out",
                s(&out),
            ]),
            "loam merge",
        );
        let (before, after) = (tensors_of(&base), tensors_of(&out));
        assert_eq!(
            before.keys().collect::<std::collections::BTreeSet<_>>(),
            after.keys().collect::<std::collections::BTreeSet<_>>(),
            "{name}: the merge has the base's tensors"
        );
        let mut vision = 0;
        for (key, tensor) in &before {
            let language = key.contains("language_model");
            if !language {
                vision += 1;
                assert_eq!(&after[key], tensor, "{name}: `{key}` changed");
            } else if key.contains("self_attn.q_proj") {
                assert_ne!(after[key].2, tensor.2, "{name}: `{key}` was not merged");
            }
        }
        assert!(vision >= 10, "{name}: {vision} vision tensors");
        assert_eq!(
            read_json(&out.join("config.json"))["architectures"][0],
            "Gemma3ForConditionalGeneration"
        );
        assert_rel(
            &format!("{name}: loam eval of the merge"),
            loam_loss(&out, None),
            want,
            1e-5,
        );
        outs.push(out);
    }
    let data = text_data();
    let tf = oracle(
        "check_merge.py",
        &["--data", s(&data), s(&outs[0]), s(&outs[1])],
    );
    for t in &tf {
        assert_eq!(t["class"], "Gemma3ForConditionalGeneration", "{t}");
        assert_rel(
            "transformers on the multimodal merge",
            t["loss"].as_f64().unwrap(),
            want,
            1e-5,
        );
    }
}

/// Every family exports to f32 GGUF and imports back to a model with the same loss (the
/// multimodal one as its language model, a Gemma3ForCausalLM).
#[test]
fn f32_gguf_export_round_trips_through_import_for_every_new_family() {
    let dir = temp_dir("families-gguf-roundtrip");
    for m in family_manifest() {
        let name = m["name"].as_str().unwrap();
        let src = families().join(m["dir"].as_str().unwrap());
        let file = dir.join(name).join("model.gguf");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let out = gguf_export(&src, &file, "f32");
        if name == "smollm3-swa" {
            assert_clean_failure(&out, &["no_rope_layers", "smollm3", "every 4th layer"]);
            continue;
        }
        assert_success(&out, &format!("loam gguf export {name}"));
        let back = dir.join(format!("{name}-back"));
        assert_success(
            &loam(&["gguf", "import", s(&file), "--out", s(&back)]),
            "loam gguf import",
        );
        assert_rel(
            &format!("{name}: imported GGUF vs source"),
            loam_loss(&back, None),
            loam_loss(&src, None),
            1e-5,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// llama.cpp (llama-cpp-python) on loam's f16 exports: transformers' token ids, and the same
/// top-1 next token at ≥ 97% of positions (check_llama_cpp.py), for every family llama.cpp
/// can express exactly (and Qwen3).
#[test]
fn llama_cpp_computes_what_transformers_computes_on_the_f16_exports() {
    let dir = temp_dir("families-llama-cpp");
    let mut checked = Vec::new();
    let mut models: Vec<(String, PathBuf)> = family_manifest()
        .iter()
        .filter(|m| m["llama_cpp"].as_bool().unwrap())
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                families().join(m["dir"].as_str().unwrap()),
            )
        })
        .collect();
    models.push(("qwen3".into(), model("qwen3")));
    for (name, src) in models {
        // one directory each: export writes a Modelfile beside the GGUF
        let file = dir.join(&name).join("model.f16.gguf");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        assert_success(
            &gguf_export(&src, &file, "f16"),
            &format!("loam gguf export {name}"),
        );
        let report = oracle_report("check_llama_cpp.py", &[s(&file), s(&src)]);
        println!("{name}: {}", report.trim());
        checked.push(name);
    }
    for family in [
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3-mm",
        "phi3-longctx",
        "smollm3",
        "qwen3",
    ] {
        assert!(
            checked.iter().any(|n| n == family),
            "{family} not checked: {checked:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// llama.cpp's vocabulary loader special-cases a `general.name` containing `phi3` (and
/// fails without a `</s>` token): a model in a directory so named still loads and computes
/// as transformers does.
#[test]
fn a_directory_named_phi3_does_not_change_what_llama_cpp_does() {
    let dir = temp_dir("families-phi3-name");
    let copy = dir.join("my-phi3-model");
    copy_dir(&family_model("phi3-longctx"), &copy);
    let file = dir.join("phi3.gguf");
    assert_success(&gguf_export(&copy, &file, "f16"), "loam gguf export");
    oracle_report("check_llama_cpp.py", &[s(&file), s(&copy)]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Gemma 1/2's chat template has no system role and raises on one: `loam eval` of a chat
/// dataset stops with one error naming the file, the row and what to do.
#[test]
fn a_gemma_template_refuses_a_system_message_naming_the_row_and_the_fix() {
    let dir = temp_dir("families-gemma-system");
    let model_dir = dir.join("gemma");
    copy_dir(&family_model("gemma"), &model_dir);
    // The tiny model keeps SmolLM2's tokens; only the template is Gemma's.
    let gemma = read_json(&fixtures().join("templates/gemma/tokenizer_config.json"));
    let config_path = model_dir.join("tokenizer_config.json");
    let mut config = read_json(&config_path);
    config["chat_template"] = gemma["chat_template"].clone();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let _ = std::fs::remove_file(model_dir.join("chat_template.jinja"));
    let data = dir.join("chat.parquet");
    let script = format!(
        "import pyarrow as pa, pyarrow.parquet as pq\n\
         m = lambda r, c: {{'role': r, 'content': c}}\n\
         rows = [[m('user', 'Hi'), m('assistant', 'Hello')],\n\
                 [m('system', 'Be brief.'), m('user', 'Hi'), m('assistant', 'Hello')]]\n\
         pq.write_table(pa.table({{'messages': rows}}), {:?})\n",
        s(&data)
    );
    let out = std::process::Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_success(&out, "writing the chat parquet");
    let out = loam(&[
        "eval",
        "--model",
        s(&model_dir),
        "--data",
        s(&data),
        "--format",
        "chat",
        "--column",
        "messages",
        "--dtype",
        "f32",
        "--device",
        "cpu",
    ]);
    // (stderr also carries a warning first: SmolLM2's tokens have no special end of turn)
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert_mentions(
        line,
        &[
            "chat.parquet",
            "row 1",
            "System role not supported",
            "remove the system messages",
            "data.chat_template",
        ],
        "the error",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

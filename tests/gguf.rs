//! End-to-end tests of `loam gguf import | export`.
//!
//! References: transformers' own conversion of SmolLM2's GGUF (`models/smollm2-135m` in the
//! fixtures, see scripts/oracle/fixtures_models.py); scripts/oracle/check_gguf_export.py,
//! which reads exported files with the `gguf` package (and transformers' GGUF loader);
//! llama.cpp itself (llama-cpp-python, scripts/oracle/check_llama_cpp.py) running exports;
//! and GGUFs written by llama.cpp's own converter (scripts/oracle/fixtures_llama_cpp.py).

mod common;
use common::*;

use loam::model::{self, Positions};
use loam_data::Tokenizer;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn smollm2_gguf() -> PathBuf {
    fixtures().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn import(file: &Path, out: &Path) {
    let out = loam(&["gguf", "import", s(file), "--out", s(out)]);
    assert_success(&out, "loam gguf import");
}

fn export(model: &Path, out: &Path, ty: &str) {
    assert_success(&gguf_export(model, out, ty), "loam gguf export");
}

fn eval_loss(model: &Path) -> f64 {
    text_eval(model, None, 256).0
}

fn assert_same_loss(a: f64, b: f64, rel: f64, what: &str) {
    assert!(
        ((a - b) / b).abs() <= rel,
        "{what}: loss {a} vs {b} (rel {:.2e} > {rel:.0e})",
        ((a - b) / b).abs()
    );
}

/// Runs an oracle script, `scripts/oracle/<script> FILE MODEL [extra]`, which must succeed.
fn run_oracle(script: &str, file: &Path, model: &Path, extra: &[&str]) {
    let mut args = vec![s(file), s(model)];
    args.extend_from_slice(extra);
    oracle(script, &args);
}

/// Runs scripts/oracle/check_gguf_export.py on an exported file.
fn check_export(file: &Path, model: &Path, extra: &[&str]) {
    run_oracle("check_gguf_export.py", file, model, extra);
}

/// loam's f32 logits for a model directory on `input_ids` `[B, T]`.
fn loam_logits(dir: &Path, input_ids: &Tensor) -> Tensor {
    let lm = model::load(dir, Kind::Float, Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    let (b, t) = input_ids.size2().unwrap();
    let _guard = tch::no_grad_guard();
    lm.logits(input_ids, &Positions::contiguous(b, t, Device::Cpu))
}

/// transformers' reference for a fixture model (scripts/oracle/fixtures_models.py).
fn expected_logits(name: &str) -> (Tensor, Tensor) {
    let path = fixtures()
        .join("expected")
        .join(name)
        .join("logits.safetensors");
    let mut found: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect();
    (
        found.remove("input_ids").unwrap(),
        found.remove("logits_f32").unwrap(),
    )
}

const TEXTS: &[&str] = &[
    "Hello world! The year 2024 had 366 days.",
    "Mae'r tywydd yn braf heddiw; ŵyr, ŷd a chân.",
    "Привет, мир! Как дела?",
    "日本語のテキストと中文文本。",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "emoji 🤗🚀 café naïve\t\ttabs   spaces\n\n",
    "def f(x):\n    return x ** 2  # 12345",
];

#[test]
fn importing_smollm2_q4_1_equals_transformers_conversion() {
    let dir = temp_dir("import-smollm2");
    let out = dir.join("smollm2");
    import(&smollm2_gguf(), &out);
    let reference = model("smollm2-135m");

    // Every tensor: same names, shapes, and values (both are gguf-py-exact dequantizations).
    let ours = std::fs::read(out.join("model.safetensors")).unwrap();
    let theirs = std::fs::read(reference.join("model.safetensors")).unwrap();
    let (ours, theirs) = (
        SafeTensors::deserialize(&ours).unwrap(),
        SafeTensors::deserialize(&theirs).unwrap(),
    );
    let mut names: Vec<String> = ours.names().into_iter().map(str::to_string).collect();
    let mut expected: Vec<String> = theirs.names().into_iter().map(str::to_string).collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    for name in &names {
        let (a, b) = (ours.tensor(name).unwrap(), theirs.tensor(name).unwrap());
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert_eq!(a.dtype(), b.dtype(), "{name}");
        let max = a
            .data()
            .chunks_exact(4)
            .zip(b.data().chunks_exact(4))
            .map(|(x, y)| {
                let x = f32::from_le_bytes(x.try_into().unwrap());
                let y = f32::from_le_bytes(y.try_into().unwrap());
                (x - y).abs()
            })
            .fold(0f32, f32::max);
        assert!(max <= 1e-5, "{name}: max abs difference {max}");
    }

    // The rebuilt tokenizer gives transformers' ids.
    let (ours, theirs) = (
        Tokenizer::from_model_dir(&out).unwrap(),
        Tokenizer::from_model_dir(&reference).unwrap(),
    );
    for text in TEXTS {
        assert_eq!(
            ours.encode(text, true).unwrap(),
            theirs.encode(text, true).unwrap(),
            "{text:?}"
        );
    }
    assert_eq!(ours.eos_token_id(), theirs.eos_token_id());
    assert_eq!(ours.bos_token_id(), theirs.bos_token_id());

    assert_same_loss(
        eval_loss(&out),
        eval_loss(&reference),
        1e-5,
        "imported vs transformers' conversion",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn f32_export_round_trips_through_import_for_every_family() {
    let dir = temp_dir("roundtrip");
    // llama-gqa has Llama 3.1 rope scaling, qwen2 q/k/v biases, mistral becomes `llama`.
    for name in [
        "llama-gqa",
        "qwen2",
        "mistral",
        "llama-mqa-tied",
        "qwen2-tied",
    ] {
        let src = model(name);
        let file = dir.join(name).join("model.gguf");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        export(&src, &file, "f32");
        assert!(dir.join(name).join("Modelfile").exists());
        check_export(&file, &src, &[]);
        let back = dir.join(format!("{name}-back"));
        import(&file, &back);
        assert_same_loss(eval_loss(&back), eval_loss(&src), 1e-5, name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tiny_models_export_in_every_type() {
    let dir = temp_dir("types");
    for ty in ["f16", "bf16", "q8_0"] {
        for name in ["llama-gqa", "qwen2"] {
            let file = dir.join(format!("{name}-{ty}")).join("model.gguf");
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            export(&model(name), &file, ty);
            check_export(&file, &model(name), &[]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smollm2_q8_0_export_dequantizes_within_tolerance() {
    let dir = temp_dir("smollm2-q8");
    let file = dir.join("smollm2.q8_0.gguf");
    export(&model("smollm2-135m"), &file, "q8_0");
    check_export(&file, &model("smollm2-135m"), &[]);
    let modelfile = std::fs::read_to_string(dir.join("Modelfile")).unwrap();
    assert!(
        modelfile.contains("FROM ./smollm2.q8_0.gguf"),
        "{modelfile}"
    );
    assert!(
        modelfile.contains("PARAMETER stop \"<|im_end|>\""),
        "{modelfile}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smollm2_f16_export_loads_in_transformers_with_the_same_predictions() {
    let dir = temp_dir("smollm2-f16");
    let file = dir.join("smollm2.f16.gguf");
    export(&model("smollm2-135m"), &file, "f16");
    check_export(&file, &model("smollm2-135m"), &["--transformers"]);
    // And back: the f16 round trip stays close to the f32 original.
    let back = dir.join("back");
    import(&file, &back);
    assert_same_loss(
        eval_loss(&back),
        eval_loss(&model("smollm2-135m")),
        1e-3,
        "f16 round trip",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smollm2_f16_export_runs_in_llama_cpp_with_transformers_tokens_and_predictions() {
    let dir = temp_dir("smollm2-llama-cpp");
    let file = dir.join("smollm2.f16.gguf");
    export(&model("smollm2-135m"), &file, "f16");
    // llama.cpp's tokenizer gives transformers' ids on multilingual text, and its logits the
    // same top-1 at >= 97% of positions.
    run_oracle("check_llama_cpp.py", &file, &model("smollm2-135m"), &[]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn llama_cpp_converter_outputs_import_with_transformers_logits() {
    // GGUFs from llama.cpp's own convert_hf_to_gguf.py: for llama-gqa its Llama 3.1 rope
    // scaling is only a rope_freqs.weight tensor, which import turns back into parameters.
    let fixtures = fixtures();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures.join("llama_cpp/manifest.json"))
            .expect("llama.cpp fixtures missing: run scripts/oracle/build.sh"),
    )
    .unwrap();
    let dir = temp_dir("llama-cpp-import");
    let mut names = Vec::new();
    for entry in manifest["models"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let file = fixtures
            .join("llama_cpp")
            .join(entry["gguf"].as_str().unwrap());
        let out = dir.join(name);
        import(&file, &out);
        let (input_ids, reference) = expected_logits(name);
        let diff = (loam_logits(&out, &input_ids) - &reference)
            .abs()
            .max()
            .double_value(&[]);
        eprintln!("{name}: llama.cpp converter → loam import: max-abs logit diff {diff:.2e}");
        assert!(diff <= 1e-4, "{name}: logits differ by {diff:e} (> 1e-4)");
        names.push(name.to_string());
    }
    assert!(names.contains(&"llama-gqa".to_string()), "{names:?}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("llama-gqa/config.json")).unwrap()).unwrap();
    assert_eq!(config["rope_parameters"]["rope_type"], "llama3", "{config}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A GGUF writer with the metadata of a zero-layer llama (no tokens, no tensors yet).
fn tiny_llama_gguf(file: &Path) -> loam_gguf::GgufWriter {
    let mut w = loam_gguf::GgufWriter::new(file);
    w.add_metadata("general.architecture", "llama").unwrap();
    for (k, v) in [
        ("llama.embedding_length", 32u32),
        ("llama.attention.head_count", 2),
        ("llama.block_count", 0),
        ("llama.feed_forward_length", 64),
        ("llama.context_length", 128),
    ] {
        w.add_metadata(k, v).unwrap();
    }
    w.add_metadata("tokenizer.ggml.model", "gpt2").unwrap();
    w
}

#[test]
fn rope_freqs_that_are_not_llama_3_1_scaling_are_a_clear_error() {
    use loam_gguf::GgmlType;
    let dir = temp_dir("bad-rope-freqs");
    let file = dir.join("rope.gguf");
    let mut w = tiny_llama_gguf(&file);
    w.add_metadata("tokenizer.ggml.tokens", vec!["a".to_string()])
        .unwrap();
    w.add_tensor("rope_freqs.weight", &[8], GgmlType::F32)
        .unwrap();
    let mut d = w.start_data().unwrap();
    // Divisors must never decrease from high to low frequencies.
    d.write_tensor_f32(
        "rope_freqs.weight",
        &[1.0, 1.0, 4.0, 2.0, 8.0, 8.0, 8.0, 8.0],
    )
    .unwrap();
    d.finish().unwrap();
    let out = dir.join("out");
    let res = loam(&["gguf", "import", s(&file), "--out", s(&out)]);
    assert_clean_failure(&res, &["rope.gguf", "rope_freqs.weight", "Llama 3.1"]);
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn import_refuses_to_overwrite_without_force() {
    let dir = temp_dir("force");
    let out = dir.join("existing");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let res = loam(&["gguf", "import", s(&smollm2_gguf()), "--out", s(&out)]);
    assert_clean_failure(&res, &["already exists", "--force"]);
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    let res = loam(&[
        "gguf",
        "import",
        s(&smollm2_gguf()),
        "--out",
        s(&out),
        "--force",
    ]);
    assert_success(&res, "import --force");
    assert!(out.join("model.safetensors").exists() && !out.join("keep.txt").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn export_refuses_to_overwrite_without_force() {
    let dir = temp_dir("export-force");
    let file = dir.join("m.gguf");
    std::fs::write(&file, "mine").unwrap();
    let res = loam(&[
        "gguf",
        "export",
        "--model",
        s(&model("qwen2")),
        "--out",
        s(&file),
    ]);
    assert_clean_failure(&res, &["already exists", "--force"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_architecture_is_a_clear_error_with_no_output() {
    let dir = temp_dir("unknown-arch");
    let out = dir.join("out");
    let res = loam(&[
        "gguf",
        "import",
        s(&fixtures().join("gguf/synthetic.gguf")),
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&res, &["loamtest", "llama", "qwen2"]);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "partial output left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_gguf_is_a_clear_error_with_no_output() {
    let dir = temp_dir("corrupt");
    let bytes = std::fs::read(smollm2_gguf()).unwrap();
    let file = dir.join("truncated.gguf");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.join("out");
    let res = loam(&["gguf", "import", s(&file), "--out", s(&out)]);
    assert_clean_failure(&res, &["truncated.gguf"]);
    assert!(!out.exists());
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "partial output left behind: {names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tensor_type_loam_cannot_dequantize_is_named() {
    use loam_gguf::GgmlType;
    let dir = temp_dir("bad-type");
    let file = dir.join("iq4.gguf");
    let mut w = tiny_llama_gguf(&file);
    w.add_metadata(
        "tokenizer.ggml.tokens",
        vec!["a".to_string(), "b".to_string()],
    )
    .unwrap();
    w.add_tensor("token_embd.weight", &[32, 2], GgmlType::IQ4_NL)
        .unwrap();
    w.add_tensor("output_norm.weight", &[32], GgmlType::F32)
        .unwrap();
    let mut d = w.start_data().unwrap();
    let n = GgmlType::IQ4_NL.bytes_for(64).unwrap() as usize;
    d.write_tensor_bytes("token_embd.weight", &vec![0u8; n])
        .unwrap();
    d.write_tensor_f32("output_norm.weight", &[1.0; 32])
        .unwrap();
    d.finish().unwrap();
    let out = dir.join("out");
    let res = loam(&["gguf", "import", s(&file), "--out", s(&out)]);
    assert_clean_failure(&res, &["token_embd.weight", "IQ4_NL"]);
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn export_of_a_4bit_model_or_an_unknown_type_is_a_clear_error() {
    let dir = temp_dir("export-bad");
    let res = loam(&[
        "gguf",
        "export",
        "--model",
        s(&fixtures().join("qlora/models/llama-gqa-bnb-nf4")),
        "--out",
        s(&dir.join("nf4.gguf")),
    ]);
    assert_clean_failure(&res, &["bitsandbytes 4-bit", "--onto-dequantized"]);
    let res = loam(&[
        "gguf",
        "export",
        "--model",
        s(&model("qwen2")),
        "--out",
        s(&dir.join("x.gguf")),
        "--type",
        "q9_9",
    ]);
    assert_clean_failure(&res, &["--type", "q9_9"]);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "partial output left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tokenizer fixtures (scripts/oracle/fixtures_tokenizers.py): name → manifest entry.
fn tokenizer_case(name: &str) -> (PathBuf, serde_json::Value) {
    let root = fixtures();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("tokenizers/manifest.json"))
            .expect("tokenizer fixtures missing: run scripts/oracle/build.sh"),
    )
    .unwrap();
    let case = manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no tokenizer fixture {name}"))
        .clone();
    (root.join(case["dir"].as_str().unwrap()), case)
}

/// Exports a tokenizer fixture's tiny model in f16, checks the tokenizer metadata it was
/// expected to get, imports it back, and has llama.cpp check tokens (against transformers,
/// on the original and the imported tokenizer) and top-1 predictions.
fn tokenizer_round_trip_in_llama_cpp(name: &str, extra: &[&str]) {
    let (src, case) = tokenizer_case(name);
    let dir = temp_dir(&format!("tok-{name}"));
    let file = dir.join("model.f16.gguf");
    export(&src, &file, "f16");
    let f = loam_gguf::GgufFile::open(&file).unwrap();
    assert_eq!(
        f.get_str("tokenizer.ggml.model").unwrap(),
        case["ggml_model"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(
        f.get_str("tokenizer.ggml.pre").unwrap(),
        case["ggml_pre"].as_str().unwrap(),
        "{name}"
    );
    drop(f);
    let back = dir.join("back");
    import(&file, &back);
    let mut args = vec!["--imported", s(&back)];
    args.extend_from_slice(extra);
    run_oracle("check_llama_cpp.py", &file, &src, &args);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gpt2_style_byte_level_tokenizer_runs_in_llama_cpp_as_gpt_2() {
    tokenizer_round_trip_in_llama_cpp("gpt2-bytelevel", &[]);
}

#[test]
fn smollm2_tokenizer_as_transformers_resaves_it_runs_in_llama_cpp() {
    // Plain ByteLevel, no Digits step: the converter's probe hash still names it `smollm`
    // (SmolLM's vocabulary has no multi-digit tokens), never the `gpt2` llama.cpp rejects.
    tokenizer_round_trip_in_llama_cpp("smollm2-resaved", &[]);
}

#[test]
fn llama3_split_tokenizer_runs_in_llama_cpp_as_llama_bpe() {
    tokenizer_round_trip_in_llama_cpp("llama3-split", &[]);
}

#[test]
fn qwen2_split_tokenizer_runs_in_llama_cpp_as_qwen2() {
    tokenizer_round_trip_in_llama_cpp("qwen2-split", &[]);
}

#[test]
fn tekken_split_tokenizer_runs_in_llama_cpp_as_tekken() {
    tokenizer_round_trip_in_llama_cpp("tekken-split", &[]);
}

#[test]
fn sentencepiece_bpe_tokenizer_runs_in_llama_cpp_as_its_llama_model() {
    tokenizer_round_trip_in_llama_cpp("spm-bpe", &[]);
}

#[test]
fn metaspace_sentencepiece_tokenizer_differs_in_llama_cpp_only_before_a_leading_space() {
    // transformers 5's own SentencePiece conversion: llama.cpp adds `▁` before a leading
    // space where the Metaspace pre-tokenizer does not; every other text is identical.
    tokenizer_round_trip_in_llama_cpp("spm-bpe-metaspace", &["--expect-mismatch", " leading"]);
}

#[test]
fn tokenizers_llama_cpp_cannot_express_are_refused_and_nothing_is_written() {
    let dir = temp_dir("tok-refused");
    let (unigram, _) = tokenizer_case("spm-unigram");
    let out = dir.join("u.gguf");
    let res = loam(&["gguf", "export", "--model", s(&unigram), "--out", s(&out)]);
    assert_clean_failure(
        &res,
        &["spm-unigram/tokenizer.json", "Unigram", "byte fallback"],
    );

    // A byte-level BPE whose split no llama.cpp pre-tokenizer reproduces.
    let (gpt2, _) = tokenizer_case("gpt2-bytelevel");
    let odd = dir.join("odd-split");
    std::fs::create_dir_all(&odd).unwrap();
    for entry in std::fs::read_dir(&gpt2).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), odd.join(entry.file_name())).unwrap();
    }
    let path = odd.join("tokenizer.json");
    let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    j["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "[^\\n]+|\\n+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]});
    std::fs::write(&path, j.to_string()).unwrap();
    let out = dir.join("o.gguf");
    let res = loam(&["gguf", "export", "--model", s(&odd), "--out", s(&out)]);
    assert_clean_failure(
        &res,
        &[
            "odd-split/tokenizer.json",
            "no pre-tokenizer",
            "gpt-2, smollm, llama-bpe",
        ],
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("odd-split")],
        "output left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smollm2_quantized_exports_run_in_llama_cpp_within_their_bounds() {
    // Top-1 agreement and mean logit cosine of llama.cpp on loam's export against
    // transformers' f32 model (bounds in the README, below the measured values).
    let dir = temp_dir("smollm2-quant");
    for (ty, agreement, cosine) in QUANT_BOUNDS {
        let file = dir.join(ty).join(format!("smollm2.{ty}.gguf"));
        export(&model("smollm2-135m"), &file, ty);
        run_oracle(
            "check_llama_cpp.py",
            &file,
            &model("smollm2-135m"),
            &["--min-agreement", agreement, "--min-cosine", cosine],
        );
        std::fs::remove_file(&file).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// (type, min top-1 agreement, min mean cosine) for SmolLM2-135M in llama.cpp.
const QUANT_BOUNDS: &[(&str, &str, &str)] = &[
    ("q8_0", "0.90", "0.999"),
    ("q4_1", "0.72", "0.99"),
    ("q4_0", "0.45", "0.94"),
];

/// Trains a small adapter with loam on a tiny fixture model, then has llama.cpp compare the
/// base GGUF + the adapter's LoRA GGUF with loam's merged model exported whole.
fn lora_gguf_matches_the_merged_model(base: &str, rslora: bool) {
    let dir = temp_dir(&format!("lora-gguf-{base}-{rslora}"));
    let recipe = write_recipe(&dir, base);
    let run = dir.join("run");
    let out = loam(&[
        "train",
        s(&recipe),
        "--out",
        s(&run),
        "--set",
        &format!("lora.rslora={rslora}"),
        "--set",
        "lora.dropout=0.0",
        "--set",
        "train.lr=5e-2",
    ]);
    assert_success(&out, "loam train");
    let merged = dir.join("merged");
    let out = loam(&[
        "merge",
        "--model",
        s(&model(base)),
        "--adapter",
        s(&run.join("adapter")),
        "--out",
        s(&merged),
        "--dtype",
        "f32",
    ]);
    assert_success(&out, "loam merge");
    let base_gguf = dir.join("gguf/base.gguf");
    export(&model(base), &base_gguf, "f32");
    let merged_gguf = dir.join("merged.gguf");
    export(&merged, &merged_gguf, "f32");
    let adapter_gguf = dir.join("gguf/adapter.gguf");
    let out = loam(&[
        "gguf",
        "export-adapter",
        "--adapter",
        s(&run.join("adapter")),
        "--model",
        s(&model(base)),
        "--out",
        s(&adapter_gguf),
        "--base-gguf",
        "./base.gguf",
        "--force",
    ]);
    assert_success(&out, "loam gguf export-adapter");
    let f = loam_gguf::GgufFile::open(&adapter_gguf).unwrap();
    assert_eq!(f.get_str("general.type").unwrap(), "adapter");
    assert_eq!(f.get_str("adapter.type").unwrap(), "lora");
    // r 4, alpha 8: llama.cpp's alpha / r must be PEFT's scale, 8/√4 with rsLoRA, 8/4 without.
    let alpha = f.get_f32("adapter.lora.alpha").unwrap();
    assert_eq!(alpha, if rslora { 16.0 } else { 8.0 });
    drop(f);
    let modelfile = std::fs::read_to_string(dir.join("gguf/Modelfile")).unwrap();
    assert_mentions(
        &modelfile,
        &["FROM ./base.gguf\n", "ADAPTER ./adapter.gguf\n"],
        "Modelfile",
    );
    let mut args = vec![s(&merged_gguf), "--max-base-agreement", "0.9"];
    if rslora {
        args.extend(["--rslora-r", "4"]);
    }
    run_oracle("check_llama_cpp_lora.py", &base_gguf, &adapter_gguf, &args);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lora_gguf_applied_by_llama_cpp_predicts_as_the_merged_model() {
    // qwen2: q/k/v biases, no row permutation.
    lora_gguf_matches_the_merged_model("qwen2", false);
}

#[test]
fn rslora_gguf_applied_by_llama_cpp_predicts_as_the_merged_model() {
    // llama: B's rows in llama.cpp's Q/K order; rsLoRA folded into adapter.lora.alpha.
    lora_gguf_matches_the_merged_model("llama-gqa", true);
}

#[test]
fn dora_adapter_is_refused_as_a_gguf_lora_with_nothing_written() {
    let dir = temp_dir("lora-gguf-dora");
    let adapter = fixtures().join("train/peft-trained/llama-dora");
    let out = dir.join("a.gguf");
    let res = loam(&[
        "gguf",
        "export-adapter",
        "--adapter",
        s(&adapter),
        "--model",
        s(&model("llama-gqa")),
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&res, &["use_dora", "loam merge"]);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "output left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

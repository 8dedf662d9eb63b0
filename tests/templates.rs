//! End-to-end: a base model without a chat template gets one of loam's built-in templates,
//! and keeps it everywhere — generation, training, eval with the adapter, the merged model,
//! a GGUF import — with generation stopping on the template's end of turn. transformers
//! reads each directory loam writes as loam does (scripts/oracle/check_chat_dir.py).

mod common;
use common::*;

use loam_data::template::builtin;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The tiny SmolLM2-shaped model as a *base* model ships: no chat template, and
/// generation stopping only on `<|endoftext|>` (id 0), as SmolLM2-135M (not -Instruct) does.
fn base_without_template(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    copy_dir(&model("smollm2-135m"), &base);
    let _ = std::fs::remove_file(base.join("chat_template.jinja"));
    let edit = |file: &str, f: &dyn Fn(&mut Value)| {
        let path = base.join(file);
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
    };
    edit("tokenizer_config.json", &|v| {
        v.as_object_mut().unwrap().remove("chat_template");
        v["eos_token"] = json!("<|endoftext|>");
    });
    edit("generation_config.json", &|v| v["eos_token_id"] = json!(0));
    base
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_base_without_a_template_gets_a_built_in_one_everywhere() {
    let dir = temp_dir("templates");
    let base = base_without_template(&dir);
    let chatml = builtin::by_name("chatml").unwrap();
    let im_end = 2; // <|im_end|> in SmolLM2's vocabulary

    // generate: no template is a clear error naming the flag; --chat-template supplies one
    let prompt = [
        "generate",
        "--model",
        s(&base),
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "3",
    ];
    assert_clean_failure(
        &loam(&prompt),
        &["no chat template", "--chat-template", "chatml"],
    );
    let out = loam(&[&prompt[..], &["--chat-template", "chatml"]].concat());
    assert_success(&out, "loam generate --chat-template chatml");
    let out = loam(&[&prompt[..], &["--chat-template", "chatm"]].concat());
    assert_clean_failure(
        &out,
        &["--chat-template", "chatm", "neither a built-in template"],
    );

    // train: the template the recipe named is saved beside the adapter
    let data = welsh_gettext_data(&dir);
    let run = dir.join("run");
    let recipe = write_chat_recipe(&dir, &base, &data, "", "chat_template = \"chatml\"");
    assert_success(&train(&recipe, &run, &[]), "loam train");
    let adapter = run.join("adapter");
    assert_eq!(
        std::fs::read_to_string(adapter.join("chat_template.jinja")).unwrap(),
        chatml.jinja
    );

    // eval with the adapter uses it (the base alone has none)
    let eval = |adapter: Option<&Path>| {
        let mut args = vec!["eval", "--model", s(&base), "--format", "chat", "--json"];
        let held_out = data.join("eval.parquet");
        args.extend(["--data", s(&held_out)]);
        if let Some(a) = adapter {
            args.extend(["--adapter", s(a)]);
        }
        loam(&args)
    };
    assert_clean_failure(&eval(None), &["no chat template", "chat_template"]);
    assert_success(&eval(Some(&adapter)), "loam eval --adapter");

    // merge installs it: chat_template.jinja, and generation stops on <|im_end|> as well
    let merged = dir.join("merged");
    let out = loam(&[
        "merge",
        "--model",
        s(&base),
        "--adapter",
        s(&adapter),
        "--out",
        s(&merged),
    ]);
    assert_success(&out, "loam merge");
    assert_eq!(
        std::fs::read_to_string(merged.join("chat_template.jinja")).unwrap(),
        chatml.jinja
    );
    assert_eq!(
        read_json(&merged.join("generation_config.json"))["eos_token_id"],
        json!([0, im_end])
    );

    // gguf: a base exported without a template and imported with one; the merged model's
    // GGUF carries the template for llama.cpp and Ollama
    let gguf = dir.join("base.gguf");
    let export = |model: &Path, file: &Path| {
        assert_success(&gguf_export(model, file, "f32"), "loam gguf export");
    };
    export(&base, &gguf);
    let imported_plain = dir.join("imported-plain");
    let out = loam(&["gguf", "import", s(&gguf), "--out", s(&imported_plain)]);
    assert_success(&out, "loam gguf import");
    assert_mentions(
        &stderr(&out),
        &["has no chat template", "--chat-template"],
        "import warning",
    );
    let imported = dir.join("imported");
    let out = loam(&[
        "gguf",
        "import",
        s(&gguf),
        "--out",
        s(&imported),
        "--chat-template",
        "chatml",
    ]);
    assert_success(&out, "loam gguf import --chat-template chatml");
    assert_eq!(
        read_json(&imported.join("generation_config.json"))["eos_token_id"],
        json!([0, im_end])
    );
    let merged_gguf = merged.join("model.gguf"); // its Modelfile beside it
    export(&merged, &merged_gguf);
    let file = loam_gguf::GgufFile::open(&merged_gguf).unwrap();
    assert_eq!(
        file.get_opt::<&str>("tokenizer.chat_template").unwrap(),
        Some(chatml.jinja)
    );

    // transformers renders both directories as loam does, and stops where loam stops
    let messages = json!([
        {"role": "system", "content": "Translate into Welsh."},
        {"role": "user", "content": "Open file"},
        {"role": "assistant", "content": "Agor ffeil"},
    ]);
    let tokenizer = loam_data::Tokenizer::from_model_dir(&merged).unwrap();
    let ours = loam_data::ChatTemplate::from_setting("test", "chatml", &tokenizer).unwrap();
    let msgs: Vec<loam_data::Message> = serde_json::from_value(messages.clone()).unwrap();
    let report = oracle(
        "check_chat_dir.py",
        &[
            "--messages",
            &messages.to_string(),
            s(&merged),
            s(&imported),
        ],
    );
    assert_eq!(report.len(), 2, "{report:?}");
    for r in &report {
        assert_eq!(r["rendered"], ours.render(&msgs, false).unwrap(), "{r}");
        assert_eq!(
            r["rendered_generation_prompt"],
            ours.render(&msgs, true).unwrap(),
            "{r}"
        );
        assert_eq!(r["eos_token_id"], json!([0, im_end]), "{r}");
        assert_eq!(r["model_loads"], true, "{r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! Helpers shared by the end-to-end tests: where the oracle's fixtures and Python are, how
//! to run the `loam` binary, and what a clean failure looks like to a user.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default())
}

/// `$LOAM_FIXTURES` (default `~/.cache/loam/fixtures`); fails the test when the oracle
/// never built them: a reference test must not pass without its reference.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("LOAM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/loam/fixtures"));
    assert!(
        dir.join("manifest.json").exists(),
        "fixtures missing in {}: run scripts/oracle/build.sh",
        dir.display()
    );
    dir
}

/// The oracle environment's Python (`$LOAM_VENV/bin/python`).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("LOAM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/loam/venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "oracle Python missing at {}: run scripts/setup.sh",
        py.display()
    );
    py
}

/// A fixture model directory.
pub fn model(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn loam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loam"))
        .args(args)
        .output()
        .expect("run loam")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", stderr(out));
}

/// A failure as users must see it: non-zero exit, one `error:` message, no panic or backtrace.
pub fn assert_clean_failure(out: &Output, needles: &[&str]) {
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
    assert_mentions(&err, needles, "error");
}

/// `loam gguf export --model MODEL --out OUT --type TY`.
pub fn gguf_export(model: &Path, out: &Path, ty: &str) -> Output {
    loam(&[
        "gguf",
        "export",
        "--model",
        s(model),
        "--out",
        s(out),
        "--type",
        ty,
    ])
}

/// Every needle occurs in `text` (`what` names the text in the failure message).
pub fn assert_mentions(text: &str, needles: &[&str], what: &str) {
    for needle in needles {
        assert!(
            text.contains(needle),
            "{what} should mention `{needle}`: {text}"
        );
    }
}

/// `loam train RECIPE --out OUT EXTRA...`.
pub fn train(recipe: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    loam(&args)
}

pub fn adapter_bytes(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap()
}

pub fn metric_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `scripts/oracle/<script> ARGS` with the oracle Python, which must succeed; returns
/// the JSON objects it printed, one per line.
pub fn oracle(script: &str, args: &[&str]) -> Vec<serde_json::Value> {
    oracle_report(script, args)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Trains `recipe` in `dir` twice: straight, and paused after 3 steps then resumed.
/// Asserts the two adapters are byte-identical; returns both run directories.
pub fn straight_and_resumed(dir: &Path, recipe: &Path, sets: &[&str]) -> (PathBuf, PathBuf) {
    let straight = dir.join("straight");
    let out = train(recipe, &straight, sets);
    assert!(out.status.success(), "{}", stderr(&out));

    let resumed = dir.join("resumed");
    let out = train(recipe, &resumed, &[sets, &["--stop-after", "3"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !resumed.join("adapter").exists(),
        "a paused run writes no final adapter"
    );
    let out = train(recipe, &resumed, &[sets, &["--resume"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(
        adapter_bytes(&straight),
        adapter_bytes(&resumed),
        "resumed adapter differs from the straight run's"
    );
    (straight, resumed)
}

/// Runs `scripts/oracle/<script> ARGS`, which must succeed (its whole output is the failure
/// message otherwise); returns its stdout, also echoed to stderr for the test log.
pub fn oracle_report(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/oracle")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("run the oracle python");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{report}\n{}",
        stderr(&out)
    );
    eprintln!("{}", report.trim());
    report
}

/// `loam eval --json` of `model` (with an adapter when given) on `data` (f32, CPU): the JSON
/// object it printed.
pub fn eval_json(
    model: &Path,
    adapter: Option<&Path>,
    data: &Path,
    seq_len: usize,
) -> serde_json::Value {
    let seq = seq_len.to_string();
    let mut args = vec![
        "eval",
        "--model",
        s(model),
        "--data",
        s(data),
        "--seq-len",
        &seq,
        "--json",
        "--dtype",
        "f32",
        "--device",
        "cpu",
    ];
    if let Some(a) = adapter {
        args.extend_from_slice(&["--adapter", s(a)]);
    }
    let out = loam(&args);
    assert_success(&out, &format!("loam eval {}", model.display()));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// [`eval_json`] on the fixtures' data/text.parquet: (loss, predicted tokens).
pub fn text_eval(model: &Path, adapter: Option<&Path>, seq_len: usize) -> (f64, u64) {
    data_eval(
        model,
        adapter,
        &fixtures().join("data/text.parquet"),
        seq_len,
    )
}

/// `loam eval --json` on the text Parquet `data` (f32, CPU, default --train-on): (loss,
/// predicted tokens).
pub fn data_eval(model: &Path, adapter: Option<&Path>, data: &Path, seq_len: usize) -> (f64, u64) {
    let v = eval_json(model, adapter, data, seq_len);
    (v["loss"].as_f64().unwrap(), v["tokens"].as_u64().unwrap())
}

/// Copies the files of the directory `src` into `dst` (created).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loam-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture root of the families beyond Llama/Mistral/Qwen
/// (scripts/oracle/fixtures_families.py), laid out like [`fixtures`].
pub fn families() -> PathBuf {
    let dir = fixtures().join("families");
    assert!(
        dir.join("manifest.json").exists(),
        "family fixtures missing in {}: run scripts/oracle/build.sh",
        dir.display()
    );
    dir
}

/// A model of [`families`].
pub fn family_model(name: &str) -> PathBuf {
    families().join("models").join(name)
}

/// The `models` of [`families`]' manifest.
pub fn family_manifest() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(families().join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["models"].as_array().unwrap().clone()
}

/// A small but complete training recipe on the tiny fixture model `base`: dropout, shuffle,
/// packing and gradient accumulation all on, an eval split, checkpoints every 2 steps.
pub fn write_recipe(dir: &Path, base: &str) -> PathBuf {
    write_recipe_for(dir, &fixtures().join("models").join(base))
}

/// [`write_recipe`] for the model directory `model`.
pub fn write_recipe_for(dir: &Path, model: &Path) -> PathBuf {
    write_recipe_at(dir, model, &fixtures().join("data/text.parquet"))
}

/// [`write_recipe`] for the model directory `model` and the text Parquet `data`.
pub fn write_recipe_at(dir: &Path, model: &Path, data: &Path) -> PathBuf {
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
seq_len = 32
packing = true
shuffle = true
eval_fraction = 0.2
train_on = "all"
[[data.train]]
path = "{data}"
format = "text"
[train]
steps = 6
micro_batch = 2
grad_accum = 2
lr = 1e-2
warmup = 1
checkpoint_every = 2
eval_every = 3
"#,
        model = model.display(),
        data = data.display(),
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    path
}

/// A recipe training `model` on the chats of `data` (train.parquet, eval.parquet: see
/// [`welsh_gettext_data`]) for 3 steps, with held-out chrF++ / BLEU; `model_keys` and
/// `data_keys` are lines added to `[model]` and `[data]`.
pub fn write_chat_recipe(
    dir: &Path,
    model: &Path,
    data: &Path,
    model_keys: &str,
    data_keys: &str,
) -> PathBuf {
    let path = dir.join("recipe.toml");
    let text = format!(
        r#"
[model]
path = "{model}"
dtype = "f32"
device = "cpu"
{model_keys}
[lora]
r = 4
alpha = 8
targets = "all-linear"
[data]
seq_len = 64
train_on = "assistant"
{data_keys}
[[data.train]]
path = "{train}"
format = "chat"
[[data.eval]]
path = "{eval}"
format = "chat"
[train]
steps = 3
micro_batch = 2
grad_accum = 1
lr = 1e-2
eval_every = 3
eval_generate = 4
eval_max_new_tokens = 8
"#,
        model = model.display(),
        train = data.join("train.parquet").display(),
        eval = data.join("eval.parquet").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `got` within `rel` of `want` (relative), both printed.
pub fn assert_close(what: &str, got: f64, want: f64, rel: f64) {
    println!("{what}: {got:.8} vs {want:.8}");
    assert!(
        ((got - want) / want).abs() <= rel,
        "{what}: {got} vs {want} (rel {:.2e} > {rel:.0e})",
        ((got - want) / want).abs()
    );
}

/// A locale directory as distributions lay it out: `root/<lang>/LC_MESSAGES/<name>.mo`.
pub fn write_catalog(root: &Path, lang: &str, name: &str, pairs: &[(&str, &str)]) -> PathBuf {
    loam_data::gettext::write_catalog(root, lang, name, pairs).unwrap()
}

/// The Welsh catalog `app` of `n` messages `Open file I` → `Agor ffeil I` under `root`.
pub fn write_welsh_catalog(root: &Path, n: usize) -> PathBuf {
    let messages: Vec<(String, String)> = (0..n)
        .map(|i| (format!("Open file {i}"), format!("Agor ffeil {i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = messages
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_catalog(root, "cy", "app", &pairs)
}

/// A Welsh gettext dataset of 40 chats in `dir/data` (train.parquet, eval.parquet with a
/// quarter of them, the dataset card), from a catalog written under `dir/locale`.
pub fn welsh_gettext_data(dir: &Path) -> PathBuf {
    let locale = dir.join("locale");
    write_welsh_catalog(&locale, 40);
    let data = dir.join("data");
    let out = loam(&[
        "data",
        "gettext",
        "--lang",
        "cy",
        "--locale-dir",
        s(&locale),
        "--out",
        s(&data),
        "--eval-fraction",
        "0.25",
    ]);
    assert_success(&out, "loam data gettext");
    data
}

/// How many leading steps of a `common.greedy` answer transformers decided clearly.
pub fn greedy_decided_steps(want: &serde_json::Value, what: &str) -> usize {
    want["decided"].as_u64().unwrap_or_else(|| {
        panic!("{what}: the fixture has no `decided`; run scripts/oracle/build.sh")
    }) as usize
}

/// Whether transformers decided every step of a `common.greedy` answer clearly: then the
/// whole answer, stop included, must be the same. The stop token is a step too.
pub fn greedy_fully_decided(want: &serde_json::Value, what: &str) -> bool {
    let generated = want["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no ids in {want}"))
        .len();
    greedy_decided_steps(want, what) >= generated + usize::from(want["stop"] == "stop_token")
}

/// A `loam generate --json` answer against transformers' greedy one from
/// `common.greedy` (scripts/oracle): the token ids over the steps transformers decided
/// clearly (`decided`: its top logit ahead of the runner-up by `TIE_GAP`), and the stop
/// when every step was. Past a near-tie the two implementations, equal up to f32 rounding
/// that differs by CPU kernel, may rightly part. Returns how many tokens were compared.
pub fn assert_greedy_equal(got: &serde_json::Value, want: &serde_json::Value, what: &str) -> usize {
    let ids = |v: &serde_json::Value, key: &str| -> Vec<u64> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no {key} in {v}"))
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    let (got_ids, want_ids) = (ids(got, "token_ids"), ids(want, "ids"));
    let n = greedy_decided_steps(want, what).min(want_ids.len());
    assert_eq!(
        got_ids.get(..n),
        Some(&want_ids[..n]),
        "{what}: the first {n} greedy tokens (decided clearly by transformers) differ"
    );
    if greedy_fully_decided(want, what) {
        assert_eq!(got_ids, want_ids, "{what}");
        assert_eq!(got["stop"], want["stop"], "{what}: stop");
    }
    n
}

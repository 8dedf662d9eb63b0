//! Test helpers: where the oracle's fixtures are (scripts/oracle/build.sh makes them).

use std::path::PathBuf;

/// `$LOAM_FIXTURES`, default `~/.cache/loam/fixtures`. Panics (failing the test) when the
/// fixtures were never built: a parity test must never pass without its reference.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("LOAM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/loam/fixtures")
        });
    assert!(
        dir.join("manifest.json").exists(),
        "fixtures missing in {}: run scripts/oracle/build.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// Every model the oracle built: (name, directory).
pub fn fixture_models() -> Vec<(String, PathBuf)> {
    models_in(&fixtures())
}

/// The fixture root of the families beyond Llama/Mistral/Qwen (Gemma, Phi-3, SmolLM3;
/// scripts/oracle/fixtures_families.py), laid out like [`fixtures`].
pub fn family_fixtures() -> PathBuf {
    let dir = fixtures().join("families");
    assert!(
        dir.join("manifest.json").exists(),
        "family fixtures missing in {}: run scripts/oracle/build.sh",
        dir.display()
    );
    dir
}

/// Every model of [`family_fixtures`]: (name, directory).
pub fn family_models() -> Vec<(String, PathBuf)> {
    models_in(&family_fixtures())
}

/// The models of the `manifest.json` in `root`: (name, directory).
fn models_in(root: &std::path::Path) -> Vec<(String, PathBuf)> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    manifest["models"]
        .as_array()
        .expect("manifest.json has a `models` list")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                root.join(m["dir"].as_str().unwrap()),
            )
        })
        .collect()
}

//! Finding a model: a local directory, or a hub id (`org/name`) already in the local
//! Hugging Face cache. Nothing is ever downloaded.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Resolves `--model` / `[model] path` to a directory holding `config.json`.
pub fn resolve_model(arg: &str) -> Result<PathBuf> {
    let local = Path::new(arg);
    if local.is_dir() {
        return Ok(local.to_path_buf());
    }
    let caches = cache_dirs();
    if looks_like_hub_id(arg) {
        for cache in &caches {
            if let Some(dir) = snapshot_in(cache, arg) {
                return Ok(dir);
            }
        }
    }
    let looked: Vec<String> = caches.iter().map(|c| c.display().to_string()).collect();
    bail!(
        "model `{arg}` not found: it is not a local directory, and no snapshot of it is in the \
         Hugging Face cache (looked in: {}). Pass a directory holding config.json and \
         *.safetensors, or download it on a machine with internet: `huggingface-cli download {arg}` \
         (then copy the cache or the directory here)",
        if looked.is_empty() { "no cache directory".to_string() } else { looked.join(", ") }
    )
}

fn looks_like_hub_id(arg: &str) -> bool {
    let parts: Vec<&str> = arg.split('/').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != "..")
}

/// `$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub` (the order transformers uses).
fn cache_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("HF_HUB_CACHE") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("HF_HOME") {
        dirs.push(PathBuf::from(d).join("hub"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/huggingface/hub"));
    }
    dirs.dedup();
    dirs
}

/// `<cache>/models--org--name/snapshots/<rev>`: the revision `refs/main` names, else the
/// most recently written snapshot.
fn snapshot_in(cache: &Path, id: &str) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if dir.join("config.json").exists() {
            return Some(dir);
        }
    }
    std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("config.json").exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_snapshot_that_refs_main_names() {
        let cache = std::env::temp_dir().join(format!("loam-hub-{}", std::process::id()));
        let repo = cache.join("models--org--tiny");
        for rev in ["aaa", "bbb"] {
            std::fs::create_dir_all(repo.join("snapshots").join(rev)).unwrap();
            std::fs::write(repo.join("snapshots").join(rev).join("config.json"), "{}").unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "aaa\n").unwrap();
        assert_eq!(
            snapshot_in(&cache, "org/tiny"),
            Some(repo.join("snapshots/aaa"))
        );
        assert_eq!(snapshot_in(&cache, "org/other"), None);
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn a_missing_model_says_where_it_looked_and_how_to_download() {
        let err = resolve_model("nobody/no-such-model-xyz")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nobody/no-such-model-xyz") && err.contains("huggingface-cli download"),
            "{err}"
        );
        assert!(err.contains("looked in"), "{err}");
    }
}

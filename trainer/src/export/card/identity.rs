//! What a model directory is, as cards and GGUF metadata name it: its Hub repo id, display
//! name, licence and languages, and — for a model loam made — the Hub id of its base.
//!
//! The Hub links a model to its base only through a repo id, so a card never names a local
//! path. The id comes from, in order: what the user said (`model.hub_id`, `--base-model-id`);
//! the `--model` argument when it is a hub id found in the local Hugging Face cache; a
//! `models--ORG--NAME` folder of that cache in the directory's path; the directory's own
//! README.md front matter (`loam gguf import` writes one from the GGUF's `general.*` keys).

use super::front_matter;
use anyhow::{bail, Result};
use std::path::Path;

/// The README.md front matter key that says how a directory relates to its `base_model`:
/// `quantized` for a directory that *is* that model, converted (`loam gguf import`);
/// `finetune` / `adapter` / `merge` for one loam trained from it.
pub const RELATION: &str = "base_model_relation";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// The model's own Hub repo id (`HuggingFaceTB/SmolLM2-135M-Instruct`), when known.
    pub hub_id: Option<String>,
    /// A human-readable name (`SmolLM2 135M Instruct`).
    pub name: String,
    /// The family name without size or fine-tune (`SmolLM2`), as GGUF's `general.basename`.
    pub basename: Option<String>,
    /// Who published it (`HuggingFaceTB`): the Hub id's first part, or the README's.
    pub organization: Option<String>,
    /// What a fine-tune is (`cy-lora`), as GGUF's `general.finetune`.
    pub finetune: Option<String>,
    pub tags: Vec<String>,
    /// The Hub licence id (`apache-2.0`).
    pub license: Option<String>,
    pub languages: Vec<String>,
    /// For a model fine-tuned from another: the base's Hub id, and how it relates.
    pub base: Option<(String, String)>,
}

impl Identity {
    /// The identity of `model_dir`, reached through `model_arg` (what the user typed), with
    /// `explicit` (a validated hub id) taking precedence for the id.
    pub fn of(model_dir: &Path, model_arg: &str, explicit: Option<&str>) -> Identity {
        let readme = std::fs::read_to_string(model_dir.join("README.md")).unwrap_or_default();
        let meta = |key: &str| front_matter::read_one(&readme, key);
        let relation = meta(RELATION);
        let base_model = meta("base_model");
        let hub_id = explicit
            .map(str::to_string)
            .or_else(|| {
                (!Path::new(model_arg).exists() && is_hub_id(model_arg))
                    .then(|| model_arg.to_string())
            })
            .or_else(|| hub_cache_id(model_dir))
            .or_else(|| {
                base_model
                    .clone()
                    .filter(|_| relation.as_deref() == Some("quantized"))
            });
        let base = match (relation.as_deref(), &base_model) {
            (Some("finetune" | "adapter" | "merge"), Some(id)) => {
                Some((id.clone(), relation.clone().unwrap_or_default()))
            }
            _ => None,
        };
        let name = meta("model_name")
            .or_else(|| hub_id.as_deref().map(title_of_id))
            .unwrap_or_else(|| dir_name(model_dir));
        let basename = meta("basename").or_else(|| hub_id.as_deref().map(basename_of_id));
        let organization = hub_id
            .as_deref()
            .and_then(|id| id.split_once('/'))
            .map(|(org, _)| org.to_string())
            .or_else(|| meta("organization"));
        Identity {
            hub_id,
            name,
            basename,
            organization,
            finetune: meta("finetune"),
            tags: front_matter::read(&readme, "tags"),
            license: meta("license"),
            languages: front_matter::read(&readme, "language"),
            base,
        }
    }

    /// [`Identity::of`] for a base model cards will name, with `explicit` checked: an error
    /// naming `key` when it is not `org/name`.
    pub fn of_base(
        model_dir: &Path,
        model_arg: &str,
        explicit: Option<&str>,
        key: &str,
    ) -> Result<Identity> {
        if let Some(id) = explicit {
            check_hub_id(id, key)?;
        }
        Ok(Identity::of(model_dir, model_arg, explicit))
    }

    /// The base an adapter was trained on, as its cards name it: `explicit`, else the Hub id
    /// the adapter's config records (`base_model_name_or_path`, when it is one and no such
    /// local path exists), else what [`Identity::of`] finds for `model_dir`.
    pub fn of_adapter_base(
        model_dir: &Path,
        model_arg: &str,
        adapter_dir: &Path,
        explicit: Option<&str>,
        key: &str,
    ) -> Result<Identity> {
        let recorded = crate::adapter::read_config(adapter_dir)?
            .base_model_name_or_path
            .filter(|id| is_hub_id(id) && !Path::new(id).exists());
        Identity::of_base(model_dir, model_arg, explicit.or(recorded.as_deref()), key)
    }

    /// One warning, once the cards are written, when they could not name this base: the
    /// user learns which `key` links them. (Not before: a run that fails on bad input says
    /// only what failed.)
    pub fn warn_if_unlinked(&self, key: &str) {
        if self.hub_id_or_ancestor().is_none() {
            tracing::warn!(
                "the base model's Hugging Face repo id is not known (it is not in the Hugging Face \
                 cache and its README.md does not say), so the cards and GGUF metadata leave \
                 `base_model` out; set {key} = \"ORG/NAME\" to link them to it"
            );
        }
    }

    /// The Hub id a card names as the base of a model trained from this one: its own, or —
    /// for a directory loam made and nobody published (an extended vocabulary, a merge) —
    /// that of the published model it came from.
    pub fn hub_id_or_ancestor(&self) -> Option<&str> {
        self.hub_id
            .as_deref()
            .or(self.base.as_ref().map(|(id, _)| id.as_str()))
    }
}

/// `org/name` as the Hub allows repo ids: letters, digits, `-`, `_`, `.`; neither part
/// empty, starting or ending with `-` or `.`, nor containing `--` or `..`; 96 characters at
/// most.
pub fn is_hub_id(id: &str) -> bool {
    let Some((org, name)) = id.split_once('/') else {
        return false;
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("--")
            && !p.contains("..")
    };
    id.len() <= 96 && part_ok(org) && part_ok(name)
}

/// A hub id the user gave, checked: an error naming `key` when it is not `org/name`.
pub fn check_hub_id(id: &str, key: &str) -> Result<()> {
    if !is_hub_id(id) {
        bail!(
            "{key} = {id:?} is not a Hugging Face repo id: write it as `org/name` (for example \
             `HuggingFaceTB/SmolLM2-135M-Instruct`), letters, digits, `-`, `_` and `.` only"
        );
    }
    Ok(())
}

/// `ORG/NAME` from a `models--ORG--NAME` folder of the Hugging Face cache in the path.
fn hub_cache_id(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.components().rev().find_map(|c| {
        let rest = c.as_os_str().to_str()?.strip_prefix("models--")?;
        let (org, name) = rest.split_once("--")?;
        let id = format!("{org}/{name}");
        is_hub_id(&id).then_some(id)
    })
}

fn dir_name(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".tmp").to_string())
        .unwrap_or_else(|| "model".to_string())
}

/// `SmolLM2 135M Instruct` from `HuggingFaceTB/SmolLM2-135M-Instruct`.
pub fn title_of_id(id: &str) -> String {
    let name = id.rsplit('/').next().unwrap_or(id);
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name's leading parts before the first size (`135M`, `1.7B`, `270m`) or version-like
/// part: `SmolLM2` from `SmolLM2-135M-Instruct`, `gemma` from `gemma-3-270m`.
fn basename_of_id(id: &str) -> String {
    let name = id.rsplit('/').next().unwrap_or(id);
    let is_size_or_version = |p: &str| {
        let digits = p.trim_start_matches(['v', 'V']);
        let body = digits.trim_end_matches(['K', 'M', 'B', 'T', 'k', 'm', 'b', 't']);
        !body.is_empty() && body.chars().all(|c| c.is_ascii_digit() || c == '.')
    };
    let parts: Vec<&str> = name.split('-').collect();
    let keep = parts
        .iter()
        .skip(1)
        .position(|p| is_size_or_version(p))
        .map_or(parts.len(), |i| i + 1);
    parts[..keep].join("-")
}

/// llama.cpp's size label for a parameter count: `135M`, `1.2B`, `494M`.
pub fn size_label(params: u64) -> String {
    let p = params as f64;
    let (scaled, suffix) = if p > 1e12 {
        (p * 1e-12, "T")
    } else if p > 1e9 {
        (p * 1e-9, "B")
    } else if p > 1e6 {
        (p * 1e-6, "M")
    } else {
        (p * 1e-3, "K")
    };
    // At least two significant digits, as the converter writes them.
    let whole_digits = format!("{}", scaled.round() as u64)
        .trim_start_matches('0')
        .len();
    let decimals = 2usize.saturating_sub(whole_digits);
    format!("{scaled:.decimals$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_org_slash_name() {
        for ok in [
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "google/gemma-3-270m",
            "a/b.c_d",
        ] {
            assert!(is_hub_id(ok), "{ok}");
        }
        for bad in [
            "smollm2",
            "/abs/path",
            "a/b/c",
            "a/",
            "-a/b",
            "a/b-",
            "a/b--c",
            "a/b c",
            "./x",
        ] {
            assert!(!is_hub_id(bad), "{bad}");
        }
        let err = check_hub_id("my model", "model.hub_id")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.hub_id") && err.contains("org/name"),
            "{err}"
        );
    }

    #[test]
    fn names_come_from_the_id_as_llama_cpp_writes_them() {
        assert_eq!(
            title_of_id("HuggingFaceTB/SmolLM2-135M-Instruct"),
            "SmolLM2 135M Instruct"
        );
        assert_eq!(
            basename_of_id("HuggingFaceTB/SmolLM2-135M-Instruct"),
            "SmolLM2"
        );
        assert_eq!(basename_of_id("google/gemma-3-270m"), "gemma");
        assert_eq!(basename_of_id("org/Llama"), "Llama");
        assert_eq!(size_label(134_515_008), "135M");
        assert_eq!(size_label(1_235_814_400), "1.2B");
        assert_eq!(size_label(268_098_176), "268M");
        assert_eq!(size_label(7_500), "7.5K");
    }

    #[test]
    fn the_id_comes_from_the_flag_the_cache_path_or_an_imported_readme() {
        let root = std::env::temp_dir().join(format!("loam-identity-{}", std::process::id()));
        let cached = root.join("hub/models--HuggingFaceTB--SmolLM2-135M/snapshots/abc");
        std::fs::create_dir_all(&cached).unwrap();
        let cached_arg = cached.display().to_string();
        let id = Identity::of(&cached, &cached_arg, None);
        assert_eq!(id.hub_id.as_deref(), Some("HuggingFaceTB/SmolLM2-135M"));
        assert_eq!(id.organization.as_deref(), Some("HuggingFaceTB"));
        let id = Identity::of(&cached, &cached_arg, Some("me/other"));
        assert_eq!(id.hub_id.as_deref(), Some("me/other"));

        let imported = root.join("imported");
        std::fs::create_dir_all(&imported).unwrap();
        let readme = "---\nbase_model: \"org/Model-1B\"\nbase_model_relation: \"quantized\"\n\
                      license: \"apache-2.0\"\nlanguage:\n- \"en\"\nmodel_name: \"Model 1B\"\n---\n";
        std::fs::write(imported.join("README.md"), readme).unwrap();
        let imported_arg = imported.display().to_string();
        let id = Identity::of(&imported, &imported_arg, None);
        assert_eq!(id.hub_id.as_deref(), Some("org/Model-1B"));
        assert_eq!(
            (id.name.as_str(), id.license.as_deref()),
            ("Model 1B", Some("apache-2.0"))
        );
        assert_eq!(id.languages, ["en"]);
        assert!(id.base.is_none());

        let merged = root.join("merged");
        std::fs::create_dir_all(&merged).unwrap();
        std::fs::write(
            merged.join("README.md"),
            readme
                .replace("quantized", "finetune")
                .replace("Model 1B", "Model 1B cy"),
        )
        .unwrap();
        let merged_arg = merged.display().to_string();
        let id = Identity::of(&merged, &merged_arg, None);
        assert_eq!(id.hub_id, None, "a fine-tune is not its base");
        assert_eq!(id.base, Some(("org/Model-1B".into(), "finetune".into())));
        assert_eq!(id.hub_id_or_ancestor(), Some("org/Model-1B"));
        assert_eq!(id.name, "Model 1B cy");

        let plain = root.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let id = Identity::of(&plain, "plain", None);
        assert_eq!((id.hub_id, id.name.as_str()), (None, "plain"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}

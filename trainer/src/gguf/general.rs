//! GGUF's `general.*` metadata, as llama.cpp's converter writes it (`gguf-py`'s
//! `Keys.General`), and its round trip through a model directory's README.md front matter:
//! import keeps the GGUF's name, licence, languages and origin there ([`imported_readme`]);
//! export writes them back from it ([`write`]), with the base model's keys for a fine-tune.

use crate::export::card::front_matter::Yaml;
use crate::export::card::identity::{self, Identity, RELATION};
use anyhow::Result;
use loam_gguf::{GgufFile, GgufWriter};
use std::fmt::Write as _;

const HUB: &str = "https://huggingface.co/";

/// `ORG/NAME` from a Hub URL (`https://huggingface.co/ORG/NAME`, with or without a tail).
fn hub_id_of_url(url: &str) -> Option<String> {
    let rest = url.trim().strip_prefix(HUB)?;
    let mut parts = rest.split('/');
    let id = format!("{}/{}", parts.next()?, parts.next()?);
    identity::is_hub_id(&id).then_some(id)
}

/// The model's own Hub id, as the GGUF records where it came from.
fn own_hub_id(f: &GgufFile) -> Option<String> {
    [
        "general.repo_url",
        "general.source.repo_url",
        "general.source.url",
        "general.url",
    ]
    .iter()
    .find_map(|k| f.get_opt::<&str>(k).ok().flatten().and_then(hub_id_of_url))
    .or_else(|| {
        let id = f
            .get_opt::<&str>("general.source.huggingface.repository")
            .ok()
            .flatten()?;
        identity::is_hub_id(id).then(|| id.to_string())
    })
}

/// The README.md of a directory imported from `f` (`file_name`): the GGUF's licence,
/// languages, name, organisation and basename as front matter, and — when the model's Hub id
/// is known (`explicit`, or a Hub URL among the GGUF's keys) — `base_model` with
/// `base_model_relation: quantized`: this directory is that model, converted.
pub fn imported_readme(f: &GgufFile, file_name: &str, explicit: Option<&str>) -> String {
    let get = |k: &str| f.get_opt::<&str>(k).ok().flatten().map(str::to_string);
    let hub_id = explicit.map(str::to_string).or_else(|| own_hub_id(f));
    let name = hub_id
        .as_deref()
        .map(identity::title_of_id)
        .or_else(|| get("general.name"))
        .unwrap_or_else(|| file_name.trim_end_matches(".gguf").to_string());
    let languages: Vec<String> = f
        .get_str_array("general.languages")
        .map(|l| l.into_iter().map(str::to_string).collect())
        .unwrap_or_default();
    let mut yaml = Yaml::default();
    if let Some(id) = &hub_id {
        yaml.scalar("base_model", id);
        yaml.scalar(RELATION, "quantized");
    }
    yaml.maybe("license", get("general.license").as_deref());
    yaml.list("language", &languages);
    yaml.scalar("model_name", &name);
    yaml.maybe("basename", get("general.basename").as_deref());
    yaml.maybe("organization", get("general.organization").as_deref());
    yaml.list("tags", &["gguf-import", "loam"]);
    let mut md = yaml.finish();
    let _ = writeln!(md, "# {name}\n");
    let _ = writeln!(
        md,
        "Imported by `loam gguf import` from the GGUF file `{file_name}`: every tensor \
         dequantized to f32, in the Hugging Face layout. It keeps the rounding of that file's \
         quantization."
    );
    if let Some(id) = &hub_id {
        let _ = writeln!(md, "\nThe model is [{id}]({HUB}{id}).");
    }
    let parents: Vec<String> = (0..f
        .get_opt::<u32>("general.base_model.count")
        .ok()
        .flatten()
        .unwrap_or(0))
        .filter_map(|i| get(&format!("general.base_model.{i}.name")))
        .collect();
    if !parents.is_empty() {
        let _ = writeln!(md, "\nIts GGUF names as its base: {}.", parents.join(", "));
    }
    md
}

/// Writes the `general.*` keys of the model `model` describes (its directory's README.md,
/// [`Identity::of`]), with `params` parameters. `explicit_base` (`--base-model-id`) names
/// the model it was trained from, over what the README says.
pub fn write(
    w: &mut GgufWriter,
    model: &Identity,
    explicit_base: Option<&str>,
    params: u64,
) -> Result<()> {
    w.add_metadata("general.name", model.name.as_str())?;
    if let Some(org) = &model.organization {
        w.add_metadata("general.organization", org.as_str())?;
    }
    if let Some(basename) = &model.basename {
        w.add_metadata("general.basename", basename.as_str())?;
    }
    if let Some(finetune) = &model.finetune {
        w.add_metadata("general.finetune", finetune.as_str())?;
    }
    w.add_metadata("general.size_label", identity::size_label(params).as_str())?;
    if let Some(license) = &model.license {
        w.add_metadata("general.license", license.as_str())?;
    }
    if let Some(id) = &model.hub_id {
        w.add_metadata("general.source.repo_url", format!("{HUB}{id}").as_str())?;
    }
    let base = explicit_base.or(model.base.as_ref().map(|(id, _)| id.as_str()));
    if let Some(base) = base {
        w.add_metadata("general.base_model.count", 1u32)?;
        w.add_metadata(
            "general.base_model.0.name",
            identity::title_of_id(base).as_str(),
        )?;
        if let Some((org, _)) = base.split_once('/') {
            w.add_metadata("general.base_model.0.organization", org)?;
        }
        w.add_metadata(
            "general.base_model.0.repo_url",
            format!("{HUB}{base}").as_str(),
        )?;
    }
    if !model.tags.is_empty() {
        w.add_metadata("general.tags", model.tags.clone())?;
    }
    if !model.languages.is_empty() {
        w.add_metadata("general.languages", model.languages.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_give_repo_ids() {
        assert_eq!(
            hub_id_of_url("https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct").as_deref(),
            Some("HuggingFaceTB/SmolLM2-135M-Instruct")
        );
        assert_eq!(
            hub_id_of_url("https://huggingface.co/google/gemma-3-270m/tree/main").as_deref(),
            Some("google/gemma-3-270m")
        );
        assert_eq!(hub_id_of_url("https://example.org/a/b"), None);
        assert_eq!(hub_id_of_url("https://huggingface.co/justone"), None);
    }
}

//! The dataset card (`README.md`) `loam data gettext` writes beside its Parquet files: the
//! Hub's dataset front matter (`language`, `license` — the set of the catalogs' licences —
//! `task_categories`, `size_categories`, the splits as `configs`), then each catalog used:
//! its text domain, the Debian package that installed it, that package's licence, and the
//! pairs it gave.

use super::front_matter::Yaml;
use anyhow::{Context, Result};
use loam_data::gettext::Dataset;
use loam_data::provenance::Provenance;
use std::fmt::Write as _;
use std::path::Path;

/// The Hub's size bucket for a row count.
fn size_category(rows: usize) -> &'static str {
    match rows {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        _ => "1M<n<10M",
    }
}

/// Writes `README.md` into `dir`, which holds `train.parquet`, `eval.parquet` and, when a
/// dev split was asked for, `dev.parquet`: the card lists the splits whose files are there.
pub fn write(dir: &Path, data: &Dataset, provenance: &Provenance) -> Result<()> {
    let s = &data.summary;
    let mut yaml = Yaml::default();
    yaml.list("language", &provenance.languages);
    yaml.list("license", &provenance.licenses);
    yaml.list("task_categories", &["translation"]);
    yaml.list(
        "size_categories",
        &[size_category(s.train + s.dev + s.eval)],
    );
    yaml.scalar(
        "pretty_name",
        &format!("English to {} from gettext catalogs", data.language),
    );
    yaml.list("tags", &["gettext", "software-localization", "loam"]);
    let dev = if dir.join("dev.parquet").is_file() {
        "  - split: validation\n    path: dev.parquet\n"
    } else {
        ""
    };
    yaml.raw(&format!(
        "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: train.parquet\n\
         {dev}  - split: test\n    path: eval.parquet\n",
    ));
    let left_out: Vec<String> = s
        .skipped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(why, n)| format!("{n} {why}"))
        .chain((s.duplicates > 0).then(|| format!("{} duplicates", s.duplicates)))
        .collect();
    let left_out = if left_out.is_empty() {
        "none".to_string()
    } else {
        left_out.join(", ")
    };
    let mut md = yaml.finish();
    writeln!(md, "# English to {} from gettext catalogs\n", data.language)?;
    writeln!(md, "{}.\n", provenance.description.trim_end_matches('.'))?;
    writeln!(
        md,
        "Built with `loam data gettext --lang {}`: {} train, {} dev and {} held-out pairs (the \
         held-out split, `eval.parquet`, and the dev split for tuning, `dev.parquet`, are \
         chosen by a hash of the English message; near-duplicates fall in the same split). \
         Each row holds the chat (`messages`: the request to translate, \
         the community's translation), the `english` and the `translation`, and the `source` \
         catalogs that gave it. Of {} messages read, left out: {}.\n",
        s.lang, s.train, s.dev, s.eval, s.seen, left_out
    )?;
    writeln!(md, "## Sources\n")?;
    writeln!(
        md,
        "The translations are the work of each program's translators and keep the licence of \
         the package they came in. Licences (as the Hub names them): {}.\n",
        provenance.licenses.join(", ")
    )?;
    writeln!(
        md,
        "| catalog (text domain) | Debian package | licence (its copyright file) | messages | pairs kept |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    for c in &s.catalogs {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            c.domain,
            c.package.as_deref().unwrap_or("not from a Debian package"),
            c.license.as_deref().unwrap_or("unknown"),
            c.messages,
            c.kept
        )?;
    }
    let path = dir.join("README.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))
}

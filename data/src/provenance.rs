//! Where a dataset came from, carried inside its Parquet files (key-value metadata under
//! [`KEY`]), so that `loam train` can name the data's languages, licences and origin in the
//! cards it writes without the user saying it again.

use crate::error::{DataError, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// The Parquet key-value metadata key.
pub const KEY: &str = "loam.provenance";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// What the data is, in one sentence.
    pub description: String,
    /// Language codes of the text, as the Hub's `language` field takes them (`en`, `cy`).
    pub languages: Vec<String>,
    /// The Hub licence ids of the sources (`gpl-2.0`, `lgpl-2.1`, `other`).
    pub licenses: Vec<String>,
    /// Its Hub dataset id, when it is published under one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_id: Option<String>,
    /// What it was built from.
    pub sources: Vec<Origin>,
}

/// One input the data was built from (a gettext catalog).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// Its name (a gettext text domain: `apt`, `gtk30`).
    pub name: String,
    /// The Debian package that installed it, where dpkg knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Its licence as the package's copyright file states it (`GPL-2+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Rows it gave to the data (before deduplication).
    pub rows: usize,
}

impl Provenance {
    /// The provenance stored in a Parquet file, if any.
    pub fn read(path: &Path) -> Result<Option<Provenance>> {
        let bad = |what: String| {
            DataError::file(
                path,
                what,
                "check the file; rebuild it with `loam data gettext`, or remove its loam.provenance metadata",
            )
        };
        let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        let reader =
            SerializedFileReader::new(file).map_err(|e| bad(format!("not a Parquet file: {e}")))?;
        let Some(kv) = reader.metadata().file_metadata().key_value_metadata() else {
            return Ok(None);
        };
        let Some(value) = kv
            .iter()
            .find(|kv| kv.key == KEY)
            .and_then(|kv| kv.value.as_ref())
        else {
            return Ok(None);
        };
        serde_json::from_str(value)
            .map(Some)
            .map_err(|e| bad(format!("its {KEY} metadata is not valid: {e}")))
    }

    /// Several datasets' provenance as one: languages and licences united in first-seen order.
    pub fn union(all: &[Provenance]) -> Option<Provenance> {
        match all {
            [] => None,
            [one] => Some(one.clone()),
            _ => {
                let unite = |f: fn(&Provenance) -> &Vec<String>| {
                    let mut seen = BTreeSet::new();
                    all.iter()
                        .flat_map(|p| f(p).iter())
                        .filter(|s| seen.insert(s.as_str()))
                        .cloned()
                        .collect()
                };
                Some(Provenance {
                    description: all
                        .iter()
                        .map(|p| p.description.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    languages: unite(|p| &p.languages),
                    licenses: unite(|p| &p.licenses),
                    hub_id: None,
                    sources: all.iter().flat_map(|p| p.sources.clone()).collect(),
                })
            }
        }
    }
}

/// A Debian copyright file's licence name (`GPL-2+`, `LGPL-2.1+`, `Expat`) as the Hub's
/// licence id; `other` when the Hub has none for it.
pub fn hub_license(name: &str) -> &'static str {
    let n = name.trim().to_ascii_lowercase();
    let n = n.trim_end_matches('+').trim_end_matches("-or-later");
    let version = |prefix: &str| {
        n.strip_prefix(prefix)
            .map(|v| v.trim_start_matches(['-', ' ']))
    };
    if let Some(v) = version("lgpl") {
        return match v {
            "2.1" => "lgpl-2.1",
            "3" | "3.0" => "lgpl-3.0",
            _ => "lgpl",
        };
    }
    if let Some(v) = version("gpl") {
        return match v {
            "2" | "2.0" => "gpl-2.0",
            "3" | "3.0" => "gpl-3.0",
            _ => "gpl",
        };
    }
    match n {
        "expat" | "mit" => "mit",
        "apache-2.0" | "apache-2" => "apache-2.0",
        "bsd-2-clause" => "bsd-2-clause",
        "bsd-3-clause" => "bsd-3-clause",
        "isc" => "isc",
        "mpl-2.0" => "mpl-2.0",
        "cc0-1.0" | "cc0" => "cc0-1.0",
        "cc-by-sa-3.0" => "cc-by-sa-3.0",
        "cc-by-sa-4.0" => "cc-by-sa-4.0",
        "cc-by-4.0" => "cc-by-4.0",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_licence_names_map_to_hub_ids() {
        assert_eq!(hub_license("GPL-2+"), "gpl-2.0");
        assert_eq!(hub_license("GPL-3.0-or-later"), "gpl-3.0");
        assert_eq!(hub_license("LGPL-2.1+"), "lgpl-2.1");
        assert_eq!(hub_license("LGPL-2+"), "lgpl");
        assert_eq!(hub_license("Expat"), "mit");
        assert_eq!(hub_license("public-domain"), "other");
    }

    #[test]
    fn union_keeps_first_seen_order_without_repeats() {
        let a = Provenance {
            languages: vec!["en".into(), "cy".into()],
            licenses: vec!["gpl-2.0".into()],
            ..Default::default()
        };
        let b = Provenance {
            languages: vec!["en".into(), "ga".into()],
            licenses: vec!["mit".into(), "gpl-2.0".into()],
            ..Default::default()
        };
        let u = Provenance::union(&[a, b]).unwrap();
        assert_eq!(u.languages, ["en", "cy", "ga"]);
        assert_eq!(u.licenses, ["gpl-2.0", "mit"]);
        assert!(Provenance::union(&[]).is_none());
    }
}

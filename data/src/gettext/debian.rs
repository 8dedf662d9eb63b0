//! Which Debian package installed a catalog, and under which licence: dpkg's file lists
//! (`/var/lib/dpkg/info/*.list`) and the package's `/usr/share/doc/PKG/copyright`. Where the
//! system is not Debian-like, or the copyright file names no licence, the answer is `None`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DPKG_INFO: &str = "/var/lib/dpkg/info";
const DOC: &str = "/usr/share/doc";

/// A package's name and licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub license: Option<String>,
}

/// The package of each of `files` that dpkg lists (looked up by the path as given and as
/// resolved through symlinks).
pub fn packages_of(files: &[PathBuf]) -> BTreeMap<PathBuf, Package> {
    packages_in(Path::new(DPKG_INFO), Path::new(DOC), files)
}

fn packages_in(info: &Path, doc: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, Package> {
    let mut wanted: BTreeMap<String, Vec<&PathBuf>> = BTreeMap::new();
    for f in files {
        wanted.entry(f.display().to_string()).or_default().push(f);
        if let Ok(real) = f.canonicalize() {
            wanted
                .entry(real.display().to_string())
                .or_default()
                .push(f);
        }
    }
    let mut found = BTreeMap::new();
    let Ok(lists) = std::fs::read_dir(info) else {
        return found;
    };
    let mut licenses: BTreeMap<String, Option<String>> = BTreeMap::new();
    for list in lists.flatten() {
        let path = list.path();
        if path.extension().is_none_or(|x| x != "list") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        // `libapt-pkg6.0:amd64.list`: the package is the name before the architecture.
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let name = stem.split(':').next().unwrap_or_default().to_string();
        for line in text.lines() {
            for file in wanted.get(line).into_iter().flatten() {
                let license = licenses
                    .entry(name.clone())
                    .or_insert_with(|| copyright_license(&doc.join(&name).join("copyright")))
                    .clone();
                found.insert(
                    (*file).clone(),
                    Package {
                        name: name.clone(),
                        license,
                    },
                );
            }
        }
    }
    found
}

/// The licence a copyright file gives the package as a whole: the `License:` of the
/// `Files: *` paragraph of a machine-readable (DEP-5) file, else a GNU licence named in its
/// prose (`GPL-2+`, `LGPL-2.1+`).
fn copyright_license(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    if text.starts_with("Format:") {
        let mut in_all_files = false;
        for line in text.lines() {
            if line.is_empty() {
                in_all_files = false;
            } else if let Some(files) = line.strip_prefix("Files:") {
                in_all_files = files.trim() == "*";
            } else if let Some(license) = line.strip_prefix("License:") {
                if in_all_files && !license.trim().is_empty() {
                    return Some(license.trim().to_string());
                }
            }
        }
        return None;
    }
    gnu_license_in_prose(&text)
}

fn gnu_license_in_prose(text: &str) -> Option<String> {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let lesser = [
        "GNU Lesser General Public License",
        "GNU Library General Public License",
    ];
    let (at, name) = lesser
        .iter()
        .filter_map(|l| flat.find(l).map(|i| (i, "LGPL")))
        .chain(flat.find("GNU General Public License").map(|i| (i, "GPL")))
        .min()?;
    let after = &flat[at..flat.len().min(at + 300)];
    let version = after.split("version ").nth(1).and_then(|v| {
        let v: String = v
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let v = v.trim_end_matches('.').to_string();
        (!v.is_empty()).then_some(v)
    })?;
    let later = if after.contains("any later version") {
        "+"
    } else {
        ""
    };
    Some(format!("{name}-{version}{later}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_package_and_its_licence_from_dpkg_lists_and_copyright_files() {
        let root = std::env::temp_dir().join(format!("loam-debian-{}", std::process::id()));
        let (info, doc) = (root.join("info"), root.join("doc"));
        for d in [&info, &doc.join("apt"), &doc.join("libgtk2.0-common")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            info.join("apt.list"),
            "/.\n/usr/share/locale/cy/LC_MESSAGES/apt.mo\n",
        )
        .unwrap();
        std::fs::write(
            info.join("libgtk2.0-common:amd64.list"),
            "/usr/share/locale/cy/LC_MESSAGES/gtk20.mo\n",
        )
        .unwrap();
        std::fs::write(
            doc.join("apt/copyright"),
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: apt\n\nFiles: debian/*\nLicense: MIT\n\nFiles: *\nCopyright: 1997 x\n\
             License: GPL-2+\n This is free software.\n",
        )
        .unwrap();
        std::fs::write(
            doc.join("libgtk2.0-common/copyright"),
            "This package was debianized by someone.\n\nLicense:\n\n  This library is free \
             software; you can redistribute it under the terms of the GNU Lesser General\n  \
             Public License as published by the Free Software Foundation; either version 2\n  \
             of the License, or (at your option) any later version.\n",
        )
        .unwrap();
        let apt = PathBuf::from("/usr/share/locale/cy/LC_MESSAGES/apt.mo");
        let gtk = PathBuf::from("/usr/share/locale/cy/LC_MESSAGES/gtk20.mo");
        let other = PathBuf::from("/tmp/elsewhere/x.mo");
        let found = packages_in(&info, &doc, &[apt.clone(), gtk.clone(), other.clone()]);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            found[&apt],
            Package {
                name: "apt".into(),
                license: Some("GPL-2+".into())
            }
        );
        assert_eq!(
            found[&gtk],
            Package {
                name: "libgtk2.0-common".into(),
                license: Some("LGPL-2+".into())
            }
        );
        assert!(!found.contains_key(&other));
    }
}

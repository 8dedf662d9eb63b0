//! Writing outputs so nothing the user had is lost: build under a temporary name, then rename.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Refuses to overwrite `out` unless `force`.
pub fn ensure_new(out: &Path, force: bool) -> Result<()> {
    if out.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it",
            out.display()
        );
    }
    Ok(())
}

/// Copies the files `names` of directory `from` that exist into `to`.
pub fn copy_present(from: &Path, to: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let src = from.join(name);
        if src.exists() {
            std::fs::copy(&src, to.join(name))
                .with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    Ok(())
}

/// Builds the directory `out` under a temporary name: `build` fills `out.tmp`, which replaces
/// `out` when it succeeds and is removed when it fails.
pub fn build_dir<T>(out: &Path, build: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let tmp = PathBuf::from(format!("{}.tmp", out.display()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    match build(&tmp) {
        Ok(built) => {
            replace_dir(&tmp, out)?;
            Ok(built)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Moves the finished directory `tmp` to `dest`, replacing what was there. The old `dest`
/// is moved aside first and removed only once the new one is in place.
pub fn replace_dir(tmp: &Path, dest: &Path) -> Result<()> {
    let old = dest.with_extension("old");
    if dest.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dest, &old)
            .with_context(|| format!("cannot move {} aside", dest.display()))?;
    }
    std::fs::rename(tmp, dest)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dest.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Creates the directory a file is about to be written into, if it is missing.
pub fn create_parent_dir(file: &Path) -> Result<()> {
    match file.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        }
        None => Ok(()),
    }
}

//! Writing outputs so nothing the user had is lost: build under a temporary name, then rename.

use anyhow::{Context, Result};
use std::path::Path;

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

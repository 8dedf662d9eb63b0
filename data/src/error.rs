//! Errors for bad input: every message says what went wrong, where (file, row group, row,
//! column or recipe key) and what to do. Bad input never panics.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a row lives: the file, its row group, and its index (in the row group and in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: Arc<PathBuf>,
    /// Index of the source in the recipe (`[[data.train]]` order).
    pub source: usize,
    /// Index of the file in the source's sorted file list.
    pub file: usize,
    pub row_group: usize,
    pub row_in_group: usize,
    pub row_in_file: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: row {} (row group {}, row {} of the group)",
            self.path.display(),
            self.row_in_file,
            self.row_group,
            self.row_in_group
        )
    }
}

/// A data error. `Display` gives the full, user-facing message.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A whole file (or source path) is unusable: missing, empty, not Parquet, corrupt,
    /// or lacking a column.
    #[error("{}: {what}\n  hint: {hint}", path.display())]
    File {
        path: PathBuf,
        what: String,
        hint: String,
    },
    /// One row is unusable; with `on_error = "skip"` it is skipped and counted instead.
    #[error("{loc}{}: {what}\n  hint: {hint}", column.as_deref().map(|c| format!(", column `{c}`")).unwrap_or_default())]
    Row {
        loc: Location,
        column: Option<String>,
        what: String,
        hint: String,
    },
    /// A recipe key is wrong (unknown, bad value, contradictory).
    #[error("recipe key `{key}`: {what}{}", hint.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Config {
        key: String,
        what: String,
        hint: Option<String>,
    },
    /// Input that is neither a file nor a recipe key: a command's arguments, what a search
    /// found (or did not find).
    #[error("{what}\n  hint: {hint}")]
    Input { what: String, hint: String },
    /// A resume cursor that does not match the data or the recipe.
    #[error("cannot resume: {what}\n  hint: {hint}")]
    Cursor { what: String, hint: String },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub fn file(path: impl AsRef<Path>, what: impl Into<String>, hint: impl Into<String>) -> Self {
        DataError::File {
            path: path.as_ref().to_path_buf(),
            what: what.into(),
            hint: hint.into(),
        }
    }

    pub fn row(
        loc: &Location,
        column: Option<&str>,
        what: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        DataError::Row {
            loc: loc.clone(),
            column: column.map(str::to_string),
            what: what.into(),
            hint: hint.into(),
        }
    }

    pub fn config(key: impl Into<String>, what: impl Into<String>, hint: Option<String>) -> Self {
        DataError::Config {
            key: key.into(),
            what: what.into(),
            hint,
        }
    }

    pub fn input(what: impl Into<String>, hint: impl Into<String>) -> Self {
        DataError::Input {
            what: what.into(),
            hint: hint.into(),
        }
    }

    pub fn cursor(what: impl Into<String>, hint: impl Into<String>) -> Self {
        DataError::Cursor {
            what: what.into(),
            hint: hint.into(),
        }
    }

    /// Whether `on_error = "skip"` may skip this error (a bad row), or it must stop the run.
    pub fn is_row_error(&self) -> bool {
        matches!(self, DataError::Row { .. })
    }
}

/// The hint attached to a row whose content is unusable, naming the skip policy.
pub(crate) const SKIP_HINT: &str =
    "fix or remove the row, or set `on_error = \"skip\"` on this source to skip bad rows (they are counted in `loam data stats`)";

//! The one error type of this crate. Every message says what is wrong and where (file, byte
//! offset, metadata key or tensor name).

use std::path::PathBuf;

use crate::GgmlType;

/// Errors from reading, converting or writing GGUF.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The operating system refused a read, write or rename.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("{}: not a GGUF file (starts with bytes {found:02x?}, expected \"GGUF\")", path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },

    /// GGUF v1 (or a version from the future, or a big-endian file).
    #[error("{}: {msg}", path.display())]
    UnsupportedVersion { path: PathBuf, msg: String },

    /// The bytes contradict the format: truncated, an absurd count or length, a tensor past
    /// the end of the file.
    #[error("{}: corrupt or truncated GGUF at byte {offset}: {msg}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        msg: String,
    },

    /// A tensor info names a type id that ggml does not define (as far as this crate knows).
    #[error(
        "{}: tensor '{tensor}' has unknown ggml type id {id}; known types that loam can \
         dequantize: {}",
        path.display(),
        GgmlType::list(GgmlType::DEQUANTIZABLE)
    )]
    UnknownType {
        path: PathBuf,
        tensor: String,
        id: u32,
    },

    /// A known type that this crate cannot convert (`op` is "dequantize" or "quantize").
    #[error(
        "{context}type {ty} (ggml id {}) cannot be {op}d by loam; supported: {}",
        ty.id(),
        GgmlType::list(if *op == "quantize" { GgmlType::QUANTIZABLE } else { GgmlType::DEQUANTIZABLE })
    )]
    UnsupportedType {
        context: String,
        ty: GgmlType,
        op: &'static str,
    },

    /// A metadata key that must be present is not.
    #[error("{}: metadata key '{key}' not found", path.display())]
    MissingKey { path: PathBuf, key: String },

    /// A metadata value has another type than the caller asked for.
    #[error("{}: metadata key '{key}' is {actual}, expected {expected}", path.display())]
    WrongType {
        path: PathBuf,
        key: String,
        expected: String,
        actual: String,
    },

    /// No tensor by that name.
    #[error("{}: no tensor named '{name}' in the file", path.display())]
    MissingTensor { path: PathBuf, name: String },

    /// A caller passed inconsistent arguments (lengths, shapes, duplicate names, tensors
    /// written out of order).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;

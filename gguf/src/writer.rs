//! Writing GGUF v3 files, streaming tensor data.
//!
//! Two phases, so that no more than one tensor need be in memory at a time:
//!
//! 1. [`GgufWriter`] collects metadata (kept in insertion order) and tensor infos (name,
//!    `ne`, type). Nothing touches the disk yet.
//! 2. [`GgufWriter::start_data`] writes the header, metadata and tensor infos to
//!    `<path>.tmp` and returns a [`GgufDataWriter`], which takes each tensor's data in the
//!    order the infos were added. [`GgufDataWriter::finish`] syncs and renames the file to
//!    `<path>`; dropping the writer before `finish` deletes the temporary file, so a failed
//!    export leaves nothing behind.
//!
//! ```no_run
//! use loam_gguf::{GgmlType, GgufWriter, shape_to_ne};
//! # fn main() -> loam_gguf::Result<()> {
//! let weight = vec![0.5f32; 64 * 32]; // a PyTorch [64, 32] weight
//! let mut w = GgufWriter::new("model.gguf");
//! w.add_metadata("general.architecture", "llama")?;
//! w.add_metadata("llama.block_count", 1u32)?;
//! w.add_tensor("blk.0.attn_q.weight", &shape_to_ne(&[64, 32]), GgmlType::Q8_0)?;
//! let mut data = w.start_data()?;
//! data.write_tensor_f32("blk.0.attn_q.weight", &weight)?; // quantized on the fly
//! data.finish()?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};
use crate::reader::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_DIMS};
use crate::value::Value;
use crate::{quantize_into, GgmlType};

/// llama.cpp rejects tensor names of 64 bytes or more (`GGML_MAX_NAME`).
pub const MAX_TENSOR_NAME: usize = 63;

/// Elements quantized per chunk by [`GgufDataWriter::write_tensor_f32`] (a multiple of every
/// block size).
const CHUNK: usize = 1 << 16;

#[derive(Clone, Debug)]
struct Planned {
    name: String,
    ne: Vec<u64>,
    ggml_type: GgmlType,
    n_elements: u64,
    n_bytes: u64,
}

/// First phase of writing: metadata and tensor infos. See the module docs.
#[derive(Debug)]
pub struct GgufWriter {
    path: PathBuf,
    metadata: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<Planned>,
    names: HashSet<String>,
    alignment: u64,
}

impl GgufWriter {
    /// A writer for `path` (written as `<path>.tmp`, renamed on finish).
    pub fn new(path: impl AsRef<Path>) -> GgufWriter {
        GgufWriter {
            path: path.as_ref().to_path_buf(),
            metadata: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Adds a metadata key/value (written in insertion order). `general.alignment` must be a
    /// `u32` power of two and sets the data alignment. Duplicate keys are an error.
    pub fn add_metadata(&mut self, key: &str, value: impl Into<Value>) -> Result<()> {
        let value = value.into();
        if key.is_empty() {
            return Err(GgufError::Invalid(
                "GGUF metadata keys cannot be empty".into(),
            ));
        }
        if key == ALIGNMENT_KEY {
            match value {
                Value::U32(a) if a.is_power_of_two() => self.alignment = u64::from(a),
                ref v => {
                    return Err(GgufError::Invalid(format!(
                        "{ALIGNMENT_KEY} must be a u32 power of two, got {} {v:?}",
                        v.type_name()
                    )))
                }
            }
        }
        if !self.keys.insert(key.to_string()) {
            return Err(GgufError::Invalid(format!(
                "metadata key '{key}' added twice"
            )));
        }
        self.metadata.push((key.to_string(), value));
        Ok(())
    }

    /// Declares a tensor: its name, its dimensions in GGUF order (innermost first, see
    /// [`crate::shape_to_ne`]) and its type. Data is written later, in declaration order.
    pub fn add_tensor(&mut self, name: &str, ne: &[u64], ggml_type: GgmlType) -> Result<()> {
        let bad = |msg: String| Err(GgufError::Invalid(format!("tensor '{name}': {msg}")));
        if name.is_empty() || name.len() > MAX_TENSOR_NAME {
            return bad(format!(
                "name must be 1 to {MAX_TENSOR_NAME} bytes long (llama.cpp's limit), it is {}",
                name.len()
            ));
        }
        if ne.len() > MAX_DIMS {
            return bad(format!(
                "{} dimensions, ggml allows at most {MAX_DIMS}",
                ne.len()
            ));
        }
        let row = ne.first().copied().unwrap_or(1);
        if row % ggml_type.block_size() as u64 != 0 {
            return bad(format!(
                "rows of {row} elements (ne[0]) are not a multiple of the {ggml_type} block size {}",
                ggml_type.block_size()
            ));
        }
        let n_elements = ne.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let Some(n_bytes) = n_elements.and_then(|n| ggml_type.bytes_for(n)) else {
            return bad(format!("dimensions {ne:?} overflow"));
        };
        if !self.names.insert(name.to_string()) {
            return bad("declared twice".into());
        }
        self.tensors.push(Planned {
            name: name.to_string(),
            ne: ne.to_vec(),
            ggml_type,
            n_elements: n_elements.expect("checked above"),
            n_bytes,
        });
        Ok(())
    }

    /// Writes header, metadata and tensor infos to `<path>.tmp` and returns the writer for
    /// tensor data.
    pub fn start_data(self) -> Result<GgufDataWriter> {
        let tmp_path = tmp_path_for(&self.path);
        let file = File::create(&tmp_path).map_err(|source| GgufError::Io {
            path: tmp_path.clone(),
            source,
        })?;
        let mut w = GgufDataWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            tmp_path,
            path: self.path,
            tensors: self.tensors,
            next: 0,
            alignment: self.alignment,
            pos: 0,
            scratch: Vec::new(),
            finished: false,
        };
        w.write_header(&self.metadata)?;
        Ok(w)
    }
}

fn tmp_path_for(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Second phase of writing: tensor data, in declaration order. See the module docs.
#[derive(Debug)]
pub struct GgufDataWriter {
    out: BufWriter<File>,
    tmp_path: PathBuf,
    path: PathBuf,
    tensors: Vec<Planned>,
    next: usize,
    alignment: u64,
    pos: u64,
    scratch: Vec<u8>,
    finished: bool,
}

impl GgufDataWriter {
    fn io(&self, source: std::io::Error) -> GgufError {
        GgufError::Io {
            path: self.tmp_path.clone(),
            source,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| self.io(e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn put_str(&mut self, s: &str) -> Result<()> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s.as_bytes())
    }

    fn put_value(&mut self, v: &Value) -> Result<()> {
        match v {
            Value::U8(x) => self.put(&x.to_le_bytes()),
            Value::I8(x) => self.put(&x.to_le_bytes()),
            Value::U16(x) => self.put(&x.to_le_bytes()),
            Value::I16(x) => self.put(&x.to_le_bytes()),
            Value::U32(x) => self.put(&x.to_le_bytes()),
            Value::I32(x) => self.put(&x.to_le_bytes()),
            Value::F32(x) => self.put(&x.to_le_bytes()),
            Value::Bool(x) => self.put(&[u8::from(*x)]),
            Value::String(s) => self.put_str(s),
            Value::U64(x) => self.put(&x.to_le_bytes()),
            Value::I64(x) => self.put(&x.to_le_bytes()),
            Value::F64(x) => self.put(&x.to_le_bytes()),
            Value::Array(a) => {
                self.put(&a.elem_type().id().to_le_bytes())?;
                self.put(&(a.len() as u64).to_le_bytes())?;
                a.values().iter().try_for_each(|v| self.put_value(v))
            }
        }
    }

    fn pad(&mut self) -> Result<()> {
        let n = (self.pos.next_multiple_of(self.alignment) - self.pos) as usize;
        self.put(&vec![0u8; n])
    }

    fn write_header(&mut self, metadata: &[(String, Value)]) -> Result<()> {
        self.put(b"GGUF")?;
        self.put(&3u32.to_le_bytes())?;
        self.put(&(self.tensors.len() as u64).to_le_bytes())?;
        self.put(&(metadata.len() as u64).to_le_bytes())?;
        for (key, value) in metadata {
            self.put_str(key)?;
            self.put(&value.value_type().id().to_le_bytes())?;
            self.put_value(value)?;
        }
        let mut offset = 0u64;
        for i in 0..self.tensors.len() {
            let t = self.tensors[i].clone();
            self.put_str(&t.name)?;
            self.put(&(t.ne.len() as u32).to_le_bytes())?;
            for d in &t.ne {
                self.put(&d.to_le_bytes())?;
            }
            self.put(&t.ggml_type.id().to_le_bytes())?;
            self.put(&offset.to_le_bytes())?;
            offset += t.n_bytes.next_multiple_of(self.alignment);
        }
        self.pad()
    }

    /// The name of the tensor whose data must come next, `None` once all are written.
    pub fn next_tensor(&self) -> Option<&str> {
        self.tensors.get(self.next).map(|t| t.name.as_str())
    }

    fn expect_next(&self, name: &str) -> Result<Planned> {
        match self.tensors.get(self.next) {
            Some(t) if t.name == name => Ok(t.clone()),
            Some(t) => Err(GgufError::Invalid(format!(
                "tensor data must be written in declaration order: expected '{}' next, got '{name}'",
                t.name
            ))),
            None => Err(GgufError::Invalid(format!(
                "tensor '{name}': all {} declared tensors are already written",
                self.tensors.len()
            ))),
        }
    }

    /// Writes the next tensor's data as raw bytes of its declared type (any type, e.g. K-quant
    /// blocks copied from another file).
    pub fn write_tensor_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let t = self.expect_next(name)?;
        if bytes.len() as u64 != t.n_bytes {
            return Err(GgufError::Invalid(format!(
                "tensor '{name}' ({} {:?}) takes {} bytes, got {}",
                t.ggml_type,
                t.ne,
                t.n_bytes,
                bytes.len()
            )));
        }
        self.put(bytes)?;
        self.pad()?;
        self.next += 1;
        Ok(())
    }

    /// Writes the next tensor from f32 values (memory order), converting them to its declared
    /// type (one of [`GgmlType::QUANTIZABLE`]) chunk by chunk.
    pub fn write_tensor_f32(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let t = self.expect_next(name)?;
        if data.len() as u64 != t.n_elements {
            return Err(GgufError::Invalid(format!(
                "tensor '{name}' {:?} has {} elements, got {} values",
                t.ne,
                t.n_elements,
                data.len()
            )));
        }
        if !t.ggml_type.can_quantize() {
            return Err(GgufError::UnsupportedType {
                context: format!("tensor '{name}': "),
                ty: t.ggml_type,
                op: "quantize",
            });
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        for chunk in data.chunks(CHUNK) {
            scratch.clear();
            quantize_into(t.ggml_type, chunk, &mut scratch)?;
            self.put(&scratch)?;
        }
        self.scratch = scratch;
        self.pad()?;
        self.next += 1;
        Ok(())
    }

    /// Checks every declared tensor was written, flushes and syncs `<path>.tmp`, and renames
    /// it to `<path>` (replacing any existing file). Returns the final path.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(missing) = self.next_tensor() {
            return Err(GgufError::Invalid(format!(
                "{}: {} of {} declared tensors have no data yet (next: '{missing}')",
                self.path.display(),
                self.tensors.len() - self.next,
                self.tensors.len()
            )));
        }
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&self.tmp_path, &self.path).map_err(|source| GgufError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.finished = true;
        Ok(self.path.clone())
    }
}

impl Drop for GgufDataWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;
    use crate::value::{Array, ValueType};
    use crate::{dequantize, quantize, shape_to_ne, GgufFile};

    fn every_value_type() -> Vec<(&'static str, Value)> {
        vec![
            ("t.u8", Value::U8(200)),
            ("t.i8", Value::I8(-100)),
            ("t.u16", Value::U16(60000)),
            ("t.i16", Value::I16(-30000)),
            ("t.u32", Value::U32(4_000_000_000)),
            ("t.i32", Value::I32(-2_000_000_000)),
            ("t.f32", Value::F32(0.1)),
            ("t.bool", Value::Bool(true)),
            ("t.string", Value::from("héllo ⟨world⟩")),
            ("t.u64", Value::U64(u64::MAX)),
            ("t.i64", Value::I64(i64::MIN)),
            ("t.f64", Value::F64(-1e300)),
            ("t.arr.u8", Value::from(vec![1u8, 2, 3])),
            ("t.arr.i32", Value::from(vec![-1i32, 0, 1])),
            ("t.arr.f32", Value::from(vec![0.5f32, -2.25])),
            ("t.arr.bool", Value::from(vec![true, false])),
            ("t.arr.string", Value::from(vec!["a", "", "ĉ"])),
            ("t.arr.f64", Value::from(vec![1e-300f64])),
            ("t.arr.empty", Value::from(Vec::<u64>::new())),
            (
                "t.arr.nested",
                Value::from(vec![vec!["x", "y"], vec![], vec!["z"]]),
            ),
            (
                "t.arr.nested_i16",
                Value::Array(
                    Array::new(
                        ValueType::Array,
                        vec![Value::from(vec![1i16, -2]), Value::from(vec![3u16])],
                    )
                    .unwrap(),
                ),
            ),
        ]
    }

    #[test]
    fn metadata_of_every_type_round_trips_in_order() {
        let dir = TempDir::new();
        let path = dir.join("meta.gguf");
        let mut w = GgufWriter::new(&path);
        for (k, v) in every_value_type() {
            w.add_metadata(k, v).unwrap();
        }
        w.start_data().unwrap().finish().unwrap();

        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version(), 3);
        let got: Vec<(String, Value)> = f
            .metadata_entries()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let want: Vec<(String, Value)> = every_value_type()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(got, want);
        assert_eq!(f.get_u32("t.u32").unwrap(), 4_000_000_000);
        assert_eq!(f.get_str("t.string").unwrap(), "héllo ⟨world⟩");
        assert_eq!(f.get_str_array("t.arr.string").unwrap(), vec!["a", "", "ĉ"]);
        assert_eq!(f.get_f32_array("t.arr.f32").unwrap(), vec![0.5, -2.25]);
        assert_eq!(f.get_uint_lossless("t.u16").unwrap(), 60000);
        assert_eq!(f.tensors().len(), 0);
    }

    #[test]
    fn typed_getter_errors_name_the_key_and_both_types() {
        let dir = TempDir::new();
        let path = dir.join("meta.gguf");
        let mut w = GgufWriter::new(&path);
        w.add_metadata("llama.block_count", 30u64).unwrap();
        w.start_data().unwrap().finish().unwrap();
        let f = GgufFile::open(&path).unwrap();
        let msg = f.get_u32("llama.block_count").unwrap_err().to_string();
        assert!(
            msg.contains("'llama.block_count'") && msg.contains("is u64, expected u32"),
            "{msg}"
        );
        let msg = f
            .get_str_array("llama.block_count")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("expected array of string"), "{msg}");
        let msg = f.get_str("general.name").unwrap_err().to_string();
        assert!(msg.contains("'general.name' not found"), "{msg}");
        assert!(f.get_opt::<u32>("general.name").unwrap().is_none());
    }

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn tensors_of_every_writable_type_round_trip() {
        let dir = TempDir::new();
        let path = dir.join("tensors.gguf");
        let mut w = GgufWriter::new(&path);
        w.add_metadata("general.alignment", 64u32).unwrap();
        let shape = [3usize, 64]; // PyTorch [rows, cols]
        let mut want = Vec::new();
        for (i, &ty) in GgmlType::QUANTIZABLE.iter().enumerate() {
            let name = format!("w.{}", ty.name().to_lowercase());
            w.add_tensor(&name, &shape_to_ne(&shape), ty).unwrap();
            want.push((name, ty, sample(3 * 64, i as u32)));
        }
        // A K-quant tensor copied as raw bytes.
        let raw: Vec<u8> = (0..2 * 210).map(|i| (i * 7 % 251) as u8).collect();
        w.add_tensor("w.q6_k", &[256, 2], GgmlType::Q6_K).unwrap();
        let mut data = w.start_data().unwrap();
        for (name, _, x) in &want {
            assert_eq!(data.next_tensor(), Some(name.as_str()));
            data.write_tensor_f32(name, x).unwrap();
        }
        data.write_tensor_bytes("w.q6_k", &raw).unwrap();
        assert_eq!(data.finish().unwrap(), path);
        assert!(!dir.join("tensors.gguf.tmp").exists());

        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.data_offset() % 64, 0);
        for (name, ty, x) in &want {
            let t = f.tensor(name).unwrap();
            assert_eq!(
                (t.ggml_type(), t.ne(), t.shape()),
                (*ty, &[64, 3][..], vec![3, 64])
            );
            assert_eq!(t.offset() % 64, 0);
            let bytes = quantize(*ty, x).unwrap();
            assert_eq!(f.tensor_bytes(name).unwrap(), &bytes[..], "{name}");
            let mut expect = vec![0f32; x.len()];
            dequantize(*ty, &bytes, &mut expect).unwrap();
            assert_eq!(f.dequantize(name).unwrap(), expect, "{name}");
        }
        assert_eq!(f.tensor_bytes("w.q6_k").unwrap(), &raw[..]);
    }

    #[test]
    fn misuse_is_a_clear_error_and_leaves_no_file() {
        let dir = TempDir::new();
        let path = dir.join("bad.gguf");
        let mut w = GgufWriter::new(&path);
        let msg = w
            .add_tensor("x", &[30, 2], GgmlType::Q8_0)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("not a multiple of the Q8_0 block size 32"),
            "{msg}"
        );
        let msg = w
            .add_metadata("general.alignment", 48u32)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("power of two"), "{msg}");
        w.add_metadata("k", 1u8).unwrap();
        assert!(w.add_metadata("k", 2u8).is_err());
        let long = "x".repeat(64);
        assert!(w.add_tensor(&long, &[32], GgmlType::F32).is_err());
        w.add_tensor("a", &[32], GgmlType::F32).unwrap();
        w.add_tensor("b", &[32], GgmlType::F16).unwrap();
        let mut data = w.start_data().unwrap();
        assert!(dir.join("bad.gguf.tmp").exists());
        let msg = data
            .write_tensor_f32("b", &[0.0; 32])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("expected 'a' next, got 'b'"), "{msg}");
        let msg = data
            .write_tensor_f32("a", &[0.0; 31])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("has 32 elements, got 31"), "{msg}");
        data.write_tensor_f32("a", &[0.0; 32]).unwrap();
        let msg = data.finish().unwrap_err().to_string();
        assert!(msg.contains("next: 'b'"), "{msg}");
        assert!(!dir.join("bad.gguf.tmp").exists());
        assert!(!path.exists());
    }
}

//! Reading GGUF v2/v3: a memory-mapped file, its metadata and its tensor infos.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count,
//! the metadata key/values, the tensor infos, zero padding to the alignment, then the tensor
//! data. Every count and length is checked against the bytes that remain before anything is
//! allocated, so a corrupt file gives an error, never a panic or a huge allocation.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{GgufError, Result};
use crate::value::{Array, FromValue, Value, ValueType};
use crate::{dequant, shape, GgmlType};

/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: usize = 4;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Metadata key that overrides the alignment (a u32 power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Arrays nested deeper than this are rejected (real files nest at most once).
const MAX_ARRAY_DEPTH: usize = 8;

/// One tensor's description from the file's tensor-info table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    name: String,
    ne: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
    n_elements: u64,
    n_bytes: u64,
}

impl TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dimensions in GGUF / ggml order, innermost (contiguous) first: a PyTorch weight of
    /// shape `[rows, cols]` has `ne = [cols, rows]`.
    pub fn ne(&self) -> &[u64] {
        &self.ne
    }

    /// Dimensions in PyTorch / NumPy order, outermost first (`ne` reversed).
    pub fn shape(&self) -> Vec<usize> {
        shape::ne_to_shape(&self.ne)
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Offset of the tensor's bytes from the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of elements (product of `ne`).
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Number of bytes the tensor's data takes.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }
}

/// A GGUF file opened for reading. Tensor data stays in the memory map and is read on demand.
///
/// The file must not be truncated by another process while open (a property of every
/// memory-mapped reader).
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: Vec<(String, Value)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl GgufFile {
    /// Opens and parses a GGUF v2 or v3 file (little-endian).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 4 {
            return Err(GgufError::BadMagic {
                path,
                found: Vec::new(),
            });
        }
        // SAFETY: the map is read-only; like every mmap reader we rely on the file not being
        // truncated while it is open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = parse(&path, &mmap)?;
        Ok(GgufFile {
            path,
            mmap,
            version: header.version,
            metadata_index: index_of(header.metadata.iter().map(|(k, _)| k.as_str())),
            metadata: header.metadata,
            tensor_index: index_of(header.tensors.iter().map(|t| t.name.as_str())),
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset where the data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata key/values, in file order.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of a metadata key, if present.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A metadata value of exactly type `T`; an error names the key when it is missing or
    /// has another type.
    pub fn get<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<T> {
        self.get_opt(key)?.ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    /// Like [`GgufFile::get`] but `Ok(None)` when the key is absent.
    pub fn get_opt<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<Option<T>> {
        let Some(v) = self.metadata(key) else {
            return Ok(None);
        };
        T::from_value(v)
            .map(Some)
            .ok_or_else(|| GgufError::WrongType {
                path: self.path.clone(),
                key: key.to_string(),
                expected: T::expected(),
                actual: v.type_name(),
            })
    }

    /// A `u8` value. Errors name the key and the expected vs actual type.
    pub fn get_u8(&self, key: &str) -> Result<u8> {
        self.get(key)
    }
    /// An `i8` value.
    pub fn get_i8(&self, key: &str) -> Result<i8> {
        self.get(key)
    }
    /// A `u16` value.
    pub fn get_u16(&self, key: &str) -> Result<u16> {
        self.get(key)
    }
    /// An `i16` value.
    pub fn get_i16(&self, key: &str) -> Result<i16> {
        self.get(key)
    }
    /// A `u32` value.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.get(key)
    }
    /// An `i32` value.
    pub fn get_i32(&self, key: &str) -> Result<i32> {
        self.get(key)
    }
    /// A `u64` value.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get(key)
    }
    /// An `i64` value.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.get(key)
    }
    /// An `f32` value.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get(key)
    }
    /// An `f64` value.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key)
    }
    /// A `bool` value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.get(key)
    }
    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get(key)
    }
    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get(key)
    }
    /// An array of `f32` (`tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.get(key)
    }
    /// An array of `i32` (`tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        self.get(key)
    }
    /// An array of `u32`.
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>> {
        self.get(key)
    }
    /// An array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        self.get(key)
    }
    /// Any non-negative integer type widened to `u64` (for keys whose integer width varies
    /// between converters).
    pub fn get_uint_lossless(&self, key: &str) -> Result<u64> {
        let v = self.metadata(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })?;
        v.as_u64_lossless().ok_or_else(|| GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_string(),
            expected: "a non-negative integer".into(),
            actual: v.type_name(),
        })
    }

    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of the tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// The raw bytes of a tensor (any type), borrowed from the memory map.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.require_tensor(name)?;
        Ok(self.bytes_of(t))
    }

    fn bytes_of(&self, t: &TensorInfo) -> &[u8] {
        if t.n_bytes == 0 {
            return &[];
        }
        // In range: checked against the file length when the file was opened.
        let start = (self.data_offset + t.offset) as usize;
        &self.mmap[start..start + t.n_bytes as usize]
    }

    /// The tensor as f32 values in memory order (reshape with [`TensorInfo::shape`]).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.require_tensor(name)?;
        self.check_dequantizable(t)?;
        let mut out = vec![0f32; t.n_elements as usize];
        dequant::dequantize(t.ggml_type, self.bytes_of(t), &mut out)?;
        Ok(out)
    }

    /// Like [`GgufFile::dequantize`] into a caller's buffer of exactly `n_elements` values.
    pub fn dequantize_into(&self, name: &str, out: &mut [f32]) -> Result<()> {
        let t = self.require_tensor(name)?;
        self.check_dequantizable(t)?;
        if out.len() as u64 != t.n_elements {
            return Err(GgufError::Invalid(format!(
                "tensor '{name}' has {} elements but the output buffer holds {}",
                t.n_elements,
                out.len()
            )));
        }
        dequant::dequantize(t.ggml_type, self.bytes_of(t), out)
    }

    fn check_dequantizable(&self, t: &TensorInfo) -> Result<()> {
        if t.ggml_type.can_dequantize() {
            Ok(())
        } else {
            Err(GgufError::UnsupportedType {
                context: format!("{}: tensor '{}': ", self.path.display(), t.name),
                ty: t.ggml_type,
                op: "dequantize",
            })
        }
    }
}

fn index_of<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    names.enumerate().map(|(i, n)| (n.to_string(), i)).collect()
}

struct Header {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
}

/// Little-endian reader over the mapped bytes; every read checks the remaining length.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn corrupt(&self, offset: usize, msg: impl Into<String>) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_path_buf(),
            offset: offset as u64,
            msg: msg.into(),
        }
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.corrupt(
                self.pos,
                format!(
                    "{} needs {n} bytes but the file has only {} left",
                    what(),
                    self.remaining()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("length checked"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        let bytes = self.take(len, what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Fails unless `count` items of at least `min_size` bytes each can still fit.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<usize> {
        if count > self.remaining() / min_size.max(1) {
            return Err(self.corrupt(
                self.pos,
                format!(
                    "{what} count {count} is impossible: only {} bytes remain in the file",
                    self.remaining()
                ),
            ));
        }
        Ok(count as usize)
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
        let what = || format!("value of metadata key '{key}'");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            // Like ggml and gguf-py: any non-zero byte is true.
            ValueType::Bool => Value::Bool(self.array::<1>(&what)?[0] != 0),
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.corrupt(
                        self.pos,
                        format!(
                            "metadata key '{key}': arrays nested more than {MAX_ARRAY_DEPTH} deep"
                        ),
                    ));
                }
                let at = self.pos;
                let elem_id = self.u32(&|| format!("array type of metadata key '{key}'"))?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                    self.corrupt(
                        at,
                        format!("metadata key '{key}': unknown array element type id {elem_id}"),
                    )
                })?;
                let count = self.u64(&|| format!("array length of metadata key '{key}'"))?;
                let n = self.check_count(
                    count,
                    elem.min_size(),
                    &format!("metadata key '{key}': array"),
                )?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(Array::new_unchecked(elem, values))
            }
        })
    }
}

fn parse(path: &Path, buf: &[u8]) -> Result<Header> {
    let mut c = Cursor { buf, pos: 0, path };
    let magic = c.take(4, &|| "magic".into())?;
    if magic != b"GGUF" {
        return Err(GgufError::BadMagic {
            path: path.to_path_buf(),
            found: magic.to_vec(),
        });
    }
    let version = c.u32(&|| "version".into())?;
    if version & 0xFFFF == 0 && version != 0 {
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            msg: format!(
                "big-endian GGUF (version {}) is not supported; convert it to little-endian \
                 with gguf-py's `gguf-convert-endian FILE little`",
                version.swap_bytes()
            ),
        });
    }
    if version != 2 && version != 3 {
        let hint = if version == 1 {
            "GGUF v1 (2023) is not supported; re-convert the model with a current llama.cpp \
             (`convert_hf_to_gguf.py`) to get v3"
                .to_string()
        } else {
            format!("GGUF version {version} is not supported (loam reads versions 2 and 3)")
        };
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            msg: hint,
        });
    }
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.u64(&|| "metadata count".into())?;
    // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at
    // least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    let n_kv = c.check_count(n_kv, 13, "metadata key/value")?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut seen = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let at = c.pos;
        let key = c.string(&|| format!("key of metadata entry #{i}"))?;
        let ty_id = c.u32(&|| format!("type of metadata key '{key}'"))?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| {
            c.corrupt(
                at,
                format!("metadata key '{key}' has unknown value type id {ty_id}"),
            )
        })?;
        let value = c.value(ty, &key, 0)?;
        if seen.insert(key.clone(), i).is_some() {
            return Err(c.corrupt(at, format!("metadata key '{key}' appears twice")));
        }
        metadata.push((key, value));
    }

    let alignment = match seen.get(ALIGNMENT_KEY).map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(v) => {
            return Err(c.corrupt(
                0,
                format!("{ALIGNMENT_KEY} must be a u32 power of two, found {v:?}"),
            ))
        }
    };

    let n_tensors = c.check_count(n_tensors, 24, "tensor")?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut names = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let at = c.pos;
        let name = c.string(&|| format!("name of tensor #{i}"))?;
        let n_dims = c.u32(&|| format!("dimension count of tensor '{name}'"))?;
        if n_dims as usize > MAX_DIMS {
            return Err(c.corrupt(
                at,
                format!("tensor '{name}' has {n_dims} dimensions; ggml allows at most {MAX_DIMS}"),
            ));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let v = c.u64(&|| format!("dimension {d} of tensor '{name}'"))?;
            if v > i64::MAX as u64 {
                return Err(c.corrupt(at, format!("tensor '{name}' dimension {d} is {v}")));
            }
            ne.push(v);
        }
        let type_id = c.u32(&|| format!("type of tensor '{name}'"))?;
        let offset = c.u64(&|| format!("data offset of tensor '{name}'"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownType {
            path: path.to_path_buf(),
            tensor: name.clone(),
            id: type_id,
        })?;
        let n_elements = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| c.corrupt(at, format!("tensor '{name}' dimensions {ne:?} overflow")))?;
        if ne.first().copied().unwrap_or(1) % ggml_type.block_size() as u64 != 0 {
            return Err(c.corrupt(
                at,
                format!(
                    "tensor '{name}' of type {ggml_type} has rows of {} elements, not a multiple \
                     of the block size {}",
                    ne[0],
                    ggml_type.block_size()
                ),
            ));
        }
        let n_bytes = ggml_type
            .bytes_for(n_elements)
            .ok_or_else(|| c.corrupt(at, format!("tensor '{name}' size overflows")))?;
        if offset % alignment != 0 {
            return Err(c.corrupt(
                at,
                format!("tensor '{name}' data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        if names.insert(name.clone(), i).is_some() {
            return Err(c.corrupt(at, format!("tensor name '{name}' appears twice")));
        }
        tensors.push(TensorInfo {
            name,
            ne,
            ggml_type,
            offset,
            n_elements,
            n_bytes,
        });
    }

    let data_offset = (c.pos as u64).next_multiple_of(alignment);
    let file_len = buf.len() as u64;
    for t in &tensors {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes));
        if t.n_bytes > 0 && end.is_none_or(|e| e > file_len) {
            return Err(GgufError::Corrupt {
                path: path.to_path_buf(),
                offset: data_offset.saturating_add(t.offset),
                msg: format!(
                    "data of tensor '{}' ({} bytes at data offset {}) runs past the end of the \
                     {file_len}-byte file (truncated download?)",
                    t.name, t.n_bytes, t.offset
                ),
            });
        }
    }
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;
    use crate::GgufWriter;

    /// A small valid file: two metadata keys and two tensors (F32 [2, 32], Q8_0 [64]).
    fn valid_file(dir: &TempDir) -> Vec<u8> {
        let path = dir.join("valid.gguf");
        let mut w = GgufWriter::new(&path);
        w.add_metadata("general.architecture", "llama").unwrap();
        w.add_metadata("tokenizer.ggml.tokens", vec!["a", "b"])
            .unwrap();
        w.add_tensor("a", &[32, 2], GgmlType::F32).unwrap();
        w.add_tensor("b", &[64], GgmlType::Q8_0).unwrap();
        let mut d = w.start_data().unwrap();
        d.write_tensor_f32("a", &[1.0; 64]).unwrap();
        d.write_tensor_f32("b", &[127.0; 64]).unwrap(); // d = 1: exact
        d.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    fn open_bytes(dir: &TempDir, bytes: &[u8]) -> Result<GgufFile> {
        let path = dir.join("case.gguf");
        std::fs::write(&path, bytes).unwrap();
        GgufFile::open(&path)
    }

    fn error_of(dir: &TempDir, bytes: &[u8]) -> String {
        open_bytes(dir, bytes).unwrap_err().to_string()
    }

    /// Byte offset of the first occurrence of `needle`.
    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    /// Byte offset of the last occurrence of `needle`.
    fn rfind(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len())
            .rposition(|w| w == needle)
            .unwrap()
    }

    #[test]
    fn valid_file_opens_as_v2_too() {
        let dir = TempDir::new();
        let mut bytes = valid_file(&dir);
        let f = open_bytes(&dir, &bytes).unwrap();
        assert_eq!(f.dequantize("b").unwrap(), vec![127.0; 64]);
        // v2 has the same layout as v3 (v3 only added big-endian support).
        bytes[4] = 2;
        let f = open_bytes(&dir, &bytes).unwrap();
        assert_eq!(f.version(), 2);
        assert_eq!(f.dequantize("a").unwrap(), vec![1.0; 64]);
    }

    #[test]
    fn bad_magic_is_named() {
        let dir = TempDir::new();
        let mut bytes = valid_file(&dir);
        bytes[..4].copy_from_slice(b"PK\x03\x04");
        let msg = error_of(&dir, &bytes);
        assert!(msg.contains("not a GGUF file"), "{msg}");
        assert!(error_of(&dir, b"GG").contains("not a GGUF file"));
        assert!(error_of(&dir, b"").contains("not a GGUF file"));
    }

    #[test]
    fn v1_and_big_endian_files_are_rejected_with_a_hint() {
        let dir = TempDir::new();
        let mut bytes = valid_file(&dir);
        bytes[4] = 1;
        let msg = error_of(&dir, &bytes);
        assert!(
            msg.contains("GGUF v1") && msg.contains("re-convert"),
            "{msg}"
        );
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        let msg = error_of(&dir, &bytes);
        assert!(msg.contains("big-endian"), "{msg}");
        bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
        assert!(error_of(&dir, &bytes).contains("version 7"));
    }

    #[test]
    fn every_truncation_of_the_header_is_an_error_not_a_panic() {
        let dir = TempDir::new();
        let bytes = valid_file(&dir);
        let data_start = open_bytes(&dir, &bytes).unwrap().data_offset() as usize;
        for len in 4..data_start {
            let msg = error_of(&dir, &bytes[..len]);
            assert!(msg.contains("corrupt or truncated"), "len {len}: {msg}");
        }
    }

    #[test]
    fn tensor_data_past_the_end_is_named() {
        let dir = TempDir::new();
        let bytes = valid_file(&dir);
        let msg = error_of(&dir, &bytes[..bytes.len() - 40]);
        assert!(
            msg.contains("tensor 'b'") && msg.contains("runs past the end"),
            "{msg}"
        );
    }

    #[test]
    fn absurd_counts_and_lengths_do_not_allocate() {
        let dir = TempDir::new();
        let bytes = valid_file(&dir);
        // Tensor count, metadata count.
        for at in [8, 16] {
            let mut b = bytes.clone();
            b[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
            let msg = error_of(&dir, &b);
            assert!(msg.contains("is impossible"), "{msg}");
        }
        // Array length of tokenizer.ggml.tokens (after its element type).
        let mut b = bytes.clone();
        let at = find(&b, b"tokenizer.ggml.tokens") + 21 + 4 + 4;
        b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let msg = error_of(&dir, &b);
        assert!(
            msg.contains("'tokenizer.ggml.tokens': array count"),
            "{msg}"
        );
        // String length of the architecture value.
        let mut b = bytes.clone();
        let at = find(&b, b"llama") - 8;
        b[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let msg = error_of(&dir, &b);
        assert!(msg.contains("'general.architecture'"), "{msg}");
    }

    #[test]
    fn unknown_tensor_type_names_tensor_and_id() {
        let dir = TempDir::new();
        let mut b = valid_file(&dir);
        // Tensor info of "b": name, n_dims = 1, ne[0] = 64, then the type id.
        let at = rfind(&b, b"\x01\x00\x00\x00\x00\x00\x00\x00b\x01\x00\x00\x00") + 9 + 4 + 8;
        assert_eq!(b[at], GgmlType::Q8_0.id() as u8);
        b[at] = 99;
        let msg = error_of(&dir, &b);
        assert!(
            msg.contains("tensor 'b'")
                && msg.contains("unknown ggml type id 99")
                && msg.contains("Q4_K"),
            "{msg}"
        );
        // A known type without a dequantizer opens, and says so when dequantized.
        b[at] = GgmlType::IQ4_NL.id() as u8; // same block size and a smaller type size
        let f = open_bytes(&dir, &b).unwrap();
        let msg = f.dequantize("b").unwrap_err().to_string();
        assert!(
            msg.contains("tensor 'b'") && msg.contains("IQ4_NL (ggml id 20)"),
            "{msg}"
        );
    }

    #[test]
    fn missing_tensor_is_named() {
        let dir = TempDir::new();
        let f = open_bytes(&dir, &valid_file(&dir)).unwrap();
        let msg = f.tensor_bytes("nope").unwrap_err().to_string();
        assert!(msg.contains("no tensor named 'nope'"), "{msg}");
    }

    #[test]
    fn random_corruption_never_panics() {
        let dir = TempDir::new();
        let bytes = valid_file(&dir);
        let data_start = open_bytes(&dir, &bytes).unwrap().data_offset() as usize;
        let mut s = 0x2545F4914F6CDD1Du64;
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let at = (s as usize) % data_start;
                b[at] = (s >> 32) as u8;
            }
            if let Ok(f) = open_bytes(&dir, &b) {
                for t in f.tensors() {
                    let _ = f.dequantize(t.name());
                }
            }
        }
    }
}

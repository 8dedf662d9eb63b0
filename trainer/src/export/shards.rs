//! A model's tensors streamed into a new checkpoint: read one at a time from the memory-mapped
//! base, changed by the caller (merged with an adapter, resized), cast, and written shard by
//! shard (`model.safetensors`, or `model-0000i-of-0000N.safetensors` + the index), so only one
//! shard's bytes are ever in memory. `loam merge` and `loam vocab extend` write with it.

use crate::model::quant::bnb;
use crate::weights::{kind_of, Weights};
use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// One tensor of a checkpoint, as its header describes it (a bitsandbytes 4-bit weight as
/// the 16-bit weight it dequantizes to).
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub shape: Vec<i64>,
    pub quantized: bool,
}

/// What was written.
pub struct Written {
    pub shards: usize,
    pub total_bytes: u64,
}

/// Every tensor of the checkpoint in file order (shards as the index lists them, tensors
/// by offset), read from the safetensors headers only.
pub fn list_tensors(dir: &Path) -> Result<Vec<Entry>> {
    // Opening through `Weights` gives its clear errors for a missing or corrupt checkpoint.
    let mut weights = Weights::open(dir)?;
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.exists() {
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index)?)?;
        let mut names: Vec<String> = json["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| dir.join(n)).collect()
    } else {
        vec![dir.join("model.safetensors")]
    };
    let mut entries = Vec::new();
    for path in files {
        let file = std::fs::File::open(&path)?;
        // SAFETY: read-only mapping of a checkpoint loam never writes to.
        let mmap = unsafe { memmap2::Mmap::map(&file) }?;
        let (_, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| {
            anyhow::anyhow!("{} is not a valid safetensors file: {e}", path.display())
        })?;
        let infos = meta.tensors();
        for name in meta.offset_keys() {
            let info = infos[&name];
            let kind = kind_of(info.dtype).with_context(|| {
                format!(
                    "tensor `{name}` in {} has unsupported dtype {:?}",
                    path.display(),
                    info.dtype
                )
            })?;
            let shape = info.shape.iter().map(|&d| d as i64).collect();
            let quantized = bnb::is_quantized(&weights, &name);
            entries.push(Entry {
                name,
                kind,
                shape,
                quantized,
            });
        }
    }
    // A 4-bit weight stands for the 16-bit weight it dequantizes to; the tensors beside it
    // are folded into it.
    let quantized: Vec<String> = entries
        .iter()
        .filter(|e| e.quantized)
        .map(|e| e.name.clone())
        .collect();
    entries.retain(|e| !quantized.iter().any(|w| bnb::is_quant_state_of(&e.name, w)));
    for e in entries.iter_mut().filter(|e| e.quantized) {
        (e.shape, e.kind) = bnb::original_shape_and_dtype(&mut weights, &e.name)?;
    }
    Ok(entries)
}

/// The dtype the base saved its floating tensors in (f32 if it has none).
pub fn saved_dtype(entries: &[Entry]) -> Kind {
    entries
        .iter()
        .map(|e| e.kind)
        .find(|&k| is_float(k))
        .unwrap_or(Kind::Float)
}

/// The dtype a tensor is written in: floating tensors are cast, others kept.
fn out_kind(entry: &Entry, dtype: Kind) -> Kind {
    if is_float(entry.kind) {
        dtype
    } else {
        entry.kind
    }
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
    )
}

/// Groups tensors (in order) into shards of at most `max_bytes` each.
pub fn plan_shards(entries: &[Entry], dtype: Kind, max_bytes: u64) -> Vec<Vec<&Entry>> {
    let mut shards: Vec<Vec<&Entry>> = Vec::new();
    let mut current = 0u64;
    for e in entries {
        let bytes = nbytes(e, dtype);
        match shards.last_mut() {
            Some(shard) if current + bytes <= max_bytes => shard.push(e),
            _ => {
                shards.push(vec![e]);
                current = 0;
            }
        }
        current += bytes;
    }
    shards
}

fn nbytes(e: &Entry, dtype: Kind) -> u64 {
    let numel: i64 = e.shape.iter().product();
    numel as u64 * out_kind(e, dtype).elt_size_in_bytes() as u64
}

/// Writes the tensors `entries` names (with the shapes they will have) from the checkpoint
/// in `model_dir` into `out`, in shards of at most `shard_size` bytes. `change` gets each base
/// tensor as stored (a 4-bit weight dequantized to f32) and returns the tensor to write (of
/// the entry's shape); floating tensors are then cast to `dtype`.
pub fn write_tensors(
    model_dir: &Path,
    entries: &[Entry],
    dtype: Kind,
    shard_size: u64,
    out: &Path,
    mut change: impl FnMut(&Entry, Tensor) -> Result<Tensor>,
) -> Result<Written> {
    let shards = plan_shards(entries, dtype, shard_size);
    let mut weights = Weights::open(model_dir)?;
    let mut weight_map = BTreeMap::new();
    let mut total = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let file = if shards.len() == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len())
        };
        let mut tensors = Vec::with_capacity(shard.len());
        for e in shard {
            let base = if e.quantized {
                bnb::read(&mut weights, &e.name, &e.shape)?.dequantize(Kind::Float)
            } else {
                weights.load(&e.name)?
            };
            let tensor = change(e, base)?;
            if tensor.size() != e.shape {
                bail!(
                    "internal: tensor `{}` is {:?}, planned as {:?}",
                    e.name,
                    tensor.size(),
                    e.shape
                );
            }
            let tensor = tensor.to_kind(out_kind(e, dtype)).contiguous();
            total += nbytes(e, dtype);
            weight_map.insert(e.name.clone(), file.clone());
            tensors.push((e.name.clone(), tensor_bytes(&tensor)?));
        }
        write_safetensors(&tensors, &out.join(&file))?;
    }
    if shards.len() > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        std::fs::write(
            out.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&index)? + "\n",
        )?;
    }
    Ok(Written {
        shards: shards.len(),
        total_bytes: total,
    })
}

/// A tensor's dtype, shape and raw bytes (little-endian, row-major).
type Bytes = (Dtype, Vec<usize>, Vec<u8>);

fn tensor_bytes(t: &Tensor) -> Result<Bytes> {
    let dtype = match t.kind() {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        k => bail!("cannot write a {k:?} tensor to safetensors"),
    };
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut data, numel);
    let shape = t.size().iter().map(|&d| d as usize).collect();
    Ok((dtype, shape, data))
}

fn write_safetensors(tensors: &[(String, Bytes)], path: &Path) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            Ok((
                name.as_str(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // transformers checks this metadata key before loading.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    // The safetensors crate creates the file owner-only; a published model is world-readable.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// `config.json` of `model_dir` written into `out` after `edit` changed its keys.
pub fn write_config(
    model_dir: &Path,
    out: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Result<()> {
    let path = model_dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let obj = config
        .as_object_mut()
        .with_context(|| format!("{} is not a JSON object", path.display()))?;
    edit(obj);
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&config)? + "\n",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_hold_at_most_the_limit_unless_one_tensor_is_larger() {
        let e = |name: &str, n: i64| Entry {
            name: name.into(),
            kind: Kind::Float,
            shape: vec![n],
            quantized: false,
        };
        let entries = [e("a", 10), e("b", 10), e("c", 100), e("d", 5)];
        let shards = plan_shards(&entries, Kind::Float, 80);
        let names: Vec<Vec<&str>> = shards
            .iter()
            .map(|s| s.iter().map(|e| e.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["a", "b"], vec!["c"], vec!["d"]]);
    }
}

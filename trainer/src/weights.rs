//! Checkpoint tensors by name, memory-mapped from safetensors files (single or sharded).
//!
//! Nothing is read whole into RAM: each tensor is copied out of the mapping when the model
//! asks for it, converted to the compute dtype and moved to the device. Every tensor the
//! model takes is ticked off, so an unexpected tensor left over is reported by name.

use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Buffers some checkpoints carry that are recomputed, not learned.
const IGNORED_SUFFIXES: &[&str] = &["rotary_emb.inv_freq"];

pub struct Weights {
    /// One mapping per shard file.
    shards: Vec<(PathBuf, Mmap)>,
    /// Tensor name → index into `shards`.
    index: BTreeMap<String, usize>,
    taken: BTreeSet<String>,
}

impl Weights {
    /// Maps `model.safetensors`, or every shard listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Weights> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.exists() {
            shard_files(&index_path)?
        } else if dir.join("model.safetensors").exists() {
            vec![dir.join("model.safetensors")]
        } else {
            bail!(
                "no weights in {}: expected model.safetensors or model.safetensors.index.json \
                 (loam reads safetensors only; convert .bin checkpoints with transformers' save_pretrained)",
                dir.display()
            );
        };
        let mut weights = Weights {
            shards: Vec::new(),
            index: BTreeMap::new(),
            taken: BTreeSet::new(),
        };
        for path in files {
            let file =
                File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            // SAFETY: the file is opened read-only; loam never writes to a base checkpoint
            // while it is mapped.
            let mmap = unsafe { Mmap::map(&file) }
                .with_context(|| format!("cannot map {}", path.display()))?;
            let names = SafeTensors::read_metadata(&mmap)
                .map_err(|e| {
                    anyhow::anyhow!("{} is not a valid safetensors file: {e}", path.display())
                })?
                .1
                .tensors()
                .into_keys()
                .collect::<Vec<_>>();
            let shard = weights.shards.len();
            for name in names {
                if let Some(other) = weights.index.insert(name.clone(), shard) {
                    bail!(
                        "tensor `{name}` is in both {} and {}",
                        weights.shards[other].0.display(),
                        path.display()
                    );
                }
            }
            weights.shards.push((path, mmap));
        }
        Ok(weights)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The tensor `name`, checked against `shape`, as `kind` on `device`.
    pub fn get(&mut self, name: &str, shape: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        // On the CPU the file's bytes are converted straight into `kind`: one copy, where a
        // copy and then a conversion would hold both at once (a bf16 embedding loaded as f32:
        // 1.5 GB instead of 1 GB at the peak of loading Llama-3.2-1B).
        let tensor = self.read(name, (device == Device::Cpu).then_some(kind))?;
        if tensor.size() != shape {
            bail!(
                "tensor `{name}` in {} has shape {:?}, but the model's config.json implies {:?}",
                self.file_of(name).display(),
                tensor.size(),
                shape
            );
        }
        Ok(tensor.to_device(device).to_kind(kind))
    }

    /// The tensor `name` as stored (dtype and shape of the file), on the CPU.
    pub fn load(&mut self, name: &str) -> Result<Tensor> {
        self.read(name, None)
    }

    /// The tensor `name` on the CPU, in the file's dtype or converted to `convert`.
    fn read(&mut self, name: &str, convert: Option<Kind>) -> Result<Tensor> {
        let &shard = self.index.get(name).with_context(|| {
            format!("tensor `{name}` is missing from the checkpoint (the config.json asks for it)")
        })?;
        let (path, mmap) = &self.shards[shard];
        let st = SafeTensors::deserialize(mmap).map_err(|e| {
            anyhow::anyhow!("{} is not a valid safetensors file: {e}", path.display())
        })?;
        let view = st
            .tensor(name)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let kind = kind_of(view.dtype()).with_context(|| {
            format!(
                "tensor `{name}` in {} has unsupported dtype {:?}",
                path.display(),
                view.dtype()
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        self.taken.insert(name.to_string());
        let data = view.data();
        let tensor = match convert {
            Some(to)
                if to != kind
                    && (data.as_ptr() as usize).is_multiple_of(kind.elt_size_in_bytes()) =>
            {
                // SAFETY: `data` is a live, aligned view of the mapping holding `shape` values
                // of `kind`; the blob tensor is only read by the conversion, which copies.
                let blob =
                    unsafe { Tensor::from_blob(data.as_ptr(), &shape, &[], kind, Device::Cpu) };
                blob.to_kind(to)
            }
            _ => Tensor::from_data_size(data, &shape, kind),
        };
        // The tensor is a copy: hand the file's pages back, or every checkpoint byte read
        // stays in this process's resident memory next to the converted model (training
        // SmolLM2 in bf16 with checkpointing: peak RSS 1.36 → 1.19 GB).
        #[cfg(unix)]
        {
            let offset = view.data().as_ptr() as usize - mmap.as_ptr() as usize;
            // SAFETY: a read-only shared file mapping; dropped pages are read again from
            // the file if touched, and nothing borrowed from this range outlives the copy.
            let _ = unsafe {
                mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    offset,
                    view.data().len(),
                )
            };
        }
        Ok(tensor)
    }

    /// Marks `name` as used without loading it (e.g. a tied `lm_head.weight` duplicate).
    pub fn skip(&mut self, name: &str) {
        self.taken.insert(name.to_string());
    }

    /// Errors when the checkpoint holds tensors the model never asked for.
    pub fn ensure_all_used(&self) -> Result<()> {
        let unused: Vec<&String> = self
            .index
            .keys()
            .filter(|n| {
                !self.taken.contains(*n) && !IGNORED_SUFFIXES.iter().any(|s| n.ends_with(s))
            })
            .collect();
        if let Some(first) = unused.first() {
            bail!(
                "unexpected tensor `{first}` in {} ({} unused in all): the checkpoint does not match its config.json",
                self.file_of(first).display(),
                unused.len()
            );
        }
        Ok(())
    }

    fn file_of(&self, name: &str) -> &Path {
        self.index
            .get(name)
            .map(|&i| self.shards[i].0.as_path())
            .unwrap_or(Path::new("?"))
    }
}

fn shard_files(index_path: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read_to_string(index_path)
        .with_context(|| format!("cannot read {}", index_path.display()))?;
    let index: Index = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a valid safetensors index (needs `weight_map`)",
            index_path.display()
        )
    })?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let files: BTreeSet<&String> = index.weight_map.values().collect();
    let paths: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        bail!(
            "shard {} listed in {} does not exist",
            missing.display(),
            index_path.display()
        );
    }
    Ok(paths)
}

pub fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        // bitsandbytes' packed 4-bit codes and scales (see model::quant::bnb)
        Dtype::U8 => Kind::Uint8,
        _ => return None,
    })
}

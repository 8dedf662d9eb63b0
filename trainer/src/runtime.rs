//! Where and in what precision tensors live: `device = auto|cpu|cuda|cuda:N`,
//! `dtype = f32|bf16|f16`.

use anyhow::{bail, Result};
use tch::{Device, Kind};

pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => cuda(0)?,
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n)?,
            _ => bail!("unknown device `{s}`; use auto, cpu, cuda or cuda:N"),
        },
    })
}

fn cuda(n: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if n >= count {
        bail!("device cuda:{n} asked for, but this machine has {count} CUDA device(s); use device = \"auto\" or \"cpu\"");
    }
    Ok(Device::Cuda(n))
}

pub fn parse_dtype(s: &str) -> Result<Kind> {
    Ok(match s {
        "f32" | "float32" => Kind::Float,
        "bf16" | "bfloat16" => Kind::BFloat16,
        "f16" | "float16" => Kind::Half,
        _ => bail!("unknown dtype `{s}`; use f32, bf16 or f16"),
    })
}

/// Name of a compute dtype as the CLI and recipes spell it.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        _ => "f32",
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), e.g. "1.2 GiB".
pub fn peak_rss_human() -> String {
    let kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        });
    match kib {
        Some(k) if k >= 1024.0 * 1024.0 => format!("{:.2} GiB", k / 1024.0 / 1024.0),
        Some(k) => format!("{:.0} MiB", k / 1024.0),
        None => "unknown".into(),
    }
}

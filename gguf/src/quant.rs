//! Quantization from f32, bit-identical to ggml's reference `quantize_row_*_ref`
//! (ggml-quants.c) and to gguf-py's `gguf.quants.quantize`:
//! - Q8_0: `d = amax / 127`, `q = round(x · (1/d))` (round half away from zero), d stored f16.
//! - Q4_0 / Q5_0: `d = max / −8` (resp. −16) where `max` is the value of largest magnitude,
//!   `q = min(15, trunc(x · (1/d) + 8.5))` (resp. 31, 16.5).
//! - Q4_1 / Q5_1: `d = (max − min) / 15` (resp. 31), `q = min(15, trunc((x − min) · (1/d) + 0.5))`.
//! - F16: round to nearest even (overflow to ±inf); BF16: round to nearest even, NaN kept quiet.
//!
//! Note the scale is applied as `x · (1/d)` with the f32 `d` (not its f16 rounding), exactly
//! as ggml does, which is what makes the bytes match.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::error::{GgufError, Result};
use crate::GgmlType;

/// Quantizes `data` to type `ty` and returns the bytes. `data.len()` must be a multiple of
/// the block size.
pub fn quantize(ty: GgmlType, data: &[f32]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    quantize_into(ty, data, &mut out)?;
    Ok(out)
}

/// Quantizes `data` to type `ty`, appending the bytes to `out` (reuse `out` across calls to
/// avoid allocations).
pub fn quantize_into(ty: GgmlType, data: &[f32], out: &mut Vec<u8>) -> Result<()> {
    if !ty.can_quantize() {
        return Err(GgufError::UnsupportedType {
            context: String::new(),
            ty,
            op: "quantize",
        });
    }
    let n_bytes = ty.bytes_for(data.len() as u64).ok_or_else(|| {
        GgufError::Invalid(format!(
            "cannot quantize {} values to {ty}: not a multiple of its block size {}",
            data.len(),
            ty.block_size()
        ))
    })? as usize;
    let start = out.len();
    out.resize(start + n_bytes, 0);
    let dst = &mut out[start..];
    let kernel: fn(&[f32], &mut [u8]) = match ty {
        GgmlType::F32 => f32s,
        GgmlType::F16 => f16s,
        GgmlType::BF16 => bf16s,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        _ => unreachable!("can_quantize lists exactly the types handled here"),
    };
    if ty.block_size() == 1 {
        // Element-wise types convert the whole slice at once.
        kernel(data, dst);
    } else {
        for (x, b) in data
            .chunks_exact(ty.block_size())
            .zip(dst.chunks_exact_mut(ty.type_size()))
        {
            kernel(x, b);
        }
    }
    Ok(())
}

/// ggml's `ggml_compute_fp32_to_bf16`: round to nearest even; NaN stays a quiet NaN.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

fn f32s(data: &[f32], dst: &mut [u8]) {
    for (x, b) in data.iter().zip(dst.chunks_exact_mut(4)) {
        b.copy_from_slice(&x.to_le_bytes());
    }
}

fn bf16s(data: &[f32], dst: &mut [u8]) {
    for (x, b) in data.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&f32_to_bf16_bits(*x).to_le_bytes());
    }
}

fn f16s(data: &[f32], dst: &mut [u8]) {
    let mut buf = [f16::ZERO; 512];
    for (x, b) in data.chunks(buf.len()).zip(dst.chunks_mut(2 * buf.len())) {
        let h = &mut buf[..x.len()];
        h.convert_from_f32_slice(x);
        for (v, b) in h.iter().zip(b.chunks_exact_mut(2)) {
            b.copy_from_slice(&v.to_bits().to_le_bytes());
        }
    }
}

fn put_f16(b: &mut [u8], at: usize, x: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(x).to_bits().to_le_bytes());
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// The element of largest magnitude, with its sign (the first one on ties).
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

fn q8_0(x: &[f32], b: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    for (q, &v) in b[2..34].iter_mut().zip(x) {
        *q = ((v * id).round() as i8) as u8;
    }
}

fn q4_0(x: &[f32], b: &mut [u8]) {
    let d = signed_absmax(x) / -8.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    for j in 0..16 {
        let q0 = ((x[j] * id + 8.5) as u8).min(15);
        let q1 = ((x[j + 16] * id + 8.5) as u8).min(15);
        b[2 + j] = q0 | (q1 << 4);
    }
}

fn q4_1(x: &[f32], b: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    for j in 0..16 {
        let q0 = (((x[j] - min) * id + 0.5) as u8).min(15);
        let q1 = (((x[j + 16] - min) * id + 0.5) as u8).min(15);
        b[4 + j] = q0 | (q1 << 4);
    }
}

fn q5_0(x: &[f32], b: &mut [u8]) {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    let mut qh = 0u32;
    for j in 0..16 {
        let q0 = ((x[j] * id + 16.5) as u8).min(31);
        let q1 = ((x[j + 16] * id + 16.5) as u8).min(31);
        b[6 + j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= u32::from(q0 >> 4) << j;
        qh |= u32::from(q1 >> 4) << (j + 16);
    }
    b[2..6].copy_from_slice(&qh.to_le_bytes());
}

fn q5_1(x: &[f32], b: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    let mut qh = 0u32;
    for j in 0..16 {
        let q0 = (((x[j] - min) * id + 0.5) as u8).min(31);
        let q1 = (((x[j + 16] - min) * id + 0.5) as u8).min(31);
        b[8 + j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= u32::from(q0 >> 4) << j;
        qh |= u32::from(q1 >> 4) << (j + 16);
    }
    b[4..8].copy_from_slice(&qh.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequantize;

    /// Deterministic pseudo-random values (xorshift), roughly uniform in [-scale, scale].
    pub(crate) fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
        let q = quantize(ty, x).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize(ty, &q, &mut y).unwrap();
        y
    }

    /// Largest |x − y| / (block's max |x|) over blocks of `bs`.
    fn worst_relative_error(x: &[f32], y: &[f32], bs: usize) -> f32 {
        x.chunks(bs)
            .zip(y.chunks(bs))
            .map(|(xb, yb)| {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = xb
                    .iter()
                    .zip(yb)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                if amax == 0.0 {
                    err
                } else {
                    err / amax
                }
            })
            .fold(0f32, f32::max)
    }

    #[test]
    fn quantize_dequantize_errors_are_within_each_types_bound() {
        let mut x = noise(32 * 64, 7, 3.0);
        x[..32].fill(0.0); // a zero block takes the d = 0 path
        x[32..64].fill(1.25); // a constant block
                              // Bounds relative to the block's largest magnitude: half a quantization step plus
                              // the f16 rounding of the scale (and of the min, for the _1 types). Q4_0 / Q5_0 map
                              // the signed extreme to -8 (-16) steps, so values of the other sign clamp at +7 (+15)
                              // steps: their worst error is a whole step, 1/8 (1/16) of the largest magnitude.
        for (ty, bound) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 1.0 / 2048.0),
            (GgmlType::BF16, 1.0 / 256.0),
            (GgmlType::Q8_0, 0.5 / 127.0 + 1e-3),
            (GgmlType::Q4_0, 1.0 / 8.0 + 1e-2),
            (GgmlType::Q4_1, 1.0 / 15.0 + 2e-3),
            (GgmlType::Q5_0, 1.0 / 16.0 + 1e-2),
            (GgmlType::Q5_1, 1.0 / 31.0 + 2e-3),
        ] {
            let y = round_trip(ty, &x);
            let err = worst_relative_error(&x, &y, 32);
            assert!(err <= bound, "{ty}: worst error {err} > bound {bound}");
            assert_eq!(&y[..32], &[0.0; 32], "{ty}: zero block");
        }
    }

    #[test]
    fn q8_0_rounds_half_away_from_zero_like_ggml() {
        // amax 127 gives d = 1 exactly, so x·(1/d) = x and the ties are visible.
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = -0.5;
        x[3] = 2.5;
        let q = quantize(GgmlType::Q8_0, &x).unwrap();
        assert_eq!(&q[2..6], &[127, 1, (-1i8) as u8, 3]);
    }

    #[test]
    fn q4_0_uses_the_signed_extreme() {
        let mut x = vec![0.5f32; 32];
        x[3] = -4.0;
        let q = quantize(GgmlType::Q4_0, &x).unwrap();
        let d = f16::from_bits(u16::from_le_bytes([q[0], q[1]])).to_f32();
        assert_eq!(d, 0.5);
        // x = -4 → q = trunc(-4 · 2 + 8.5) = 0 (element 3, low nibble)
        assert_eq!(q[2 + 3] & 0x0F, 0);
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even.
        assert_eq!(f32_to_bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(f32_to_bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert!(half::bf16::from_bits(f32_to_bf16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn partial_blocks_and_unsupported_types_are_errors() {
        let err = quantize(GgmlType::Q8_0, &[0.0; 31]).unwrap_err();
        assert!(err.to_string().contains("block size 32"), "{err}");
        let err = quantize(GgmlType::Q6_K, &[0.0; 256]).unwrap_err();
        assert!(err.to_string().contains("cannot be quantized"), "{err}");
    }
}

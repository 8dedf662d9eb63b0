//! Dequantization to f32, block by block, following ggml's reference `dequantize_row_*`
//! (ggml-quants.c). The arithmetic is written in the same order as ggml and gguf-py
//! (`(d * scale) * q - (dmin * m)`, no fused multiply-add) so results are bit-identical to
//! gguf-py's `gguf.quants.dequantize`.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::error::{GgufError, Result};
use crate::types::{GgmlType, QK_K};

/// Dequantizes `data` (whole blocks of type `ty`) into `out`, whose length is the number of
/// elements. Errors when `ty` is not supported or the lengths disagree.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
    if !ty.can_dequantize() {
        return Err(GgufError::UnsupportedType {
            context: String::new(),
            ty,
            op: "dequantize",
        });
    }
    let expected = ty.bytes_for(out.len() as u64);
    if expected != Some(data.len() as u64) {
        return Err(GgufError::Invalid(format!(
            "cannot dequantize {} bytes of {ty} into {} values: {ty} needs whole blocks of {} \
             values taking {} bytes each",
            data.len(),
            out.len(),
            ty.block_size(),
            ty.type_size()
        )));
    }
    let kernel: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => f32s,
        GgmlType::F16 => f16s,
        GgmlType::BF16 => bf16s,
        GgmlType::F64 => f64s,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2_K => q2_k,
        GgmlType::Q3_K => q3_k,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        GgmlType::Q8_K => q8_k,
        _ => unreachable!("can_dequantize lists exactly the types handled here"),
    };
    if ty.block_size() == 1 {
        // Element-wise types convert the whole slice at once.
        kernel(data, out);
    } else {
        for (block, y) in data
            .chunks_exact(ty.type_size())
            .zip(out.chunks_exact_mut(ty.block_size()))
        {
            kernel(block, y);
        }
    }
    Ok(())
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

fn f32s(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(4).zip(out.iter_mut()) {
        *y = f32::from_le_bytes(b.try_into().unwrap());
    }
}

fn f64s(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(8).zip(out.iter_mut()) {
        *y = f64::from_le_bytes(b.try_into().unwrap()) as f32;
    }
}

fn f16s(data: &[u8], out: &mut [f32]) {
    // Decode through a small aligned buffer so the vectorised slice conversion can be used
    // whatever the alignment of `data`.
    let mut buf = [f16::ZERO; 512];
    for (bytes, y) in data.chunks(2 * buf.len()).zip(out.chunks_mut(buf.len())) {
        let h = &mut buf[..y.len()];
        for (v, b) in h.iter_mut().zip(bytes.chunks_exact(2)) {
            *v = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
        }
        h.convert_to_f32_slice(y);
    }
}

fn bf16s(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(2).zip(out.iter_mut()) {
        *y = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    }
}

/// Q8_0: f16 d, 32 × i8; x = q·d.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = (q as i8) as f32 * d;
    }
}

/// Q4_0: f16 d, 16 bytes of nibbles (low nibbles = elements 0..16, high = 16..32);
/// x = (q − 8)·d.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        let q = b[2 + j];
        lo[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        hi[j] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: f16 d, f16 m, nibbles as Q4_0; x = q·d + m.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        let q = b[4 + j];
        lo[j] = (q & 0x0F) as f32 * d + m;
        hi[j] = (q >> 4) as f32 * d + m;
    }
}

/// Q5_0: f16 d, u32 of fifth bits (bit j for element j), nibbles as Q4_0; x = (q − 16)·d.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        let q = b[6 + j];
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        lo[j] = (((q & 0x0F) as u32 | h0) as i32 - 16) as f32 * d;
        hi[j] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: f16 d, f16 m, u32 fifth bits, nibbles; x = q·d + m.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        let q = b[8 + j];
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        lo[j] = ((q & 0x0F) as u32 | h0) as f32 * d + m;
        hi[j] = ((q >> 4) as u32 | h1) as f32 * d + m;
    }
}

/// Q2_K (84 bytes): scales[16] (low nibble scale, high nibble min, one pair per 16
/// elements), qs[64] (2-bit values), f16 d, f16 dmin. Element e = 128h + 32s + l reads
/// bits 2s of qs[32h + l]; x = (d·sc)·q − dmin·m.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, rest) = b.split_at(QK_K / 16);
    let (qs, rest) = rest.split_at(QK_K / 4);
    let d = f16_at(rest, 0);
    let dmin = f16_at(rest, 2);
    for h in 0..2 {
        for s in 0..4 {
            for half in 0..2 {
                let e0 = 128 * h + 32 * s + 16 * half;
                let sc = scales[e0 / 16];
                let dl = d * (sc & 0x0F) as f32;
                let ml = dmin * (sc >> 4) as f32;
                for l in 16 * half..16 * half + 16 {
                    let q = (qs[32 * h + l] >> (2 * s)) & 3;
                    y[128 * h + 32 * s + l] = dl * q as f32 - ml;
                }
            }
        }
    }
}

/// Q3_K (110 bytes): hmask[32] (third bit, inverted: set means no −4), qs[64] (2-bit low
/// bits), scales[12] (sixteen 6-bit scales, biased by 32), f16 d.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, rest) = b.split_at(QK_K / 8);
    let (qs, rest) = rest.split_at(QK_K / 4);
    let (sc, rest) = rest.split_at(12);
    let d = f16_at(rest, 0);
    let mut dl = [0f32; 16];
    for (i, dl) in dl.iter_mut().enumerate() {
        let low = if i < 8 { sc[i] & 0x0F } else { sc[i - 8] >> 4 };
        let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        *dl = d * ((low | (high << 4)) as i32 - 32) as f32;
    }
    for h in 0..2 {
        for s in 0..4 {
            let shift = 2 * s;
            let bit = 4 * h + s;
            for l in 0..32 {
                let e = 128 * h + 32 * s + l;
                let low = ((qs[32 * h + l] >> shift) & 3) as i32;
                let sub = if (hmask[l] >> bit) & 1 == 1 { 0 } else { 4 };
                y[e] = dl[e / 16] * (low - sub) as f32;
            }
        }
    }
}

/// The eight 6-bit (scale, min) pairs of Q4_K / Q5_K packed in 12 bytes (ggml's
/// `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        let sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (sc as f32, m as f32)
    }
}

/// Q4_K (144 bytes): f16 d, f16 dmin, scales[12], qs[128]. Each 64 elements share 32
/// bytes: low nibbles are the first 32, high nibbles the next 32; x = (d·sc)·q − dmin·m.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for j in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, dm1, d2, dm2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let q = &qs[32 * j..32 * j + 32];
        let (lo, hi) = y[64 * j..64 * j + 64].split_at_mut(32);
        for l in 0..32 {
            lo[l] = d1 * (q[l] & 0x0F) as f32 - dm1;
            hi[l] = d2 * (q[l] >> 4) as f32 - dm2;
        }
    }
}

/// Q5_K (176 bytes): f16 d, f16 dmin, scales[12], qh[32] (fifth bit of sub-block i is bit
/// i of qh[l]), qs[128] as Q4_K.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for j in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, dm1, d2, dm2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let q = &qs[32 * j..32 * j + 32];
        let (lo, hi) = y[64 * j..64 * j + 64].split_at_mut(32);
        for l in 0..32 {
            let h1 = ((qh[l] >> (2 * j)) & 1) << 4;
            let h2 = ((qh[l] >> (2 * j + 1)) & 1) << 4;
            lo[l] = d1 * ((q[l] & 0x0F) | h1) as f32 - dm1;
            hi[l] = d2 * ((q[l] >> 4) | h2) as f32 - dm2;
        }
    }
}

/// Q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8, one per 16
/// elements), f16 d. Element e = 128h + 32s + l; x = (d·scale)·(q − 32).
fn q6_k(b: &[u8], y: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    for h in 0..2 {
        for s in 0..4 {
            let low = &ql[64 * h + 32 * (s % 2)..][..32];
            let high = &qh[32 * h..][..32];
            let out = &mut y[128 * h + 32 * s..][..32];
            let sc = [
                d * (scales[(128 * h + 32 * s) / 16] as i8) as f32,
                d * (scales[(128 * h + 32 * s) / 16 + 1] as i8) as f32,
            ];
            for l in 0..32 {
                let q = ((low[l] >> (4 * (s / 2))) & 0x0F) | (((high[l] >> (2 * s)) & 3) << 4);
                out[l] = sc[l / 16] * (q as i32 - 32) as f32;
            }
        }
    }
}

/// Q8_K (292 bytes): f32 d, 256 × i8, 16 × i16 block sums (unused here); x = d·q.
fn q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (y, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
        *y = d * (q as i8) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut b = vec![0u8; 34];
        b[..2].copy_from_slice(&f16_bytes(0.5));
        b[2] = 4;
        b[3] = (-3i8) as u8;
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q8_0, &b, &mut y).unwrap();
        assert_eq!(&y[..3], &[2.0, -1.5, 0.0]);
    }

    #[test]
    fn q4_1_block_by_hand() {
        let mut b = vec![0u8; 20];
        b[..2].copy_from_slice(&f16_bytes(2.0));
        b[2..4].copy_from_slice(&f16_bytes(-1.0));
        b[4] = 0x3A; // element 0 = 10, element 16 = 3
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q4_1, &b, &mut y).unwrap();
        assert_eq!((y[0], y[16], y[1]), (19.0, 5.0, -1.0));
    }

    #[test]
    fn q6_k_block_by_hand() {
        let mut b = vec![0u8; 210];
        b[208..210].copy_from_slice(&f16_bytes(0.25));
        for s in b[192..208].iter_mut() {
            *s = 2;
        }
        // Element 64 + 5 (h = 0, s = 2): high nibble of ql[5], bits 4..6 of qh[5].
        b[5] = 0x70;
        b[128 + 5] = 0b0011_0000;
        let mut y = [0f32; 256];
        dequantize(GgmlType::Q6_K, &b, &mut y).unwrap();
        // q = 7 | 3 << 4 = 55; (55 - 32) * 0.5
        assert_eq!(y[69], 11.5);
        assert_eq!(y[0], -16.0);
    }

    #[test]
    fn length_mismatch_and_unsupported_type_are_errors() {
        let mut y = [0f32; 32];
        let err = dequantize(GgmlType::Q8_0, &[0u8; 33], &mut y).unwrap_err();
        assert!(err.to_string().contains("whole blocks"), "{err}");
        let err = dequantize(GgmlType::IQ2_XXS, &[0u8; 66], &mut [0f32; 256]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("IQ2_XXS") && msg.contains("Q6_K"), "{msg}");
    }
}

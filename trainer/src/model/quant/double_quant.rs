//! Double quantization (bitsandbytes' default for 4-bit weights): the per-block absmax
//! values, less their mean, are quantized again to 8 bits in blocks of 256 with
//! bitsandbytes' signed dynamic map, so a weight costs 8.5 bits per 64 values of scale
//! instead of 32.
//!
//! ```text
//! offset = mean(absmax);  q_i = nearest code to (absmax_i − offset) / s_j,  s_j = max |·| over block j
//! absmax_i = code[q_i] · s_j + offset           (f32)
//! ```
//! Quantization is bitsandbytes' CPU kernel (`quantize_blockwise`, csrc/cpu_ops.cpp): the
//! scaled value is placed on a grid of 65536 points over [-1, 1] and looked up in a table
//! of the code nearest each grid point (ties to the lower code), not searched exactly, so
//! a value very close to a midpoint between two codes can take the farther one. loam does
//! the same arithmetic in f32 and writes the same bytes. (bitsandbytes' CUDA kernel
//! searches exactly; the two can differ on such values. Dequantization is the same
//! everywhere.) The mean is summed as one libtorch thread sums: a weight of more than
//! 32768 blocks (2 Mi values) gets an offset that in a multi-threaded torch run can differ
//! in its last bit, and then so can a few of its 8-bit codes.

use tch::{Device, Kind, Tensor};

/// Absmax values per nested block (bitsandbytes only supports 256 for 4-bit weights).
pub const NESTED_BLOCKSIZE: i64 = 256;

pub struct NestedAbsmax {
    /// One 8-bit code per absmax, `[blocks]` u8.
    pub codes: Tensor,
    /// One scale per 256 absmax values, f32 (`nested_absmax`).
    pub absmax: Tensor,
    /// The 256 code values, f32 (`nested_quant_map`).
    pub code: Tensor,
    pub blocksize: i64,
    /// The mean that was taken off (`nested_offset`).
    pub offset: f32,
}

impl NestedAbsmax {
    /// Quantizes f32 `absmax` (on any device; the result is on the same one).
    pub fn quantize(absmax: &Tensor) -> NestedAbsmax {
        let device = absmax.device();
        let absmax = absmax.to_device(Device::Cpu).to_kind(Kind::Float);
        // As a one-thread torch run adds (libtorch splits sums over 32768 values by thread).
        let offset =
            crate::runtime::single_threaded(|| absmax.mean(Kind::Float).double_value(&[])) as f32;
        let centred: Vec<f32> = Vec::try_from(&absmax - offset as f64).expect("f32 absmax");
        let code = dynamic_map();
        let (codes, scales) = quantize_blockwise(&centred, &code, NESTED_BLOCKSIZE as usize);
        NestedAbsmax {
            codes: Tensor::from_slice(&codes).to_device(device),
            absmax: Tensor::from_slice(&scales).to_device(device),
            code: Tensor::from_slice(&code).to_device(device),
            blocksize: NESTED_BLOCKSIZE,
            offset,
        }
    }

    /// The f32 absmax values: `code[q] · scale + offset`.
    pub fn dequantize(&self) -> Tensor {
        let n = self.codes.size()[0];
        let values = self.code.index_select(0, &self.codes.to_kind(Kind::Int64));
        let scales = self
            .absmax
            .repeat_interleave_self_int(self.blocksize, 0, None)
            .narrow(0, 0, n);
        values * scales + self.offset as f64
    }

    pub fn shallow_clone(&self) -> NestedAbsmax {
        NestedAbsmax {
            codes: self.codes.shallow_clone(),
            absmax: self.absmax.shallow_clone(),
            code: self.code.shallow_clone(),
            ..*self
        }
    }

    pub fn to_device(&self, device: Device) -> NestedAbsmax {
        NestedAbsmax {
            codes: self.codes.to_device(device),
            absmax: self.absmax.to_device(device),
            code: self.code.to_device(device),
            ..*self
        }
    }
}

/// bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map()`): for exponents 10⁻⁶ …
/// 10⁰, the midpoints of `linspace(0.1, 1, 2^i + 1)` scaled by it, both signs; then 0 and
/// 1; sorted. Computed with the same libtorch ops, so every value is bitsandbytes' value.
pub fn dynamic_map() -> Vec<f32> {
    let _guard = tch::no_grad_guard();
    let mut data = Vec::with_capacity(256);
    let exponents = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    for (i, scale) in exponents.into_iter().enumerate() {
        let items = (1i64 << i) + 1;
        let bounds = Tensor::linspace(0.1, 1.0, items, (Kind::Float, Device::Cpu));
        let means = (bounds.narrow(0, 0, items - 1) + bounds.narrow(0, 1, items - 1)) / 2.0;
        let scaled: Vec<f32> = Vec::try_from(means * scale).expect("f32 means");
        data.extend(scaled.iter().copied());
        data.extend(scaled.iter().map(|v| -v));
    }
    data.push(0.0);
    data.push(1.0);
    data.sort_by(f32::total_cmp);
    data
}

/// Grid points of the lookup table over [-1, 1].
const GRID: usize = 65536;

/// For every grid point, the code whose bucket between midpoints holds it.
fn lookup_table(code: &[f32]) -> Vec<u8> {
    let midpoints: Vec<f32> = code.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let mut table = Vec::with_capacity(GRID);
    let mut index = 0;
    for i in 0..GRID {
        let point = -1.0f32 + (2.0 * i as f32) / (GRID - 1) as f32;
        while index < midpoints.len() && midpoints[index] < point {
            index += 1;
        }
        table.push(index as u8);
    }
    table
}

/// The grid point nearest `value` (clamped to [-1, 1]).
fn grid_index(value: f32) -> usize {
    let value = value.clamp(-1.0, 1.0);
    ((value + 1.0) * 0.5 * (GRID - 1) as f32 + 0.5) as u16 as usize
}

/// bitsandbytes' CPU `quantize_blockwise`: codes and one absmax per block of `values`.
/// An all-zero block gets absmax 0 and codes 0.
pub fn quantize_blockwise(values: &[f32], code: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    let table = lookup_table(code);
    let mut codes = Vec::with_capacity(values.len());
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize));
    for block in values.chunks(blocksize) {
        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        absmax.push(max);
        if max == 0.0 {
            codes.extend(std::iter::repeat_n(0u8, block.len()));
            continue;
        }
        let inverse = 1.0 / max;
        codes.extend(block.iter().map(|v| table[grid_index(v * inverse)]));
    }
    (codes, absmax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_map_has_256_sorted_values_from_minus_to_plus_one() {
        let map = dynamic_map();
        assert_eq!(map.len(), 256);
        assert!(map.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(map[255], 1.0);
        assert!(map.contains(&0.0));
        assert!(map[0] > -1.0 && map[0] < -0.99);
    }

    #[test]
    fn nested_absmax_round_trips_within_the_code_spacing() {
        tch::manual_seed(5);
        // 600 blocks: three nested blocks, the last one short
        let absmax = Tensor::rand([600], (Kind::Float, Device::Cpu)) * 3.0;
        let nested = NestedAbsmax::quantize(&absmax);
        assert_eq!(nested.absmax.size(), [3]);
        let err = (nested.dequantize() - &absmax)
            .abs()
            .max()
            .double_value(&[]);
        // the dynamic map's widest gap near 1 is ~0.0156 of the block's scale (≤ 1.5 here)
        assert!(err < 0.0157 * 1.5, "error {err}");
    }
}

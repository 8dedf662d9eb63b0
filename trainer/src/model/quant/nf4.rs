//! 4-bit blockwise quantization as bitsandbytes stores it: NF4 (or FP4) codes, two per
//! byte, one absmax per block of 64 values of the flattened row-major weight.
//!
//! ```text
//! quantize:    absmax_b = max |w| over block b;  q = the code nearest w · (1 / absmax_b)
//! dequantize:  w' = code[q] · absmax_b            (f32, then cast to the compute dtype)
//! ```
//! Everything is done as bitsandbytes' portable PyTorch kernels do it (its CPU backend uses
//! them for 4-bit quantization), op for op on the same libtorch, so the bytes are its bytes:
//! full blocks are scaled by the f32 reciprocal of their absmax, a short last block is
//! divided by its absmax (clamped to 1e-38, and stored clamped), the scaled value goes to
//! the code whose bucket between sorted midpoints holds it (a value exactly on a midpoint
//! takes the lower code), and an odd element count is padded with a 0 value. The first
//! element of each pair sits in the high nibble.
//!
//! The absmax values themselves may be quantized again ([`super::double_quant`]).

use super::double_quant::NestedAbsmax;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

/// Elements per absmax block: bitsandbytes' and transformers' default.
pub const BLOCKSIZE: i64 = 64;

/// The 4-bit code book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantType {
    /// NormalFloat4: quantiles of N(0, 1) scaled to [-1, 1] (QLoRA).
    Nf4,
    /// A 4-bit float (1 sign, 2 exponent, 1 mantissa bit), scaled to [-1, 1].
    Fp4,
}

/// bitsandbytes' NF4 table (`get_4bit_type("nf4")`), sorted: index = code. Written as the
/// f64 literals bitsandbytes lists, rounded to f32 as `torch.tensor` does.
const NF4: [f64; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// bitsandbytes' FP4 values in bit-pattern order (sign bit 8), before scaling by 1/12.
/// Code 8 is +0: bitsandbytes lists it as the integer `-0`.
const FP4: [f64; 16] = [
    0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, 0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0,
];

impl QuantType {
    /// The name in quant_state (`bitsandbytes__nf4`) and `bnb_4bit_quant_type`.
    pub fn name(self) -> &'static str {
        match self {
            QuantType::Nf4 => "nf4",
            QuantType::Fp4 => "fp4",
        }
    }

    pub fn parse(s: &str) -> Option<QuantType> {
        match s {
            "nf4" => Some(QuantType::Nf4),
            "fp4" => Some(QuantType::Fp4),
            _ => None,
        }
    }

    /// The 16 code values (f32), index = 4-bit code, as bitsandbytes computes them
    /// (each table divided by its largest magnitude).
    pub fn code(self) -> [f32; 16] {
        let (table, max) = match self {
            QuantType::Nf4 => (NF4, 1.0f32),
            QuantType::Fp4 => (FP4, 12.0f32),
        };
        table.map(|v| v as f32 / max)
    }
}

/// A quantized `[out, in]` weight with everything needed to dequantize it.
pub struct Quantized4bit {
    /// `ceil(numel / 2)` bytes, two codes each.
    pub packed: Tensor,
    pub absmax: Absmax,
    /// The 16 code values (`quant_map`), f32.
    pub code: Tensor,
    pub quant_type: QuantType,
    pub blocksize: i64,
    pub shape: Vec<i64>,
    /// The dtype of the weight that was quantized (quant_state `dtype`).
    pub dtype: Kind,
}

/// One scale per block: as f32, or quantized again (bitsandbytes' double quantization).
pub enum Absmax {
    Plain(Tensor),
    Nested(NestedAbsmax),
}

impl Absmax {
    /// The f32 absmax of every block.
    pub fn values(&self) -> Tensor {
        match self {
            Absmax::Plain(t) => t.shallow_clone(),
            Absmax::Nested(n) => n.dequantize(),
        }
    }

    fn shallow_clone(&self) -> Absmax {
        match self {
            Absmax::Plain(t) => Absmax::Plain(t.shallow_clone()),
            Absmax::Nested(n) => Absmax::Nested(n.shallow_clone()),
        }
    }

    fn to_device(&self, device: Device) -> Absmax {
        match self {
            Absmax::Plain(t) => Absmax::Plain(t.to_device(device)),
            Absmax::Nested(n) => Absmax::Nested(n.to_device(device)),
        }
    }
}

/// Elements quantized or dequantized per pass: bounds the temporaries (a few f32 copies
/// of a chunk) whatever the weight's size. A multiple of every blocksize bitsandbytes allows.
const CHUNK: i64 = 1 << 20;

impl Quantized4bit {
    /// Quantizes `weight` (any float dtype, any device; it stays where it is) as
    /// `bitsandbytes.functional.quantize_4bit(weight, blocksize, compress_statistics =
    /// double_quant, quant_type)`.
    pub fn quantize(
        weight: &Tensor,
        quant_type: QuantType,
        blocksize: i64,
        double_quant: bool,
    ) -> Quantized4bit {
        let _guard = tch::no_grad_guard();
        let device = weight.device();
        let code = Tensor::from_slice(&quant_type.code()).to_device(device);
        let (bounds, order) = bucket_bounds(&code);
        let bucket = |scaled: &Tensor| {
            let q = scaled.bucketize(&bounds, false, false);
            order.index_select(0, &q).to_kind(Kind::Uint8)
        };
        let flat = weight.reshape([-1]);
        let n = flat.numel() as i64;
        let full = n - n % blocksize;
        let (mut packed, mut absmax) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < full {
            let len = CHUNK.min(full - start);
            let blocks = flat
                .narrow(0, start, len)
                .to_kind(Kind::Float)
                .view([-1, blocksize]);
            let block_max = blocks.abs().amax([1i64].as_slice(), false);
            let scaled = (&blocks * block_max.clamp_min(1e-38).reciprocal().unsqueeze(1))
                .clamp(-1.0, 1.0)
                .view([-1]);
            packed.push(pack_pairs(&bucket(&scaled)));
            absmax.push(block_max);
            start += len;
        }
        if full < n {
            // The short last block is divided by its absmax, and its absmax is stored clamped.
            let tail = flat.narrow(0, full, n - full).to_kind(Kind::Float);
            let tail_max = tail.abs().max().clamp_min(1e-38);
            let mut scaled = (&tail / &tail_max).clamp(-1.0, 1.0);
            if (n - full) % 2 == 1 {
                scaled = Tensor::cat(&[scaled, Tensor::zeros([1], (Kind::Float, device))], 0);
            }
            packed.push(pack_pairs(&bucket(&scaled)));
            absmax.push(tail_max.unsqueeze(0));
        }
        let absmax = Tensor::cat(&absmax, 0);
        let absmax = if double_quant {
            Absmax::Nested(NestedAbsmax::quantize(&absmax))
        } else {
            Absmax::Plain(absmax)
        };
        Quantized4bit {
            packed: Tensor::cat(&packed, 0),
            absmax,
            code,
            quant_type,
            blocksize,
            shape: weight.size(),
            dtype: weight.kind(),
        }
    }

    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    pub fn device(&self) -> Device {
        self.packed.device()
    }

    /// The weight in `kind`: `code[q] · absmax` in f32, then cast, as bitsandbytes'
    /// `dequantize_4bit` with `dtype = kind`. On the CPU one fused pass
    /// (trainer/csrc/dequantize_4bit.cpp); elsewhere libtorch ops, a chunk of blocks at a time.
    pub fn dequantize(&self, kind: Kind) -> Tensor {
        let _guard = tch::no_grad_guard();
        if self.device() == Device::Cpu && matches!(kind, Kind::Float | Kind::BFloat16 | Kind::Half)
        {
            return self.dequantize_cpu(kind);
        }
        self.dequantize_ops(kind)
    }

    fn dequantize_cpu(&self, kind: Kind) -> Tensor {
        extern "C" {
            fn loam_dequantize_4bit(
                packed: *const C_tensor,
                absmax: *const C_tensor,
                code: *const C_tensor,
                blocksize: i64,
                out: *mut C_tensor,
            ) -> *mut std::ffi::c_char;
        }
        let (packed, absmax, code) = (
            self.packed.contiguous(),
            self.absmax.values().to_kind(Kind::Float).contiguous(),
            self.code.to_kind(Kind::Float).contiguous(),
        );
        let mut out = Tensor::empty(self.shape.as_slice(), (kind, Device::Cpu));
        // SAFETY: live tensors; the kernel checks dtypes, sizes and layout before it reads or
        // writes, and returns a message instead of throwing.
        let error = unsafe {
            loam_dequantize_4bit(
                packed.as_ptr(),
                absmax.as_ptr(),
                code.as_ptr(),
                self.blocksize,
                out.as_mut_ptr(),
            )
        };
        if !error.is_null() {
            panic!("{}", crate::autograd::take_message(error));
        }
        out
    }

    /// [`Self::dequantize`] with libtorch ops (any device).
    fn dequantize_ops(&self, kind: Kind) -> Tensor {
        let n = self.numel();
        let bs = self.blocksize;
        let absmax = self.absmax.values();
        let blocks = absmax.size()[0];
        // byte → the values of its two codes (high nibble first)
        let byte = Tensor::arange(256, (Kind::Int64, self.device()));
        let pairs = Tensor::stack(
            &[
                self.code
                    .index_select(0, &byte.bitwise_right_shift_tensor_scalar(4)),
                self.code.index_select(0, &byte.bitwise_and(15)),
            ],
            1,
        );
        let out = Tensor::empty([n], (kind, self.device()));
        let blocks_per_chunk = CHUNK / bs;
        let mut block = 0;
        while block < blocks {
            let count = blocks_per_chunk.min(blocks - block);
            let first = block * bs;
            let len = (count * bs).min(n - first);
            let bytes = self
                .packed
                .narrow(0, first / 2, (len + 1) / 2)
                .to_kind(Kind::Int);
            let mut values = pairs.index_select(0, &bytes).view([-1]).narrow(0, 0, len);
            if len == count * bs {
                values = (values.view([count, bs]) * absmax.narrow(0, block, count).unsqueeze(1))
                    .view([-1]);
            } else {
                // the short last block
                let whole = (count - 1) * bs;
                values = Tensor::cat(
                    &[
                        (values.narrow(0, 0, whole).view([count - 1, bs])
                            * absmax.narrow(0, block, count - 1).unsqueeze(1))
                        .view([-1]),
                        values.narrow(0, whole, len - whole) * absmax.get(block + count - 1),
                    ],
                    0,
                );
            }
            out.narrow(0, first, len).copy_(&values);
            block += count;
        }
        out.view(self.shape.as_slice())
    }

    /// A second handle on the same tensors (no copy).
    pub fn shallow_clone(&self) -> Quantized4bit {
        Quantized4bit {
            packed: self.packed.shallow_clone(),
            absmax: self.absmax.shallow_clone(),
            code: self.code.shallow_clone(),
            quant_type: self.quant_type,
            blocksize: self.blocksize,
            shape: self.shape.clone(),
            dtype: self.dtype,
        }
    }

    pub fn to_device(&self, device: Device) -> Quantized4bit {
        Quantized4bit {
            packed: self.packed.to_device(device),
            absmax: self.absmax.to_device(device),
            code: self.code.to_device(device),
            ..self.shallow_clone()
        }
    }

    /// Bytes held: the codes and the absmax (and its own scales).
    pub fn nbytes(&self) -> i64 {
        let size = |t: &Tensor| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        size(&self.packed)
            + match &self.absmax {
                Absmax::Plain(t) => size(t),
                Absmax::Nested(n) => size(&n.codes) + size(&n.absmax) + size(&n.code),
            }
    }
}

/// Midpoints between the sorted code values, and the code of each sorted position:
/// `bucketize` over the midpoints gives the sorted position of the nearest code.
fn bucket_bounds(code: &Tensor) -> (Tensor, Tensor) {
    let order = code.argsort(0, false);
    let sorted = code.index_select(0, &order);
    let bounds = (sorted.narrow(0, 0, 15) + sorted.narrow(0, 1, 15)) / 2.0;
    (bounds, order)
}

/// `[2k]` codes → `[k]` bytes, the first code of each pair in the high nibble.
fn pack_pairs(codes: &Tensor) -> Tensor {
    let pairs = codes.view([-1, 2]);
    pairs
        .select(1, 0)
        .bitwise_left_shift_tensor_scalar(4)
        .bitwise_or_tensor(&pairs.select(1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused CPU kernel and the libtorch-op path (other devices) agree bit for bit.
    #[test]
    fn fused_cpu_dequantization_equals_the_op_path() {
        tch::manual_seed(4);
        let w = Tensor::randn([37, 29], (Kind::Float, Device::Cpu)) * 3.0;
        for (quant_type, double) in [(QuantType::Nf4, true), (QuantType::Fp4, false)] {
            let q = Quantized4bit::quantize(&w, quant_type, BLOCKSIZE, double);
            for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
                let (fused, ops) = (q.dequantize_cpu(kind), q.dequantize_ops(kind));
                assert_eq!(fused.size(), ops.size());
                let bits = |t: &Tensor| {
                    Vec::<u8>::try_from(t.contiguous().view_dtype(Kind::Uint8).view([-1])).unwrap()
                };
                assert!(bits(&fused) == bits(&ops), "{quant_type:?} {kind:?}");
            }
        }
    }

    #[test]
    fn code_tables_are_bitsandbytes_tables() {
        let nf4 = QuantType::Nf4.code();
        assert!(nf4.windows(2).all(|w| w[0] < w[1]), "NF4 is sorted");
        assert_eq!((nf4[0], nf4[7], nf4[15]), (-1.0, 0.0, 1.0));
        let fp4 = QuantType::Fp4.code();
        assert_eq!((fp4[3], fp4[11], fp4[1]), (1.0, -1.0, 0.0625f32 / 12.0));
    }

    /// Round trip on a shape whose rows are not a multiple of the block, with a ragged last
    /// block and an odd element count; the error stays within half the widest NF4 gap.
    #[test]
    fn dequantize_inverts_quantize_within_the_code_spacing() {
        tch::manual_seed(3);
        let w = Tensor::randn([37, 29], (Kind::Float, Device::Cpu));
        for double in [false, true] {
            let q = Quantized4bit::quantize(&w, QuantType::Nf4, BLOCKSIZE, double);
            assert_eq!(q.packed.size(), [(37 * 29 + 1) / 2]);
            let back = q.dequantize(Kind::Float);
            assert_eq!(back.size(), [37, 29]);
            let blocks = q.absmax.values();
            let scale = blocks
                .repeat_interleave_self_int(BLOCKSIZE, 0, None)
                .narrow(0, 0, 37 * 29);
            let err = ((back.view([-1]) - w.view([-1])).abs() / scale)
                .max()
                .double_value(&[]);
            // widest NF4 gap: -1 → -0.6962, so at most half of 0.3038, plus double-quant slack
            assert!(
                err <= 0.1520 + if double { 0.02 } else { 0.0 },
                "error {err}"
            );
        }
    }
}

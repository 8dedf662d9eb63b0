//! ggml tensor types: ids as stored in GGUF tensor infos, and their block layouts.

use std::fmt;
use std::str::FromStr;

/// A ggml tensor element type (the `type` field of a GGUF tensor info).
///
/// Every id ggml defined when this was written is listed, so a file using any of them opens
/// and its tensors can be copied as raw bytes; only some can be dequantized
/// ([`GgmlType::can_dequantize`]) or quantized ([`GgmlType::can_quantize`]).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
}

/// Elements per super-block of the K-quants.
pub const QK_K: usize = 256;

/// (type, id, name, elements per block, bytes per block), from ggml.h / gguf-py constants.
const TABLE: &[(GgmlType, u32, &str, usize, usize)] = {
    use GgmlType::*;
    &[
        (F32, 0, "F32", 1, 4),
        (F16, 1, "F16", 1, 2),
        (Q4_0, 2, "Q4_0", 32, 18),
        (Q4_1, 3, "Q4_1", 32, 20),
        (Q5_0, 6, "Q5_0", 32, 22),
        (Q5_1, 7, "Q5_1", 32, 24),
        (Q8_0, 8, "Q8_0", 32, 34),
        (Q8_1, 9, "Q8_1", 32, 40),
        (Q2_K, 10, "Q2_K", QK_K, 84),
        (Q3_K, 11, "Q3_K", QK_K, 110),
        (Q4_K, 12, "Q4_K", QK_K, 144),
        (Q5_K, 13, "Q5_K", QK_K, 176),
        (Q6_K, 14, "Q6_K", QK_K, 210),
        (Q8_K, 15, "Q8_K", QK_K, 292),
        (IQ2_XXS, 16, "IQ2_XXS", QK_K, 66),
        (IQ2_XS, 17, "IQ2_XS", QK_K, 74),
        (IQ3_XXS, 18, "IQ3_XXS", QK_K, 98),
        (IQ1_S, 19, "IQ1_S", QK_K, 50),
        (IQ4_NL, 20, "IQ4_NL", 32, 18),
        (IQ3_S, 21, "IQ3_S", QK_K, 110),
        (IQ2_S, 22, "IQ2_S", QK_K, 82),
        (IQ4_XS, 23, "IQ4_XS", QK_K, 136),
        (I8, 24, "I8", 1, 1),
        (I16, 25, "I16", 1, 2),
        (I32, 26, "I32", 1, 4),
        (I64, 27, "I64", 1, 8),
        (F64, 28, "F64", 1, 8),
        (IQ1_M, 29, "IQ1_M", QK_K, 56),
        (BF16, 30, "BF16", 1, 2),
        (TQ1_0, 34, "TQ1_0", QK_K, 54),
        (TQ2_0, 35, "TQ2_0", QK_K, 66),
        (MXFP4, 39, "MXFP4", 32, 17),
        (NVFP4, 40, "NVFP4", 64, 36),
        (Q1_0, 41, "Q1_0", 128, 18),
    ]
};

impl GgmlType {
    /// Types [`crate::dequantize`] can turn into f32.
    pub const DEQUANTIZABLE: &'static [GgmlType] = &[
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F64,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
    ];

    /// Types [`crate::quantize`] can produce from f32.
    pub const QUANTIZABLE: &'static [GgmlType] = &[
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
    ];

    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every GgmlType has a table row")
    }

    /// The type for a ggml type id, or `None` for an id this crate does not know.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// The ggml type id stored in GGUF files.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// ggml's name for the type (`"Q4_K"`, `"BF16"`).
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block (1 for plain float and integer types).
    pub fn block_size(self) -> usize {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.row().4
    }

    /// Whether [`crate::dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        Self::DEQUANTIZABLE.contains(&self)
    }

    /// Whether [`crate::quantize`] supports this type.
    pub fn can_quantize(self) -> bool {
        Self::QUANTIZABLE.contains(&self)
    }

    /// Bytes taken by `n` elements, or `None` if `n` is not a whole number of blocks (or the
    /// size overflows).
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.type_size() as u64)
    }

    /// Comma-separated names of `types`, for error messages.
    pub fn list(types: &[GgmlType]) -> String {
        types
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GgmlType {
    type Err = String;

    /// Parses a type name case-insensitively (`"q8_0"`, `"F16"`, `"bf16"`).
    fn from_str(s: &str) -> Result<Self, String> {
        TABLE
            .iter()
            .find(|r| r.2.eq_ignore_ascii_case(s))
            .map(|r| r.0)
            .ok_or_else(|| {
                format!(
                    "unknown ggml type '{s}'; known types: {}",
                    TABLE.iter().map(|r| r.2).collect::<Vec<_>>().join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for r in TABLE {
            assert_eq!(GgmlType::from_id(r.1), Some(r.0));
            assert_eq!(r.0.id(), r.1);
            assert_eq!(r.2.parse::<GgmlType>().unwrap(), r.0);
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!("q8_0".parse::<GgmlType>().unwrap(), GgmlType::Q8_0);
        assert!("q9_9".parse::<GgmlType>().unwrap_err().contains("Q8_0"));
    }

    #[test]
    fn bytes_for_requires_whole_blocks() {
        assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
        assert_eq!(GgmlType::Q8_0.bytes_for(33), None);
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }
}

//! The dimension convention.
//!
//! GGUF (like ggml) lists a tensor's dimensions innermost first: `ne[0]` is the number of
//! elements in a contiguous row. PyTorch, NumPy and safetensors list them outermost first.
//! The bytes are the same row-major data either way; only the order of the dimension list
//! differs:
//!
//! | PyTorch `weight.shape` | GGUF `ne`       |
//! |------------------------|-----------------|
//! | `[rows, cols]`         | `[cols, rows]`  |
//! | `[vocab, hidden]`      | `[hidden, vocab]` |
//! | `[n]`                  | `[n]`           |
//!
//! Quantization blocks run along `ne[0]` (a PyTorch row), which must be a multiple of the
//! type's block size.

/// PyTorch / NumPy shape (outermost first) to GGUF `ne` (innermost first).
pub fn shape_to_ne(shape: &[usize]) -> Vec<u64> {
    shape.iter().rev().map(|&d| d as u64).collect()
}

/// GGUF `ne` (innermost first) to a PyTorch / NumPy shape (outermost first).
pub fn ne_to_shape(ne: &[u64]) -> Vec<usize> {
    ne.iter().rev().map(|&d| d as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torch_linear_weight_is_cols_then_rows_in_gguf() {
        assert_eq!(shape_to_ne(&[1536, 576]), vec![576, 1536]);
        assert_eq!(ne_to_shape(&[576, 1536]), vec![1536, 576]);
        assert_eq!(ne_to_shape(&shape_to_ne(&[2, 3, 4])), vec![2, 3, 4]);
    }
}

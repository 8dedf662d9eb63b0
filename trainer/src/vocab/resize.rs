//! The embedding (and an untied output head) of an extended vocabulary: the base rows as they
//! were, each new token's row the mean of the base rows of the tokens it replaces, and padding
//! rows (never produced by the tokenizer) the mean of all base token rows.

use loam_data::vocab::Extension;
use tch::{Kind, Tensor};

/// The largest multiple `vocab_size` is kept at: the largest power of two up to 128 dividing
/// the base's (GPU-friendly sizes such as 49152 = 384 × 128); 1 when it is odd.
pub fn size_multiple(base_vocab_size: i64) -> i64 {
    let mut m = 1;
    while m < 128 && base_vocab_size % (2 * m) == 0 {
        m *= 2;
    }
    m
}

/// `vocab_size` for `tokens` token ids: at least the base's, rounded up to its multiple.
pub fn padded_vocab_size(base_vocab_size: i64, tokens: i64) -> i64 {
    let m = size_multiple(base_vocab_size);
    base_vocab_size.max((tokens + m - 1) / m * m)
}

/// `base` `[V0, hidden]` resized to `[vocab_size, hidden]` (f32).
pub fn resized_rows(base: &Tensor, vocab_size: i64, ext: &Extension) -> Tensor {
    let _guard = tch::no_grad_guard();
    let base = base.to_kind(Kind::Float);
    let (v0, hidden) = base.size2().expect("an embedding is [vocab, hidden]");
    let tokens = i64::from(ext.first_id).min(v0);
    // Summed in f64: tens of thousands of rows in f32 would round by summation order,
    // which differs between CPU kernels.
    let mean = base
        .narrow(0, 0, tokens)
        .mean_dim(0, false, Kind::Double)
        .to_kind(Kind::Float);
    let out = mean
        .unsqueeze(0)
        .expand([vocab_size, hidden], true)
        .contiguous();
    out.narrow(0, 0, v0).copy_(&base);
    for t in &ext.tokens {
        let parts: Vec<i64> = t.parts.iter().map(|&p| i64::from(p)).collect();
        let row = base
            .index_select(0, &Tensor::from_slice(&parts))
            .mean_dim(0, false, Kind::Float);
        out.get(i64::from(t.id)).copy_(&row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use loam_data::vocab::NewToken;

    #[test]
    fn sizes_keep_the_base_multiple() {
        assert_eq!(size_multiple(49152), 128);
        assert_eq!(size_multiple(151936), 128);
        assert_eq!(size_multiple(32000), 128);
        assert_eq!(size_multiple(50257), 1);
        assert_eq!(size_multiple(50304), 128);
        assert_eq!(padded_vocab_size(49152, 49152 + 64), 49280);
        assert_eq!(padded_vocab_size(49152, 49152), 49152);
        assert_eq!(padded_vocab_size(151936, 151665 + 100), 151936, "room left");
        assert_eq!(padded_vocab_size(50257, 50300), 50300);
    }

    #[test]
    fn new_rows_are_means_of_their_parts_and_padding_the_mean_of_all() {
        let base = Tensor::from_slice(&[1f32, 0., 3., 0., 0., 6., 2., 2.]).view([4, 2]);
        let token = |id, parts: Vec<u32>| NewToken {
            id,
            token: String::new(),
            left: parts[0],
            right: parts[1],
            parts,
            count: 2,
        };
        let ext = Extension {
            first_id: 4,
            tokens: vec![token(4, vec![0, 1]), token(5, vec![1, 2, 3])],
        };
        let out = resized_rows(&base, 8, &ext);
        let rows: Vec<f32> = Vec::try_from(out.view([-1])).unwrap();
        #[rustfmt::skip]
        let want = [1., 0., 3., 0., 0., 6., 2., 2.,
                    2., 0., 5. / 3., 8. / 3.,
                    1.5, 2., 1.5, 2.];
        for (g, w) in rows.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{rows:?}");
        }
    }
}

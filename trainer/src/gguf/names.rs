//! Tensor names and layouts: Hugging Face checkpoint ↔ llama.cpp GGUF.
//!
//! llama.cpp names tensors `blk.N.attn_q.weight` where transformers says
//! `model.layers.N.self_attn.q_proj.weight`. For the `llama` architecture llama.cpp also
//! reorders the rows of the Q and K projections: transformers' rotary embedding rotates the
//! two halves of each head (`rotate_half`), ggml's rotates adjacent pairs, so each head's rows
//! `[x0 .. x(d/2-1), y0 .. y(d/2-1)]` are stored interleaved as `[x0, y0, x1, y1, ..]`.
//!
//! A few names depend on the architecture: Gemma 2/3's four norms per layer
//! (`post_attention_layernorm` is llama.cpp's `post_attention_norm` there, its
//! `pre_feedforward_layernorm` the `ffn_norm`), Phi-3's fused `attn_qkv` and `ffn_up`.

/// Tensors outside the decoder layers: (HF module, GGUF name stem).
const GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
];

/// Modules of one decoder layer: (HF module under `model.layers.N.`, GGUF under `blk.N.`).
const LAYER: &[(&str, &str)] = &[
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "ffn_norm"),
];

/// Gemma 2 and Gemma 3 (`gemma2`, `gemma3`): norms before and after attention and MLP.
const SANDWICH_NORMS: &[(&str, &str)] = &[
    ("post_attention_layernorm", "post_attention_norm"),
    ("pre_feedforward_layernorm", "ffn_norm"),
    ("post_feedforward_layernorm", "post_ffw_norm"),
];

/// Phi-3 (`phi3`): the fused projections.
const FUSED: &[(&str, &str)] = &[
    ("self_attn.qkv_proj", "attn_qkv"),
    ("mlp.gate_up_proj", "ffn_up"),
];

/// The architecture's own layer names, looked up before [`LAYER`].
fn arch_layer(arch: &str) -> &'static [(&'static str, &'static str)] {
    match arch {
        "gemma2" | "gemma3" => SANDWICH_NORMS,
        "phi3" => FUSED,
        _ => &[],
    }
}

/// Splits `stem.weight` / `stem.bias` into the stem and the parameter kind.
fn split_param(name: &str) -> Option<(&str, &str)> {
    ["weight", "bias"]
        .into_iter()
        .find_map(|p| Some((name.strip_suffix(p)?.strip_suffix('.')?, p)))
}

/// `model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight` (llama, qwen2).
pub fn hf_to_gguf(name: &str) -> Option<String> {
    hf_to_gguf_in("llama", name)
}

/// `blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight` (llama, qwen2).
pub fn gguf_to_hf(name: &str) -> Option<String> {
    gguf_to_hf_in("llama", name)
}

/// [`hf_to_gguf`] for the llama.cpp architecture `arch`.
pub fn hf_to_gguf_in(arch: &str, name: &str) -> Option<String> {
    let (stem, param) = split_param(name)?;
    if let Some(&(_, g)) = GLOBAL.iter().find(|(h, _)| *h == stem) {
        return Some(format!("{g}.{param}"));
    }
    let rest = stem.strip_prefix("model.layers.")?;
    let (layer, module) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let &(_, g) = arch_layer(arch)
        .iter()
        .chain(LAYER)
        .find(|(h, _)| *h == module)?;
    Some(format!("blk.{layer}.{g}.{param}"))
}

/// [`gguf_to_hf`] for the llama.cpp architecture `arch`.
pub fn gguf_to_hf_in(arch: &str, name: &str) -> Option<String> {
    let (stem, param) = split_param(name)?;
    if let Some(&(h, _)) = GLOBAL.iter().find(|(_, g)| *g == stem) {
        return Some(format!("{h}.{param}"));
    }
    let rest = stem.strip_prefix("blk.")?;
    let (layer, module) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let &(h, _) = arch_layer(arch)
        .iter()
        .chain(LAYER)
        .find(|(_, g)| *g == module)?;
    Some(format!("model.layers.{layer}.{h}.{param}"))
}

/// Which projection's rows llama.cpp permutes for the `llama` architecture, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotary {
    Query,
    Key,
}

/// `Some` for the Q and K projections (weight or bias), named the HF way.
pub fn rotary_of(hf_name: &str) -> Option<Rotary> {
    if hf_name.contains(".self_attn.q_proj.") {
        Some(Rotary::Query)
    } else if hf_name.contains(".self_attn.k_proj.") {
        Some(Rotary::Key)
    } else {
        None
    }
}

/// HF → GGUF row order (llama.cpp's `permute`): within each of `n_heads` heads of `d` rows,
/// row `j * d/2 + i` moves to `2 i + j`. `data` is row-major with `row_len` columns.
pub fn permute_rows(data: &[f32], row_len: usize, n_heads: usize) -> Vec<f32> {
    reorder_rows(data, row_len, n_heads, |half, i, j| {
        (i * 2 + j, j * half + i)
    })
}

/// GGUF → HF row order, the inverse of [`permute_rows`].
pub fn unpermute_rows(data: &[f32], row_len: usize, n_heads: usize) -> Vec<f32> {
    reorder_rows(data, row_len, n_heads, |half, i, j| {
        (j * half + i, i * 2 + j)
    })
}

/// Copies rows head by head; `map(half, i, j)` gives (destination, source) row within a head.
fn reorder_rows(
    data: &[f32],
    row_len: usize,
    n_heads: usize,
    map: impl Fn(usize, usize, usize) -> (usize, usize),
) -> Vec<f32> {
    let rows = data.len() / row_len;
    assert!(
        n_heads > 0 && rows.is_multiple_of(2 * n_heads),
        "{rows} rows do not split into {n_heads} rotary heads"
    );
    let head = rows / n_heads;
    let half = head / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let (dst, src) = map(half, i, j);
                let (dst, src) = ((h * head + dst) * row_len, (h * head + src) * row_len);
                out[dst..dst + row_len].copy_from_slice(&data[src..src + row_len]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (hf, g) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.norm.weight", "output_norm.weight"),
            (
                "model.layers.12.self_attn.q_proj.bias",
                "blk.12.attn_q.bias",
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "blk.0.ffn_norm.weight",
            ),
            (
                "model.layers.1.mlp.down_proj.weight",
                "blk.1.ffn_down.weight",
            ),
        ] {
            assert_eq!(hf_to_gguf(hf).as_deref(), Some(g));
            assert_eq!(gguf_to_hf(g).as_deref(), Some(hf));
        }
        assert_eq!(
            hf_to_gguf("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
        assert_eq!(gguf_to_hf("rope_freqs.weight"), None);
    }

    #[test]
    fn gemma_and_phi3_names_map_both_ways() {
        for (arch, hf, g) in [
            (
                "gemma3",
                "model.layers.1.post_attention_layernorm.weight",
                "blk.1.post_attention_norm.weight",
            ),
            (
                "gemma2",
                "model.layers.0.pre_feedforward_layernorm.weight",
                "blk.0.ffn_norm.weight",
            ),
            (
                "gemma3",
                "model.layers.2.post_feedforward_layernorm.weight",
                "blk.2.post_ffw_norm.weight",
            ),
            (
                "gemma3",
                "model.layers.2.self_attn.q_norm.weight",
                "blk.2.attn_q_norm.weight",
            ),
            (
                "gemma3",
                "model.layers.2.mlp.up_proj.weight",
                "blk.2.ffn_up.weight",
            ),
            (
                "phi3",
                "model.layers.3.self_attn.qkv_proj.weight",
                "blk.3.attn_qkv.weight",
            ),
            (
                "phi3",
                "model.layers.3.mlp.gate_up_proj.weight",
                "blk.3.ffn_up.weight",
            ),
            (
                "phi3",
                "model.layers.3.post_attention_layernorm.weight",
                "blk.3.ffn_norm.weight",
            ),
            (
                "qwen3",
                "model.layers.0.self_attn.k_norm.weight",
                "blk.0.attn_k_norm.weight",
            ),
        ] {
            assert_eq!(hf_to_gguf_in(arch, hf).as_deref(), Some(g), "{arch}");
            assert_eq!(gguf_to_hf_in(arch, g).as_deref(), Some(hf), "{arch}");
        }
    }

    #[test]
    fn permutation_interleaves_the_halves_of_each_head() {
        // 2 heads of 4 rows, 1 column: head rows [x0 x1 y0 y1] → [x0 y0 x1 y1].
        let hf = [0., 1., 2., 3., 10., 11., 12., 13.];
        let g = permute_rows(&hf, 1, 2);
        assert_eq!(g, vec![0., 2., 1., 3., 10., 12., 11., 13.]);
        assert_eq!(unpermute_rows(&g, 1, 2), hf.to_vec());
    }
}

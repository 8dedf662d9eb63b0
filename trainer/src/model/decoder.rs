//! The one decoder behind Llama, Mistral, Qwen2 and Qwen3. Structs are named after the
//! checkpoint, so `model.layers.3.self_attn.q_proj.weight` is the field path
//! `causal_lm.model.layers[3].self_attn.q_proj.weight`. Family differences are switches of
//! [`ModelSpec`] (biases, q/k norm, head_dim, rope scaling, tied embeddings).

use super::attention::{self, AttentionMask, AttentionShape};
use super::config::ModelSpec;
use super::rope::{self, Rope};
use crate::lora::Lora;
use crate::vocab::trainable_tokens::TrainableTokens;
use crate::weights::Weights;
use anyhow::Result;
use tch::{Device, Kind, Tensor};

/// Where each token sits: positions for rotary, and (for packed rows) which document it
/// belongs to, so attention stays inside documents.
pub struct Positions {
    /// `[B, T]` int64.
    pub position_ids: Tensor,
    /// `[B, T]` int64 document index per token, or `None` for one document per row.
    pub doc_ids: Option<Tensor>,
}

impl Positions {
    /// 0..T for every row, plain causal attention.
    pub fn contiguous(batch: i64, seq_len: i64, device: Device) -> Positions {
        let position_ids = Tensor::arange(seq_len, (Kind::Int64, device))
            .unsqueeze(0)
            .expand([batch, seq_len], true);
        Positions {
            position_ids,
            doc_ids: None,
        }
    }
}

pub struct Linear {
    /// `[out, in]`, as in the checkpoint; frozen.
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// The trainable adapter, when this linear is a LoRA target.
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let out = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            Some(lora) => lora.forward(x, &self.weight, self.bias.as_ref(), out, train),
            None => out,
        }
    }
}

pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Normalizes in f32, scales in the compute dtype (as transformers' LlamaRMSNorm).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let variance = xf.square().mean_dim(-1, true, Kind::Float);
        &self.weight * (xf * (variance + self.eps).rsqrt()).to_kind(kind)
    }
}

pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// Qwen3: RMSNorm over each head's q and k.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &AttentionMask,
        train: bool,
        cache: Option<&mut LayerCache>,
    ) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let heads = |proj: &Linear, n: i64, norm: &Option<RmsNorm>| {
            let h = proj.forward(x, train).view([b, t, n, self.head_dim]);
            let h = match norm {
                Some(norm) => norm.forward(&h),
                None => h,
            };
            h.transpose(1, 2)
        };
        let q = rope::apply(&heads(&self.q_proj, self.num_heads, &self.q_norm), cos, sin);
        let k = rope::apply(
            &heads(&self.k_proj, self.num_kv_heads, &self.k_norm),
            cos,
            sin,
        );
        let v = heads(&self.v_proj, self.num_kv_heads, &None);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let y = attention::attend(&q, &k, &v, mask);
        self.o_proj.forward(
            &y.transpose(1, 2)
                .reshape([b, t, self.num_heads * self.head_dim]),
            train,
        )
    }
}

pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let gated = self.gate_proj.forward(x, train).silu() * self.up_proj.forward(x, train);
        self.down_proj.forward(&gated, train)
    }
}

pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &AttentionMask,
        train: bool,
        cache: Option<&mut LayerCache>,
    ) -> Tensor {
        let h = x + self.self_attn.forward(
            &self.input_layernorm.forward(x),
            cos,
            sin,
            mask,
            train,
            cache,
        );
        &h + self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h), train)
    }

    /// The layer's linears with their checkpoint names relative to the layer.
    fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut m.gate_proj),
            ("mlp.up_proj", &mut m.up_proj),
            ("mlp.down_proj", &mut m.down_proj),
        ]
    }
}

pub struct Model {
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    rope: Rope,
}

pub struct CausalLm {
    pub spec: ModelSpec,
    pub model: Model,
    /// `[vocab, hidden]`; shares storage with `model.embed_tokens` when embeddings are tied.
    pub lm_head: Tensor,
    pub kind: Kind,
    pub device: Device,
    /// Largest attention (scores per layer) that takes the batched kernel; see
    /// [`attention`]. 0 keeps every batch on libtorch's fused kernel.
    pub batched_attention_max_scores: i64,
    /// Embedding / output-head rows trained beside the adapter (`lora.trainable_tokens`).
    pub trainable_tokens: Option<TrainableTokens>,
}

impl CausalLm {
    /// Builds the model from checkpoint tensors, converted to `kind` on `device`.
    pub fn load(
        spec: ModelSpec,
        weights: &mut Weights,
        kind: Kind,
        device: Device,
    ) -> Result<CausalLm> {
        let mut ld = Loader {
            weights,
            kind,
            device,
            eps: spec.rms_norm_eps,
        };
        let (hidden, inter) = (spec.hidden_size, spec.intermediate_size);
        let (q_dim, kv_dim) = (
            spec.num_heads * spec.head_dim,
            spec.num_kv_heads * spec.head_dim,
        );
        let mut layers = Vec::with_capacity(spec.num_layers);
        for i in 0..spec.num_layers {
            let p = format!("model.layers.{i}");
            let a = format!("{p}.self_attn");
            let (q_norm, k_norm) = if spec.qk_norm {
                (
                    Some(ld.norm(&format!("{a}.q_norm"), spec.head_dim)?),
                    Some(ld.norm(&format!("{a}.k_norm"), spec.head_dim)?),
                )
            } else {
                (None, None)
            };
            let self_attn = Attention {
                q_proj: ld.linear(&format!("{a}.q_proj"), q_dim, hidden, spec.qkv_bias)?,
                k_proj: ld.linear(&format!("{a}.k_proj"), kv_dim, hidden, spec.qkv_bias)?,
                v_proj: ld.linear(&format!("{a}.v_proj"), kv_dim, hidden, spec.qkv_bias)?,
                o_proj: ld.linear(&format!("{a}.o_proj"), hidden, q_dim, spec.o_bias)?,
                q_norm,
                k_norm,
                num_heads: spec.num_heads,
                num_kv_heads: spec.num_kv_heads,
                head_dim: spec.head_dim,
            };
            let mlp = Mlp {
                gate_proj: ld.linear(
                    &format!("{p}.mlp.gate_proj"),
                    inter,
                    hidden,
                    spec.mlp_bias,
                )?,
                up_proj: ld.linear(&format!("{p}.mlp.up_proj"), inter, hidden, spec.mlp_bias)?,
                down_proj: ld.linear(
                    &format!("{p}.mlp.down_proj"),
                    hidden,
                    inter,
                    spec.mlp_bias,
                )?,
            };
            layers.push(DecoderLayer {
                input_layernorm: ld.norm(&format!("{p}.input_layernorm"), hidden)?,
                self_attn,
                post_attention_layernorm: ld
                    .norm(&format!("{p}.post_attention_layernorm"), hidden)?,
                mlp,
            });
        }
        let embed_tokens = ld.tensor("model.embed_tokens.weight", &[spec.vocab_size, hidden])?;
        let norm = ld.norm("model.norm", hidden)?;
        let lm_head = if spec.tie_word_embeddings {
            // Some tied checkpoints still store a copy of lm_head.weight; transformers ignores it.
            ld.weights.skip("lm_head.weight");
            embed_tokens.shallow_clone()
        } else {
            ld.tensor("lm_head.weight", &[spec.vocab_size, hidden])?
        };
        ld.weights.ensure_all_used()?;
        let rope = Rope::new(&spec, device);
        Ok(CausalLm {
            spec,
            model: Model {
                embed_tokens,
                layers,
                norm,
                rope,
            },
            lm_head,
            kind,
            device,
            batched_attention_max_scores: attention::BATCHED_MAX_SCORES,
            trainable_tokens: None,
        })
    }

    /// Every linear of the decoder (not `lm_head`) with its checkpoint module path,
    /// e.g. `model.layers.0.self_attn.q_proj`.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut all = Vec::new();
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            for (name, linear) in layer.linears_mut() {
                all.push((format!("model.layers.{i}.{name}"), linear));
            }
        }
        all
    }

    /// Rotary cos/sin and the attention mask for a batch of whole sequences, shared by
    /// every layer.
    pub fn attention_inputs(&self, positions: &Positions, seq_len: i64) -> AttentionInputs {
        self.attention_inputs_for(positions, seq_len, self.batched_attention_max_scores)
    }

    /// [`Self::attention_inputs`], the batched attention kernel capped at `batched_max_scores`.
    fn attention_inputs_for(
        &self,
        positions: &Positions,
        seq_len: i64,
        batched_max_scores: i64,
    ) -> AttentionInputs {
        let (cos, sin) = self.model.rope.cos_sin(&positions.position_ids, self.kind);
        let shape = AttentionShape {
            batch: positions.position_ids.size()[0],
            seq_len,
            num_heads: self.spec.num_heads,
            num_kv_heads: self.spec.num_kv_heads,
            kind: self.kind,
            device: self.device,
        };
        let mask = AttentionMask::new(
            &shape,
            positions.doc_ids.as_ref(),
            self.spec.sliding_window,
            batched_max_scores,
        );
        AttentionInputs { cos, sin, mask }
    }

    pub fn embed(&self, input_ids: &Tensor) -> Tensor {
        let h = Tensor::embedding(&self.model.embed_tokens, input_ids, -1, false, false);
        match &self.trainable_tokens {
            Some(tokens) => tokens.embed(h, input_ids),
            None => h,
        }
    }

    /// Final hidden states `[B, T, hidden]` (after the last norm) for `input_ids` `[B, T]`.
    /// With a `dropout_seed` the adapters' dropout is on, its masks drawn from a generator
    /// seeded per layer, so the same seed replays the same pass (resume, recomputation).
    pub fn forward_hidden_seeded(
        &self,
        input_ids: &Tensor,
        positions: &Positions,
        dropout_seed: Option<i64>,
    ) -> Tensor {
        let ctx = self.attention_inputs(positions, input_ids.size()[1]);
        let mut h = self.embed(input_ids);
        for (i, layer) in self.model.layers.iter().enumerate() {
            if let Some(seed) = dropout_seed {
                tch::manual_seed(layer_seed(seed, i));
            }
            h = layer.forward(
                &h,
                &ctx.cos,
                &ctx.sin,
                &ctx.mask,
                dropout_seed.is_some(),
                None,
            );
        }
        self.model.norm.forward(&h)
    }

    /// [`Self::forward_hidden_seeded`] for inference (no dropout).
    pub fn hidden_states(&self, input_ids: &Tensor, positions: &Positions) -> Tensor {
        self.forward_hidden_seeded(input_ids, positions, None)
    }

    /// Logits `[B, T, vocab]` in the compute dtype. Training and eval never build this whole
    /// tensor (see `loss`); it is for tests and generation.
    pub fn logits(&self, input_ids: &Tensor, positions: &Positions) -> Tensor {
        self.hidden_states(input_ids, positions)
            .linear::<Tensor>(&self.output_weight(), None)
    }
}

impl CausalLm {
    /// Generation: the f32 logits `[vocab]` after the last token of `input_ids` `[1, T]`,
    /// given the tokens `cache` has seen, which then holds these too. The first call takes
    /// the whole prompt; later calls one token each.
    pub fn next_token_logits(&self, input_ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let t = input_ids.size()[1];
        if cache.len > 0 && t != 1 {
            anyhow::bail!("after the prompt, the KV cache takes one token at a time");
        }
        let position_ids =
            Tensor::arange_start(cache.len, cache.len + t, (Kind::Int64, self.device)).unsqueeze(0);
        let positions = Positions {
            position_ids,
            doc_ids: None,
        };
        // The keys outnumber the queries once the cache holds some: only the fused kernel.
        let ctx = self.attention_inputs_for(&positions, t, 0);
        let mut h = self.embed(input_ids);
        for (layer, layer_cache) in self.model.layers.iter().zip(&mut cache.layers) {
            h = layer.forward(&h, &ctx.cos, &ctx.sin, &ctx.mask, false, Some(layer_cache));
        }
        cache.len += t;
        let last = self.model.norm.forward(&h.narrow(1, t - 1, 1));
        Ok(last
            .linear::<Tensor>(&self.output_weight(), None)
            .to_kind(Kind::Float)
            .view([-1]))
    }
}

/// The keys and values of every token seen so far, per layer: generation's memory.
pub struct KvCache {
    layers: Vec<LayerCache>,
    /// How many tokens it has seen: the position of the next one.
    pub len: i64,
}

impl KvCache {
    pub fn new(lm: &CausalLm) -> KvCache {
        let layer = || LayerCache {
            keys_values: None,
            window: lm.spec.sliding_window,
        };
        KvCache {
            layers: (0..lm.model.layers.len()).map(|_| layer()).collect(),
            len: 0,
        }
    }
}

pub struct LayerCache {
    /// `[1, kv_heads, seen, head_dim]` each, after rotary.
    keys_values: Option<(Tensor, Tensor)>,
    /// Mistral's sliding window: only the last `window − 1` tokens are kept, all a next
    /// token may attend to besides itself.
    window: Option<i64>,
}

impl LayerCache {
    /// Adds this step's keys and values; returns all of them, the past ones first.
    fn append(&mut self, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let (k, v) = match self.keys_values.take() {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2), Tensor::cat(&[pv, v], 2)),
            None => (k, v),
        };
        let seen = k.size()[2];
        let keep = self.window.map_or(seen, |w| seen.min(w - 1));
        self.keys_values = Some((
            k.narrow(2, seen - keep, keep),
            v.narrow(2, seen - keep, keep),
        ));
        (k, v)
    }
}

pub struct AttentionInputs {
    pub cos: Tensor,
    pub sin: Tensor,
    pub mask: AttentionMask,
}

/// The dropout seed of `layer` within a pass seeded with `seed`.
pub fn layer_seed(seed: i64, layer: usize) -> i64 {
    seed.wrapping_add((layer as i64 + 1).wrapping_mul(0x2545_F491)) & 0x7FFF_FFFF_FFFF
}

/// Takes tensors out of the checkpoint by name, in the compute dtype and on the device.
struct Loader<'a> {
    weights: &'a mut Weights,
    kind: Kind,
    device: Device,
    eps: f64,
}

impl Loader<'_> {
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.weights.get(name, shape, self.kind, self.device)
    }

    fn linear(&mut self, prefix: &str, out: i64, inp: i64, bias: bool) -> Result<Linear> {
        let weight = self.tensor(&format!("{prefix}.weight"), &[out, inp])?;
        let bias = if bias {
            Some(self.tensor(&format!("{prefix}.bias"), &[out])?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            lora: None,
        })
    }

    fn norm(&mut self, prefix: &str, dim: i64) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.tensor(&format!("{prefix}.weight"), &[dim])?,
            eps: self.eps,
        })
    }
}

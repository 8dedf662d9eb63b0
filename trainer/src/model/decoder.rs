//! The one decoder behind every family. Structs are named after the checkpoint, so
//! `model.layers.3.self_attn.q_proj.weight` is the field path
//! `causal_lm.model.layers[3].self_attn.q_proj.weight`. Family differences are switches of
//! [`ModelSpec`] (biases, q/k norm, head_dim, rope scaling, tied embeddings, Gemma's norms
//! and embedding scale, soft-caps, per-layer windows and rotary embeddings, Phi-3's fused
//! projections).

use super::attention::{self, AttentionMask, AttentionShape};
use super::config::{Activation, LayerSpec, ModelSpec, NormKind};
use super::fused::{GateUpProj, QkvProj};
use super::norm::RmsNorm;
use super::quant::{self, LinearWeight, Quantization};
use super::rope::{self, Ropes, RotaryTables};
use crate::lora::Lora;
use crate::vocab::trainable_tokens::TrainableTokens;
use crate::weights::{TensorLayout, Weights};
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
    /// `[out, in]`, as in the checkpoint (dense or 4-bit); frozen.
    pub weight: LinearWeight,
    pub bias: Option<Tensor>,
    /// The trainable adapter, when this linear is a LoRA target.
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let out = self.weight.linear(x, self.bias.as_ref());
        match &self.lora {
            Some(lora) => lora.forward(x, &self.weight, self.bias.as_ref(), out, train),
            None => out,
        }
    }
}

pub struct Attention {
    /// q, k and v: `q_proj`, `k_proj`, `v_proj`, or Phi-3's `qkv_proj`.
    pub qkv: QkvProj,
    pub o_proj: Linear,
    /// Qwen3, Gemma 3: RMSNorm over each head's q and k.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
    scale: f64,
    softcap: Option<f64>,
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        rotary: Option<(&Tensor, &Tensor)>,
        mask: &AttentionMask,
        train: bool,
        cache: Option<&mut LayerCache>,
    ) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let (q_dim, kv_dim) = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        let [q, k, v] = self.qkv.project(x, train, q_dim, kv_dim);
        let heads = |h: Tensor, n: i64, norm: &Option<RmsNorm>| {
            let h = h.view([b, t, n, self.head_dim]);
            let h = match norm {
                Some(norm) => norm.forward(&h),
                None => h,
            };
            h.transpose(1, 2)
        };
        let turn = |h: Tensor| match rotary {
            Some((cos, sin)) => rope::apply(&h, cos, sin),
            None => h,
        };
        let q = turn(heads(q, self.num_heads, &self.q_norm));
        let k = turn(heads(k, self.num_kv_heads, &self.k_norm));
        let v = heads(v, self.num_kv_heads, &None);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let y = match self.softcap {
            Some(cap) => attention::attend_softcapped(&q, &k, &v, mask, self.scale, cap),
            None => attention::attend(&q, &k, &v, mask, self.scale),
        };
        self.o_proj
            .forward(&y.transpose(1, 2).reshape([b, t, q_dim]), train)
    }
}

pub struct Mlp {
    /// `gate_proj` and `up_proj`, or Phi-3's `gate_up_proj`.
    pub gate_up: GateUpProj,
    pub down_proj: Linear,
    activation: Activation,
}

impl Mlp {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let [gate, up] = self.gate_up.project(x, train);
        let gate = match self.activation {
            Activation::Silu => gate.silu(),
            Activation::GeluTanh => gate.gelu("tanh"),
            Activation::Gelu => gate.gelu("none"),
        };
        self.down_proj.forward(&(gate * up), train)
    }
}

/// Gemma 2/3's norms around the MLP (with `post_attention_layernorm` then normalizing the
/// attention output instead of the MLP input).
pub struct FeedForwardNorms {
    pub pre_feedforward_layernorm: RmsNorm,
    pub post_feedforward_layernorm: RmsNorm,
}

pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub feedforward_norms: Option<FeedForwardNorms>,
    pub mlp: Mlp,
    /// This layer's window and rotary embedding.
    pub spec: LayerSpec,
}

impl DecoderLayer {
    pub fn forward(
        &self,
        x: &Tensor,
        ctx: &AttentionInputs,
        train: bool,
        cache: Option<&mut LayerCache>,
    ) -> Tensor {
        let attn = self.self_attn.forward(
            &self.input_layernorm.forward(x),
            ctx.rotary.get(self.spec.rotary),
            ctx.mask(self.spec.window),
            train,
            cache,
        );
        match &self.feedforward_norms {
            None => {
                let h = x + attn;
                &h + self
                    .mlp
                    .forward(&self.post_attention_layernorm.forward(&h), train)
            }
            Some(norms) => {
                let h = x + self.post_attention_layernorm.forward(&attn);
                let mlp = self
                    .mlp
                    .forward(&norms.pre_feedforward_layernorm.forward(&h), train);
                &h + norms.post_feedforward_layernorm.forward(&mlp)
            }
        }
    }

    /// The layer's linears with their checkpoint names relative to the layer.
    fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        let mut all = a.qkv.linears_mut();
        all.push(("self_attn.o_proj", &mut a.o_proj));
        all.extend(m.gate_up.linears_mut());
        all.push(("mlp.down_proj", &mut m.down_proj));
        all
    }
}

pub struct Model {
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    ropes: Ropes,
}

/// The output projection and what follows it: Gemma 2's final soft-cap.
pub struct LmHead {
    /// `[vocab, hidden]` in the compute dtype, trained token rows written in place.
    pub weight: Tensor,
    /// Logits become `tanh(z / cap) · cap`, in the compute dtype.
    pub softcap: Option<f64>,
    /// The rows that train (`lora.trainable_tokens`): (row ids `[n]` int64, their values
    /// `[n, hidden]` f32), whose gradient the loss computes.
    pub trained_rows: Option<(Tensor, Tensor)>,
}

impl LmHead {
    /// Logits of hidden states `[.., hidden]`, in their dtype.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let z = hidden.linear::<Tensor>(&self.weight, None);
        match self.softcap {
            Some(cap) => (z / cap).tanh() * cap,
            None => z,
        }
    }
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
    /// Where the checkpoint keeps the decoder (multimodal checkpoints nest it).
    pub layout: TensorLayout,
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
        let layout = TensorLayout::detect(weights.names(), spec.multimodal)?;
        let mut ld = Loader {
            weights,
            layout,
            kind,
            device,
            eps: spec.rms_norm_eps,
            quantization: spec.quantization.clone(),
            norm_kind: spec.norm,
        };
        let (hidden, inter) = (spec.hidden_size, spec.intermediate_size);
        let (q_dim, kv_dim) = (
            spec.num_heads * spec.head_dim,
            spec.num_kv_heads * spec.head_dim,
        );
        let mut layers = Vec::with_capacity(spec.num_layers);
        for (i, layer_spec) in spec.layers.iter().enumerate() {
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
            let qkv = if spec.fused_projections {
                QkvProj::Fused {
                    qkv_proj: ld.linear(
                        &format!("{a}.qkv_proj"),
                        q_dim + 2 * kv_dim,
                        hidden,
                        spec.qkv_bias,
                    )?,
                }
            } else {
                QkvProj::Separate {
                    q_proj: ld.linear(&format!("{a}.q_proj"), q_dim, hidden, spec.qkv_bias)?,
                    k_proj: ld.linear(&format!("{a}.k_proj"), kv_dim, hidden, spec.qkv_bias)?,
                    v_proj: ld.linear(&format!("{a}.v_proj"), kv_dim, hidden, spec.qkv_bias)?,
                }
            };
            let self_attn = Attention {
                qkv,
                o_proj: ld.linear(&format!("{a}.o_proj"), hidden, q_dim, spec.o_bias)?,
                q_norm,
                k_norm,
                num_heads: spec.num_heads,
                num_kv_heads: spec.num_kv_heads,
                head_dim: spec.head_dim,
                scale: spec.attention_scale,
                softcap: spec.attn_logit_softcap,
            };
            let m = format!("{p}.mlp");
            let gate_up = if spec.fused_projections {
                GateUpProj::Fused {
                    gate_up_proj: ld.linear(
                        &format!("{m}.gate_up_proj"),
                        2 * inter,
                        hidden,
                        spec.mlp_bias,
                    )?,
                }
            } else {
                GateUpProj::Separate {
                    gate_proj: ld.linear(
                        &format!("{m}.gate_proj"),
                        inter,
                        hidden,
                        spec.mlp_bias,
                    )?,
                    up_proj: ld.linear(&format!("{m}.up_proj"), inter, hidden, spec.mlp_bias)?,
                }
            };
            let mlp = Mlp {
                gate_up,
                down_proj: ld.linear(&format!("{m}.down_proj"), hidden, inter, spec.mlp_bias)?,
                activation: spec.activation,
            };
            let feedforward_norms = if spec.sandwich_norms {
                Some(FeedForwardNorms {
                    pre_feedforward_layernorm: ld
                        .norm(&format!("{p}.pre_feedforward_layernorm"), hidden)?,
                    post_feedforward_layernorm: ld
                        .norm(&format!("{p}.post_feedforward_layernorm"), hidden)?,
                })
            } else {
                None
            };
            layers.push(DecoderLayer {
                input_layernorm: ld.norm(&format!("{p}.input_layernorm"), hidden)?,
                self_attn,
                post_attention_layernorm: ld
                    .norm(&format!("{p}.post_attention_layernorm"), hidden)?,
                feedforward_norms,
                mlp,
                spec: *layer_spec,
            });
        }
        let embed_tokens = ld.tensor("model.embed_tokens.weight", &[spec.vocab_size, hidden])?;
        let norm = ld.norm("model.norm", hidden)?;
        let lm_head = if spec.tie_word_embeddings {
            // Some tied checkpoints still store a copy of lm_head.weight; transformers ignores it.
            ld.weights.skip(&layout.tensor("lm_head.weight"));
            embed_tokens.shallow_clone()
        } else {
            ld.tensor("lm_head.weight", &[spec.vocab_size, hidden])?
        };
        if spec.multimodal {
            ld.weights.skip_outside(&layout);
        }
        ld.weights.ensure_all_used()?;
        let ropes = Ropes::new(&spec, device);
        Ok(CausalLm {
            spec,
            model: Model {
                embed_tokens,
                layers,
                norm,
                ropes,
            },
            lm_head,
            kind,
            device,
            batched_attention_max_scores: attention::BATCHED_MAX_SCORES,
            layout,
            trainable_tokens: None,
        })
    }

    /// Every linear of the decoder (not `lm_head`) with its module path as PEFT names it,
    /// e.g. `model.layers.0.self_attn.q_proj` (Gemma 3 multimodal:
    /// `model.language_model.layers.0.self_attn.q_proj`).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let layout = self.layout;
        let mut all = Vec::new();
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            for (name, linear) in layer.linears_mut() {
                all.push((
                    layout.peft_module(&format!("model.layers.{i}.{name}")),
                    linear,
                ));
            }
        }
        all
    }

    /// The output projection: `lm_head` with any trained token rows in place, and its
    /// soft-cap.
    pub fn head(&self) -> LmHead {
        let rows = self.trainable_tokens.as_ref().and_then(|t| t.output_rows());
        LmHead {
            weight: match rows {
                Some(rows) => rows.written_into(&self.lm_head),
                None => self.lm_head.shallow_clone(),
            },
            softcap: self.spec.final_logit_softcap,
            trained_rows: rows.map(|r| (r.index.shallow_clone(), r.values.shallow_clone())),
        }
    }

    /// Rotary cos/sin and the attention masks for a batch of whole sequences, shared by
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
        let rotary = self.model.ropes.cos_sin(&positions.position_ids, self.kind);
        let shape = AttentionShape {
            batch: positions.position_ids.size()[0],
            seq_len,
            num_heads: self.spec.num_heads,
            num_kv_heads: self.spec.num_kv_heads,
            kind: self.kind,
            device: self.device,
        };
        let masks = self
            .windows()
            .into_iter()
            .map(|window| {
                let mask = AttentionMask::new(
                    &shape,
                    positions.doc_ids.as_ref(),
                    window,
                    batched_max_scores,
                );
                (window, mask)
            })
            .collect();
        AttentionInputs { rotary, masks }
    }

    /// Token embeddings (Gemma: × √hidden, the factor rounded to the compute dtype first).
    pub fn embed(&self, input_ids: &Tensor) -> Tensor {
        let h = Tensor::embedding(&self.model.embed_tokens, input_ids, -1, false, false);
        let h = match &self.trainable_tokens {
            Some(tokens) => tokens.embed(h, input_ids),
            None => h,
        };
        match self.spec.embed_scale {
            Some(scale) => {
                let scale = Tensor::from(scale as f32)
                    .to_kind(h.kind())
                    .to_device(h.device());
                h * scale
            }
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
            h = layer.forward(&h, &ctx, dropout_seed.is_some(), None);
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
        self.head()
            .logits(&self.hidden_states(input_ids, positions))
    }
}

impl CausalLm {
    /// LongRoPE picks its long factors once a pass reaches past the original length, so the
    /// keys a cache holds from before are rotated with the short ones. Generation then runs
    /// the whole sequence again, as transformers does (Phi-3's `prepare_inputs_for_generation`
    /// drops the cache at that step): `true` when a step of `new` tokens after `cached` ones
    /// is that step.
    pub fn needs_recompute(&self, cached: i64, new: i64) -> bool {
        match &self.spec.rope_scaling {
            super::config::RopeScaling::LongRope {
                original_max_position_embeddings: original,
                ..
            } => {
                let original = *original as i64;
                cached > 0 && cached <= original && cached + new > original
            }
            _ => false,
        }
    }

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
        Ok(self.forward_cached_with(input_ids, &ctx, cache).view([-1]))
    }

    /// Generation for a batch: the f32 logits `[B, vocab]` after the last token of each row
    /// of `input_ids` `[B, T]` (at `position_ids` `[B, T]`), attending as `mask_for(window)`
    /// allows (one mask per distinct layer window, [`Self::windows`]) to the keys `cache`
    /// holds and then these; `cache` then holds these too.
    pub fn forward_cached(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        mask_for: impl Fn(Option<i64>) -> AttentionMask,
        cache: &mut KvCache,
    ) -> Tensor {
        let ctx = AttentionInputs {
            rotary: self.model.ropes.cos_sin(position_ids, self.kind),
            masks: self
                .windows()
                .into_iter()
                .map(|w| (w, mask_for(w)))
                .collect(),
        };
        self.forward_cached_with(input_ids, &ctx, cache)
    }

    fn forward_cached_with(
        &self,
        input_ids: &Tensor,
        ctx: &AttentionInputs,
        cache: &mut KvCache,
    ) -> Tensor {
        let t = input_ids.size()[1];
        let mut h = self.embed(input_ids);
        for (layer, layer_cache) in self.model.layers.iter().zip(&mut cache.layers) {
            h = layer.forward(&h, ctx, false, Some(layer_cache));
        }
        cache.len += t;
        let last = self.model.norm.forward(&h.narrow(1, t - 1, 1));
        self.head()
            .logits(&last)
            .to_kind(Kind::Float)
            .squeeze_dim(1)
    }

    /// The distinct attention windows of the layers (`None`: global attention), in layer
    /// order.
    pub fn windows(&self) -> Vec<Option<i64>> {
        let mut windows = Vec::new();
        for layer in &self.spec.layers {
            if !windows.contains(&layer.window) {
                windows.push(layer.window);
            }
        }
        windows
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
        KvCache {
            layers: lm
                .model
                .layers
                .iter()
                .map(|l| LayerCache {
                    keys_values: None,
                    window: l.spec.window,
                })
                .collect(),
            len: 0,
        }
    }
}

impl KvCache {
    /// Keeps only the batch rows `rows` (int64 indices), e.g. once the others have finished.
    pub fn keep_rows(&mut self, rows: &Tensor) {
        for layer in &mut self.layers {
            if let Some((k, v)) = layer.keys_values.take() {
                layer.keys_values = Some((k.index_select(0, rows), v.index_select(0, rows)));
            }
        }
    }

    /// How many keys a layer with `window` sees in a step adding `t` tokens: the cached ones
    /// (at most the window less one) and these.
    pub fn keys_after(&self, window: Option<i64>, t: i64) -> i64 {
        window.map_or(self.len, |w| self.len.min(w - 1)) + t
    }
}

pub struct LayerCache {
    /// `[B, kv_heads, seen, head_dim]` each, after rotary.
    keys_values: Option<(Tensor, Tensor)>,
    /// A sliding layer's window: only the last `window − 1` tokens are kept, all a next
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

/// What every layer of one pass shares: the rotary tables and one mask per window.
pub struct AttentionInputs {
    pub rotary: RotaryTables,
    masks: Vec<(Option<i64>, AttentionMask)>,
}

impl AttentionInputs {
    /// The mask of layers with `window`.
    pub fn mask(&self, window: Option<i64>) -> &AttentionMask {
        &self
            .masks
            .iter()
            .find(|(w, _)| *w == window)
            .expect("a mask for every layer's window")
            .1
    }
}

/// The dropout seed of `layer` within a pass seeded with `seed`.
pub fn layer_seed(seed: i64, layer: usize) -> i64 {
    seed.wrapping_add((layer as i64 + 1).wrapping_mul(0x2545_F491)) & 0x7FFF_FFFF_FFFF
}

/// Takes tensors out of the checkpoint by canonical name, in the compute dtype and on the
/// device.
struct Loader<'a> {
    weights: &'a mut Weights,
    layout: TensorLayout,
    kind: Kind,
    device: Device,
    eps: f64,
    quantization: Option<Quantization>,
    norm_kind: NormKind,
}

impl Loader<'_> {
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let name = self.layout.tensor(name);
        quant::load_dense(self.weights, &name, shape, self.kind, self.device)
    }

    fn linear(&mut self, prefix: &str, out: i64, inp: i64, bias: bool) -> Result<Linear> {
        let weight = quant::load_linear(
            self.weights,
            &self.layout.tensor(&format!("{prefix}.weight")),
            &[out, inp],
            self.kind,
            self.device,
            self.quantization.as_ref(),
        )?;
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
            kind: self.norm_kind,
        })
    }
}

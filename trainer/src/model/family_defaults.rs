//! The defaults of transformers 5's config classes for the families that publish sparse
//! configs: a key `config.json` omits takes its class default, as `from_pretrained` does.
//! (Gemma 3's multimodal checkpoints list only a handful of `text_config` keys.) Llama,
//! Mistral and Qwen keep requiring their keys, as before.

use super::config::Family;
use serde_json::{json, Value};

/// Inserts the family's defaults for every key `cfg` lacks; a key present with `null`
/// stays null (Gemma 2 without soft-capping writes `"final_logit_softcapping": null`).
pub fn fill(family: Family, cfg: &mut Value) {
    let Some(defaults) = defaults(family) else {
        return;
    };
    let (Some(obj), Value::Object(defaults)) = (cfg.as_object_mut(), defaults) else {
        return;
    };
    for (key, value) in defaults {
        obj.entry(key).or_insert(value);
    }
}

fn defaults(family: Family) -> Option<Value> {
    Some(match family {
        // GemmaConfig (google/gemma-7b)
        Family::Gemma => json!({
            "vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576,
            "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16,
            "head_dim": 256, "hidden_act": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": true, "rope_theta": 10000.0,
        }),
        // Gemma2Config (google/gemma2-7b)
        Family::Gemma2 => json!({
            "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216,
            "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
            "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
            "rope_theta": 10000.0, "query_pre_attn_scalar": 256, "sliding_window": 4096,
            "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
        }),
        // Gemma3TextConfig (google/gemma-3-4b-it); its rope defaults (1e6 global, 1e4 local)
        // are applied where the rope is read.
        Family::Gemma3 => json!({
            "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
            "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
            "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true, "rope_theta": 1000000.0,
            "query_pre_attn_scalar": 256, "sliding_window": 4096,
        }),
        // Phi3Config (microsoft/Phi-3-mini-4k-instruct)
        Family::Phi3 => json!({
            "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
            "num_hidden_layers": 32, "num_attention_heads": 32, "hidden_act": "silu",
            "max_position_embeddings": 4096, "original_max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "rope_theta": 10000.0,
        }),
        // SmolLM3Config (HuggingFaceTB/SmolLM3-3B)
        Family::SmolLM3 => json!({
            "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 11008,
            "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 4,
            "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true, "rope_theta": 2000000.0, "no_rope_layer_interval": 4,
        }),
        Family::Llama | Family::Mistral | Family::Qwen2 | Family::Qwen3 => return None,
    })
}

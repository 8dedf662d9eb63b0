#!/usr/bin/env python3
"""A model with a checkpoint's shapes and random weights, for benchmarking where the real
checkpoint cannot go (a machine without network): same layers, same FLOPs, other losses.

    random_model.py SRC_DIR OUT_DIR [bf16]

SRC_DIR holds config.json and the tokenizer files; OUT_DIR gets those and model.safetensors
(f32, or bf16 as most checkpoints are published; transformers' own initialisation with seed 0).
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

src, out = Path(sys.argv[1]), Path(sys.argv[2])
dtype = torch.bfloat16 if sys.argv[3:] == ["bf16"] else torch.float32
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=dtype)
model.save_pretrained(out)
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
             "generation_config.json", "special_tokens_map.json"):
    if (src / name).exists():
        shutil.copy(src / name, out / name)
print(f"random-weight model at {out}")

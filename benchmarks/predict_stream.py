"""`llmhead predict` on files of growing length: peak memory must stay flat in the number of rows.

    python benchmarks/predict_stream.py [--rows 10000 100000] [--model DIR]

Without --model it first trains a head on frozen SmolLM2 (300 Rotten Tomatoes snippets, saved under --work; with
--layer k on block k's output, the blocks above never built, so each row costs k/30 of the full model). Each
input is a CSV of short texts (2-6 words drawn from the snippets, an id and a spare column); each size runs as its
own `python -m llmhead predict MODEL in.csv --out out.csv --proba` process, whose peak RSS is read by a fresh
parent (getrusage of its one child). The output is checked: every row, in order, every column. Prints a table and
one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:]).returncode
print(code, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def train_model(folder: Path, layer: int | None) -> Path:
    import llmhead
    from llmhead import corpora

    data = corpora.rotten_tomatoes()["train"].shuffle(seed=0).select(range(300))
    template = "Review: {text}\nSentiment:"
    clf = llmhead.from_pretrained("smollm2-135m", mode="head", template=template, head_hidden=[], layer=layer)
    clf.fit(data, text="text", label="label", progress=False)
    return clf.save(folder)


def short_texts(n: int, seed: int = 0) -> list[str]:
    from llmhead import corpora

    words = " ".join(corpora.rotten_tomatoes()["train"]["text"][:2000]).split()
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=rng.randint(2, 6))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--model", help="a saved model (default: train a SmolLM2 head first)")
    parser.add_argument("--work", default="runs/predict_stream")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--layer", type=int, help="pool block k (the blocks above are never built): a cheaper model")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else work / "model"
    if not (model / "llmhead.json").is_file():
        train_model(model, args.layer)
    texts = short_texts(max(args.rows))
    rows = []
    for n in args.rows:
        source, out = work / f"in-{n}.csv", work / f"out-{n}.csv"
        with open(source, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "spare"])
            writer.writerows([i, texts[i], f"{i:07d}"] for i in range(n))
        command = [sys.executable, "-m", "llmhead", "predict", str(model), str(source), "--out", str(out)]
        command += ["--proba", "--batch-size", str(args.batch_size)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        result = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env)
        code, seconds, rss_kib = result.stdout.split()
        if code != "0":
            raise SystemExit(f"predict failed on {n} rows:\n{result.stderr[-3000:]}")
        with open(out, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            ids = [int(r[0]) for r in reader]
        assert header[:4] == ["id", "text", "spare", "prediction"] and header[4].startswith("proba_"), header
        assert ids == list(range(n)), "rows missing or out of order"
        rows.append({"rows": n, "seconds": round(float(seconds), 1), "peak_rss_mb": round(int(rss_kib) / 1024)})
        rows[-1]["rows_per_s"] = round(n / float(seconds), 1)
        print(
            f"{n:>9,} rows  {rows[-1]['seconds']:>8} s  {rows[-1]['rows_per_s']:>8} rows/s  "
            f"peak RSS {rows[-1]['peak_rss_mb']:>6} MB  (output checked: {len(header)} columns, rows in order)"
        )
        source.unlink()
    import torch

    print(json.dumps({"results": rows, "threads": torch.get_num_threads(), "time": time.strftime("%Y-%m-%d %H:%M")}))


if __name__ == "__main__":
    main()

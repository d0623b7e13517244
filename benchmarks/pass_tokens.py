"""``max_pass_tokens``: full fine-tuning's peak memory and time against the tokens per forward/backward pass.

Each setting is one spawned process (its own peak RSS): SmolLM2-135M, ``mode="full"`` training every block
(``freeze_blocks=0``) with llmhead's defaults otherwise, one epoch without the warm start (so the steps dominate)
on BBC News articles (256 tokens each, batches of 32 = 8,192 tokens) or Rotten Tomatoes snippets (~26 tokens),
validated once at the end on 20 rows. The optimizer steps are the same whatever the setting (the passes'
gradients add up to the batch's, for the same dropout draws), so the final validation loss should agree to rounding.

    .venv/bin/python benchmarks/pass_tokens.py                    # both data sets, ~7 min; results/pass-tokens.json
    .venv/bin/python benchmarks/pass_tokens.py --datasets bbc --settings none 1024
    .venv/bin/python benchmarks/pass_tokens.py --quick     # tiny in-process model, seconds (a test runs it)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import isolated, machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = {"bbc": 64, "rt": 320, "quick": 32}  # training rows: 2 and 10 optimizer steps of 32
SETTINGS = ["none", "4096", "2048", "1024", "512"]


def one_run(dataset: str, setting: str, threads: int) -> dict:
    import torch
    from time_to_accuracy import DATASETS, load

    import llmhead

    torch.set_num_threads(threads)
    spec = DATASETS[dataset]
    model_path, train, val, _ = load(dataset)
    # every block trains, as when the README's figures were measured (the default now freezes the bottom half)
    clf = llmhead.from_pretrained(
        model_path, mode="full", task=spec["task"], max_length=spec["max_length"], freeze_blocks=0
    )
    _ = clf.model  # loaded before the clock starts
    tokens = None if setting == "none" else int(setting)
    start = time.perf_counter()
    clf.fit(
        train[: ROWS[dataset]],
        val[:20],
        label=spec["label"],
        epochs=1,
        warm_start=False,
        max_pass_tokens=tokens,
        progress=False,
    )
    return {
        "dataset": dataset,
        "max_pass_tokens": tokens,
        "fit_seconds": round(time.perf_counter() - start, 2),
        "val_loss": clf.history[-1]["val_loss"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["bbc", "rt"], choices=["bbc", "rt"])
    parser.add_argument("--quick", action="store_true", help="tiny in-process model and toy rows, inline")
    parser.add_argument("--settings", nargs="+", default=SETTINGS, help="tokens per pass, or none (whole batches)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "pass-tokens.json"))
    args = parser.parse_args(argv)
    datasets, settings = (["quick"], ["none", "16"]) if args.quick else (args.datasets, args.settings)
    runs = []
    for dataset in datasets:
        for setting in settings:
            run = isolated(one_run, dataset, setting, args.threads, inline=args.quick)
            runs.append(run)
            print(json.dumps(run), flush=True)
    result = {"setup": {**machine(args.threads), "rows": ROWS, "model": "smollm2-135m", "mode": "full"}, "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(runs))
    return result


def format_table(runs: list[dict]) -> str:
    lines = ["| data set | max_pass_tokens | fit s | peak RSS MB | final val loss |", "|---|---:|---:|---:|---:|"]
    for r in runs:
        tokens = "whole batches" if r["max_pass_tokens"] is None else r["max_pass_tokens"]
        rss = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"  # None: --quick runs inline
        lines.append(f"| {r['dataset']} | {tokens} | {r['fit_seconds']:.1f} | {rss} | {r['val_loss']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

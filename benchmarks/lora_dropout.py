"""What LoRA dropout costs: llmhead's LoRA defaults (adapters on every linear projection, r=16) fit with
``lora_dropout`` 0.05 and 0.0 over several seeds, each fit in its own process, on the same data.

    .venv/bin/python benchmarks/lora_dropout.py        # packaged SmolLM2, 1,000 RT snippets, 3 seeds (about 10 minutes)
    .venv/bin/python benchmarks/lora_dropout.py --quick  # tiny in-process model, toy data (a test runs it)

Dropout draws a fresh mask over each adapter's input (seven per block with every projection adapted) and keeps it
for the backward; on a CPU those draws are element-by-element random numbers. The two settings alternate which
runs first from one seed to the next, so a steady drift of the machine's speed cancels. Prints a table and one
final JSON line; writes the JSON (every run, medians, ratios) to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import isolated, machine  # noqa: E402


def fit_once(source: str, n_train: int, n_test: int, dropout: float, seed: int, threads: int) -> dict:
    from peer import _accuracy, _threads, load_data

    _threads(threads)
    import llmhead

    model_path, train, test, val = load_data(source, n_train, n_test)
    clf = llmhead.from_pretrained(
        model_path, mode="lora", head_hidden=[], max_length=128, lora_dropout=dropout, seed=seed
    )
    _ = clf.model  # the weights load here, outside the timing
    start = time.perf_counter()
    clf.fit(train, val, epochs=1, batch_size=16, progress=False)
    fit_s = time.perf_counter() - start
    predicted = clf.predict([r["text"] for r in test], batch_size=16)
    return {"dropout": dropout, "seed": seed, "fit_seconds": fit_s, "test_accuracy": _accuracy(predicted, test)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny in-process model and toy data, in-process")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--dropouts", type=float, nargs=2, default=[0.05, 0.0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    source = "quick" if args.quick else "real"
    runs = []
    for k, seed in enumerate(seeds):
        order = args.dropouts if k % 2 == 0 else args.dropouts[::-1]
        for p in order:
            shape = (source, args.n_train, args.n_test, p, seed, args.threads)
            runs.append(isolated(fit_once, *shape, inline=args.quick))
    summary = {}
    for p in args.dropouts:
        mine = [r for r in runs if r["dropout"] == p]
        peaks = [r["peak_rss_mb"] for r in mine if r["peak_rss_mb"] is not None]
        summary[str(p)] = {
            "median_fit_seconds": statistics.median(r["fit_seconds"] for r in mine),
            "mean_test_accuracy": statistics.mean(r["test_accuracy"] for r in mine),
            "max_peak_rss_mb": max(peaks) if peaks else None,
        }
    with_p, without = (summary[str(p)] for p in args.dropouts)
    ratios = {
        "of": f"lora_dropout={args.dropouts[1]} over lora_dropout={args.dropouts[0]}",
        "fit_time_ratio": round(without["median_fit_seconds"] / with_p["median_fit_seconds"], 3),
        "accuracy_delta": round(without["mean_test_accuracy"] - with_p["mean_test_accuracy"], 4),
    }
    if with_p["max_peak_rss_mb"] and without["max_peak_rss_mb"]:
        ratios["memory_ratio"] = round(without["max_peak_rss_mb"] / with_p["max_peak_rss_mb"], 3)
    result = {
        "setup": {**machine(args.threads), "n_train": args.n_train, "n_test": args.n_test, "seeds": seeds},
        "runs": runs,
        "summary": summary,
        "ratios": ratios,
    }
    print(f"{'lora_dropout':>12} {'seed':>5} {'fit s':>8} {'test acc':>9} {'peak MB':>9}")
    for r in runs:
        peak = r["peak_rss_mb"] if r["peak_rss_mb"] is not None else "-"
        print(f"{r['dropout']:>12} {r['seed']:>5} {r['fit_seconds']:>8.1f} {r['test_accuracy']:>9.4f} {peak:>9}")
    print(json.dumps({"ratios": ratios}))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""Which frozen features an MLP head should train on (mode='head'): the last token of the final output (what
transformers' *ForSequenceClassification pools, and llmhead's default before), against the mean over tokens and the
last token and the mean side by side (pooling='last+mean'), each at the final output and at 3/4 of the depth
(layer=0.75: the blocks above never run). llmhead's defaults for head, probe and hybrid come from this table.

Each cell is one head-mode fit with llmhead's defaults otherwise, on time_to_accuracy.py's fixed splits (Rotten
Tomatoes, VADER tweets, BBC News), in its own spawned process, alone: seconds to the first validation record (the
feature passes over the training and validation texts are nearly all of it), the best validation metric, the test
metric (accuracy; Pearson for VADER) and the peak RSS.

    python benchmarks/head_features.py [--datasets rt vader bbc] [--models smollm2-135m gemma3-270m]
    python benchmarks/head_features.py --quick     # tiny in-process model, seconds (the test suite runs it)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import isolated, machine  # noqa: E402
from time_to_accuracy import DATASETS, MODELS, RESULTS, ours_run  # noqa: E402

# label -> ModelConfig fields; layer=-1 is the final output, the default setting is the one with no fields
SETTINGS = {
    "last, final output": {"pooling": "last", "layer": -1},
    "last, 3/4 depth": {"pooling": "last", "layer": 0.75},
    "mean, 3/4 depth": {"pooling": "mean", "layer": 0.75},
    "last+mean, final output": {"pooling": "last+mean", "layer": -1},
    "last+mean, 3/4 depth (default)": {},
}
SECOND_MODEL = ("last, final output", "last+mean, 3/4 depth (default)")  # the second model: before and now


def cell(dataset: str, model: str, options: dict, threads: int, inline: bool) -> dict:
    run = isolated(ours_run, dataset, "head", threads, 0, model, options, inline=inline)
    metrics = [p["metric"] for p in run["curve"] if p["metric"] is not None]
    return {
        "first_eval_s": run["curve"][0]["elapsed_s"] if run["curve"] else None,
        "total_s": run["total_seconds"],
        "best_val": round(max(metrics), 4) if metrics else None,
        "test": round(run["test"], 4),
        "peak_rss_mb": run["peak_rss_mb"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--datasets", nargs="+", choices=[d for d in DATASETS if d != "quick"], default=["rt", "vader", "bbc"]
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    parser.add_argument("--quick", action="store_true", help="tiny in-process model and toy rows, inline")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "head-features.json"))
    args = parser.parse_args(argv)
    datasets, models = (["quick"], MODELS[:1]) if args.quick else (args.datasets, args.models)
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    result = {"setup": {**machine(args.threads), "command": f"benchmarks/head_features.py {argv_text}"}, "rows": []}
    for model in models:
        settings = SETTINGS if model == MODELS[0] else {k: SETTINGS[k] for k in SECOND_MODEL}
        for dataset in datasets:
            for label, options in settings.items():
                row = {"model": model, "dataset": dataset, "features": label, "options": options}
                row.update(cell(dataset, model, options, args.threads, args.quick))
                result["rows"].append(row)
                print(json.dumps(row), flush=True)
    print(format_table(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict) -> str:
    lines = [
        "| model | data | features | to 1st evaluation | best validation | test | peak RSS |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['dataset']} | {r['features']} | {r['first_eval_s']} s | {r['best_val']} | "
            f"{r['test']} | {r['peak_rss_mb']} MB |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

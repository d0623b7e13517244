"""Which block's features a frozen-backbone classifier should read: a linear probe on every block's pooled
hidden states (last token and mean), on the time-to-accuracy samples, from one forward pass per text.

    .venv/bin/python benchmarks/layer_probe.py --datasets rt vader bbc   # ~1 min per set; results/layer-probe.json
    .venv/bin/python benchmarks/layer_probe.py --quick                   # tiny model, seconds (a test runs it)

Why: in head mode the feature pass is nearly all of the time to a model (benchmarks/README.md, time to accuracy),
and a forward pass through k of 30 blocks costs about k/30 of it (model_cost.py). If a block below the top gives
features at least as good, ``layer=k`` is a speed-up that costs no accuracy. The probe: standardized features,
scikit-learn ``LogisticRegression(C=0.01)`` (classification) or ``Ridge(alpha=1000)`` (regression), fit on the
training sample, scored on the validation and test samples (the same rows as time_to_accuracy.py). A fixed penalty
keeps 60 fits per set cheap; it is the same for every block, so the comparison between blocks is fair.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402
from time_to_accuracy import DATASETS, load, metric_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


@functools.lru_cache(maxsize=1)
def backbone(model_path: str):
    """(tokenizer, model), loaded once for every split of a data set."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from llmhead.model.precision import resolve_dtype

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer, AutoModel.from_pretrained(model_path, dtype=getattr(torch, resolve_dtype("auto"))).eval()


def pooled_states(model_path: str, texts: list[str], max_length: int, batch_size: int = 32):
    """(last-token, mean) pooled hidden states of every block: two arrays (texts, blocks, hidden), float32."""
    import numpy as np
    import torch

    tokenizer, model = backbone(model_path)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: little padding
    last, mean = [None] * len(texts), [None] * len(texts)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            index = order[b : b + batch_size]
            enc = tokenizer(
                [texts[i] for i in index], return_tensors="pt", padding=True, truncation=True, max_length=max_length
            )
            states = torch.stack(model(**enc, output_hidden_states=True).hidden_states[1:], 1).float()
            mask = enc["attention_mask"]
            at_last = states[torch.arange(len(index)), :, mask.sum(1) - 1]  # (batch, blocks, hidden)
            averaged = (states * mask[:, None, :, None]).sum(2) / mask.sum(1)[:, None, None]
            for j, i in enumerate(index):
                last[i], mean[i] = at_last[j].numpy(), averaged[j].numpy()
    return np.stack(last), np.stack(mean)


def probe_scores(x_train, y_train, evaluated, regression: bool) -> list[float]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    if regression:
        model = Ridge(alpha=1000.0).fit(scaler.transform(x_train), y_train)
        return [float(np.corrcoef(model.predict(scaler.transform(x)), y)[0, 1]) for x, y in evaluated]
    model = LogisticRegression(C=0.01, max_iter=2000).fit(scaler.transform(x_train), y_train)
    return [float((model.predict(scaler.transform(x)) == y).mean()) for x, y in evaluated]


def run(dataset: str) -> dict:
    import numpy as np

    spec = DATASETS[dataset]
    regression = spec["task"] == "regression"
    model_path, *splits = load(dataset)
    start = time.perf_counter()
    features = [pooled_states(model_path, [r["text"] for r in rows], spec["max_length"]) for rows in splits]
    seconds = time.perf_counter() - start
    targets = [np.asarray([r[spec["label"]] for r in rows], dtype=float if regression else object) for rows in splits]
    blocks = features[0][0].shape[1]
    table = {}
    for p, pooling in enumerate(("last", "mean")):
        for block in range(blocks):
            x = [f[p][:, block] for f in features]
            val, test = probe_scores(x[0], targets[0], list(zip(x[1:], targets[1:])), regression)
            table.setdefault(pooling, []).append({"block": block + 1, "val": round(val, 4), "test": round(test, 4)})
    return {"metric": metric_name(spec["task"]), "blocks": blocks, "feature_seconds": round(seconds, 1), **table}


def format_table(dataset: str, result: dict) -> str:
    lines = [f"{dataset} ({result['metric']}, validation / test; top block = {result['blocks']}):"]
    for pooling in ("last", "mean"):
        rows = result[pooling]
        best = max(rows, key=lambda r: r["val"])
        cells = " ".join(f"{r['block']}:{r['val']:.3f}/{r['test']:.3f}" for r in rows)
        lines.append(f"  {pooling}: {cells}")
        lines.append(f"  {pooling}: best validation at block {best['block']} ({best['val']:.4f} / {best['test']:.4f})")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=[d for d in DATASETS if d != "quick"], default=["rt"])
    parser.add_argument("--quick", action="store_true", help="tiny in-process model and toy rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "layer-probe.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    datasets = ["quick"] if args.quick else args.datasets
    result = {
        "setup": {
            **machine(args.threads),
            "command": "benchmarks/layer_probe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
    }
    for dataset in datasets:
        result[dataset] = run(dataset)
        print(format_table(dataset, result[dataset]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""Forward cost against `layer` and pooling mode, and `clf.predict` against the transformers model
doing the same predictions, in one run.

    .venv/bin/python benchmarks/model_cost.py            # packaged SmolLM2, Rotten Tomatoes test texts
    .venv/bin/python benchmarks/model_cost.py --quick    # tiny in-process model, seconds (a test runs it)

Prints a table per part and one final JSON line; writes the same JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_tiny, rotten_tomatoes, sentiment_rows, timed  # noqa: E402

import llmhead  # noqa: E402
from llmhead.model.precision import resolve_dtype  # noqa: E402

EXPORTABLE = dict(head_hidden=[], head_bias=False, input_norm="scale", pooling="last", layer=-1)  # all blocks


def build(model: str, train, dtype: str, **options):
    clf = llmhead.from_pretrained(model, dtype=dtype, **options)
    clf.fit(train, epochs=3, patience=0)
    return clf


def backbone_params(clf) -> int:
    return sum(p.numel() for p in clf.model.backbone.parameters())


@torch.inference_mode()
def peer_predict(model, tokenizer, texts: list[str], batch_size: int) -> list[int]:
    """What a transformers user writes: batches in input order, padded to the longest, argmax of logits."""
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, truncation=True, max_length=512)
        out += model(**batch).logits.argmax(-1).tolist()
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny in-process model and toy data")
    parser.add_argument("--n", type=int, default=512, help="texts to predict")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.quick:
        model = make_tiny(Path(tempfile.mkdtemp()) / "tiny")
        train = sentiment_rows(2)
        texts = [r["text"] for r in sentiment_rows(4)]
        layers_to_try, dtype = [1, 2], "float32"
    else:
        model = "smollm2-135m"
        data = rotten_tomatoes()
        train = data["train"].select(range(64))
        texts = data["test"]["text"][: args.n]
        layers_to_try, dtype = [6, 12, 18, 24, 30], "auto"
    batch = 16
    result = {
        "n_texts": len(texts),
        "batch_size": batch,
        "threads": args.threads,
        "dtype": resolve_dtype(dtype),
        "model": "tiny-llama" if args.quick else model,
        "machine": platform.machine(),
        "torch": torch.__version__,
        "llmhead": llmhead.__version__,
    }

    rows = []
    for k in layers_to_try:
        clf = build(model, train, dtype, **{**EXPORTABLE, "layer": k})
        seconds = timed(lambda clf=clf: clf.predict(texts, batch_size=batch), args.repeats)
        rows.append(
            {
                "layer": k,
                "blocks": len(clf.model.backbone.layers),
                "backbone_params_M": round(backbone_params(clf) / 1e6, 2),
                "examples_per_s": round(len(texts) / seconds, 1),
            }
        )
    result["by_layer"] = rows
    print("\nforward cost against layer (blocks above it dropped)")
    print(f"{'layer':>6} {'blocks':>7} {'params M':>9} {'ex/s':>8}")
    for r in rows:
        print(f"{r['layer']:>6} {r['blocks']:>7} {r['backbone_params_M']:>9} {r['examples_per_s']:>8}")

    rows = []
    # three distinct blocks (the tiny --quick model has 2: the embeddings' output, block 1 and the last)
    three_layers = [layers_to_try[0], layers_to_try[-2], -1] if len(layers_to_try) > 2 else [0, 1, -1]
    for name, options in [
        ("last", {"pooling": "last", "layer": -1}),
        ("mean", {"pooling": "mean", "layer": -1}),
        ("max", {"pooling": "max", "layer": -1}),
        ("last+mean", {"pooling": "last+mean", "layer": -1}),
        ("attention", {"pooling": "attention", "layer": -1}),
        ("last, 3 layers concat", {"pooling": "last", "layers": three_layers}),
    ]:
        clf = build(model, train, dtype, **options)
        seconds = timed(lambda clf=clf: clf.predict(texts, batch_size=batch), args.repeats)
        rows.append({"pooling": name, "examples_per_s": round(len(texts) / seconds, 1)})
    result["by_pooling"] = rows
    print("\nforward cost against pooling (all blocks)")
    for r in rows:
        print(f"{r['pooling']:>24} {r['examples_per_s']:>8} ex/s")

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    clf = build(model, train, dtype, **EXPORTABLE)
    with tempfile.TemporaryDirectory() as tmp:
        folder = clf.export(Path(tmp) / "hf")
        peer = AutoModelForSequenceClassification.from_pretrained(folder, dtype=clf.model.backbone.dtype).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
    ours_s = timed(lambda: clf.predict(texts, batch_size=batch), args.repeats)
    peer_s = timed(lambda: peer_predict(peer, tokenizer, texts, batch), args.repeats)
    ours = clf.predict(texts, batch_size=batch)
    theirs = [peer.config.id2label[i] for i in peer_predict(peer, tokenizer, texts, batch)]
    agree = sum(a == str(b) for a, b in zip(theirs, ours)) / len(texts)
    result["predict_vs_transformers"] = {
        "llmhead_examples_per_s": round(len(texts) / ours_s, 1),
        "transformers_examples_per_s": round(len(texts) / peer_s, 1),
        "speedup": round(peer_s / ours_s, 2),
        "same_predictions": round(agree, 4),
    }
    p = result["predict_vs_transformers"]
    print(
        f"\npredict: llmhead {p['llmhead_examples_per_s']} ex/s, transformers {p['transformers_examples_per_s']} ex/s "
        f"(x{p['speedup']}), same predictions {p['same_predictions']:.1%}"
    )
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

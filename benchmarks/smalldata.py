"""The small-data routes on 500 Rotten Tomatoes snippets, scored on the 973 test snippets, in one run:
TF-IDF + logistic regression and the majority class (baselines), a logistic-regression and an SVM probe on
frozen SmolLM2 features, the verbalizer head before any training step, and 8-shot-per-class in-context
learning with and without contextual calibration.

    .venv/bin/python benchmarks/smalldata.py --out benchmarks/results/smalldata.json     # about 5 minutes
    .venv/bin/python benchmarks/smalldata.py --quick                                     # tiny model (a test runs it)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, make_tiny, rotten_tomatoes, sentiment_rows  # noqa: E402

import llmhead  # noqa: E402

TEMPLATE = "Review: {text}\nSentiment:"
VERBALIZERS = {"fresh": "positive", "rotten": "negative"}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(args.threads)
    if args.quick:
        model = make_tiny(Path(tempfile.mkdtemp()) / "tiny")
        train, test = sentiment_rows(4), sentiment_rows(1)
        verbalizers = {"pos": "great", "neg": "awful"}
    else:
        data = rotten_tomatoes()
        model, verbalizers = "smollm2-135m", VERBALIZERS
        train, test = list(data["train"].shuffle(seed=0).select(range(args.n_train))), list(data["test"])
    truth = np.array([r["label"] for r in test])
    cache = tempfile.mkdtemp()
    rows = []

    def record(name, accuracy, seconds, **extra):
        rows.append({"route": name, "test_accuracy": float(accuracy), "seconds": round(seconds, 1), **extra})
        print(f"{name:<48} {accuracy:.4f}  ({seconds:.0f} s)", flush=True)

    labels = [r["label"] for r in train]
    majority = max(set(labels), key=labels.count)
    record("majority class", np.mean(truth == majority), 0.0)
    start = time.perf_counter()
    vectorizer = TfidfVectorizer().fit([r["text"] for r in train])
    tfidf = LogisticRegression(max_iter=2000).fit(vectorizer.transform([r["text"] for r in train]), labels)
    predicted = tfidf.predict(vectorizer.transform([r["text"] for r in test]))
    record("TF-IDF + logistic regression", np.mean(predicted == truth), time.perf_counter() - start)
    for probe in ("logreg", "svm"):
        start = time.perf_counter()
        clf = llmhead.from_pretrained(model, mode="probe", probe=probe, template=TEMPLATE)
        clf.fit(train, feature_cache=cache, progress=False)
        accuracy = clf.evaluate(test, cache=True)["accuracy"]
        record(
            f"probe ({probe}) on frozen features", accuracy, time.perf_counter() - start, chosen_c=clf.history[0]["C"]
        )
    start = time.perf_counter()
    clf = llmhead.from_pretrained(model, mode="lmhead", template=TEMPLATE, verbalizers=verbalizers)
    clf.fit(train, epochs=0, feature_cache=cache, progress=False)
    record(
        "verbalizer head, before any training step",
        clf.evaluate(test, cache=True)["accuracy"],
        time.perf_counter() - start,
    )
    for calibrate in (False, True):
        start = time.perf_counter()
        clf = llmhead.from_pretrained(
            model,
            mode="icl",
            icl_shots=8,
            icl_calibrate=calibrate,
            icl_template=TEMPLATE + " {label}",
            verbalizers=verbalizers,
        )
        clf.fit(train, progress=False)
        accuracy = clf.evaluate(test)["accuracy"]
        name = f"ICL, 8 per class, {'with' if calibrate else 'without'} calibration"
        record(name, accuracy, time.perf_counter() - start, prompt=clf.history[0])
    result = {"setup": {**machine(args.threads), "n_train": len(train), "n_test": len(test)}, "rows": rows}
    print(json.dumps({r["route"]: round(r["test_accuracy"], 4) for r in rows}))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""Never below a bag of words: the TF-IDF baseline (mode='tfidf'), the LLM routes on frozen SmolLM2 features
(probe, head), the hybrid (frozen features + TF-IDF in one linear model) and the ladder's pick (mode='auto'
over those four rungs), each trained on the same data and scored on the test split, in one run per data set.

    .venv/bin/python benchmarks/baseline.py --out benchmarks/results/baseline.json            # every data set
    .venv/bin/python benchmarks/baseline.py --datasets rt500 --out benchmarks/results/baseline-rt500.json
    .venv/bin/python benchmarks/baseline.py --quick                                            # tiny model (a test)

Data sets: rt500 (500 Rotten Tomatoes snippets), rt3406 (all 3,406), bbc (BBC News, 5 topics, 1,557 articles),
vader (VADER tweets, regression on the mean human rating; metric pearson). The features of every text are
computed once (timed as "feature pass") and cached, so each route's fit time is its own cost on top of it.
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

from common import machine, make_tiny, sentiment_rows  # noqa: E402

import llmhead  # noqa: E402
from llmhead.config import ModelConfig, build  # noqa: E402

ROUTES = ("tfidf", "probe", "head", "hybrid")
DATASETS = ("rt500", "rt3406", "bbc", "vader")
SETUP = {  # template, label column, task, metric (the test metric the table reports), max_length
    "rt500": ("Review: {text}\nSentiment:", "label", "classification", "accuracy"),
    "rt3406": ("Review: {text}\nSentiment:", "label", "classification", "accuracy"),
    "bbc": ("Article: {text}\nTopic:", "label", "classification", "accuracy"),
    "vader": ("Tweet: {text}\nSentiment:", "rating", "regression", "pearson"),
    "quick": ("{text}", "label", "classification", "accuracy"),
}


def load(name: str):
    from llmhead.data import corpora

    if name == "quick":
        return sentiment_rows(4), sentiment_rows(1)
    data = {"rt500": corpora.rotten_tomatoes, "rt3406": corpora.rotten_tomatoes, "bbc": corpora.bbc_news}.get(
        name, corpora.vader_tweets
    )()
    train = data["train"].shuffle(seed=0).select(range(500)) if name == "rt500" else data["train"]
    return list(train), list(data["test"])


QUICK = {"probe_c": 1.0}  # the smoke test: a fixed C, no inner cross-validation


def route_options(route: str, task: str, template: str, max_length: int, quick: bool = False) -> dict:
    options = {"mode": route, "task": task, **(QUICK if quick and route != "head" else {})}
    if route != "tfidf":
        options.update(template=template, max_length=max_length)
    if route in ("tfidf", "probe", "hybrid") and task == "regression":
        options["probe"] = "ridge"
    return options


def run_dataset(name: str, model: str, cache: str, budget_s: float, max_length: int) -> dict:
    template, label, task, metric = SETUP[name]
    train, test = load(name)
    fit = {"label": label, "progress": False}
    head_fit = {"epochs": 3} if name == "quick" else {}  # the smoke test's head: a few epochs
    # One feature pass over every text, timed on its own: each LLM route below reads the cache.
    start = time.perf_counter()
    warm = llmhead.from_pretrained(model, template=template, max_length=max_length, task=task)
    warm.extractor.progress = False
    warm.extractor.cache.folder = Path(cache)  # on disk too: the ladder's own extractor reads them there
    warm.embed(train + test)
    feature_seconds = time.perf_counter() - start
    rows = []
    for route in ROUTES:
        options = route_options(route, task, template, max_length, name == "quick")
        config = build(ModelConfig, {"model": model, **options})
        clf = llmhead.Classifier(config, extractor=warm.extractor)  # the loaded weights and cached features
        start = time.perf_counter()
        clf.fit(train, **fit, **(head_fit if route == "head" else {}))
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        scores = clf.evaluate(test, label=label, cache=True)
        rows.append(
            {
                "route": route,
                "test": scores[metric],
                "test_metrics": {k: v for k, v in scores.items() if isinstance(v, float)},
                "fit_seconds": round(fit_seconds, 2),
                "predict_seconds_cached": round(time.perf_counter() - start, 2),
                "history": clf.history[:1] if route != "head" else [],
            }
        )
        print(f"{name:<7} {route:<7} {metric} {scores[metric]:.4f}  fit {fit_seconds:.1f} s", flush=True)
    best = max(r["test"] for r in rows)
    auto = _auto(name, model, train, test, (template, max_length), label, task, metric, cache, budget_s, head_fit)
    by_route = {r["route"]: r["test"] for r in rows}
    hybrid, baseline = by_route["hybrid"], by_route["tfidf"]
    return {
        "dataset": name,
        "n_train": len(train),
        "n_test": len(test),
        "metric": metric,
        "feature_pass_seconds": round(feature_seconds, 1),
        "truncated_texts": warm.truncated,
        "routes": rows,
        "auto": auto,
        "checks": {
            "hybrid_minus_best_other": hybrid - max(v for k, v in by_route.items() if k != "hybrid"),
            "hybrid_within_0.005_of_the_others": hybrid >= max(by_route.values()) - 0.005,
            "auto_within_0.01_of_best": auto.get("test") is not None and auto["test"] >= best - 0.01,
            "baseline_beats": [k for k, v in by_route.items() if v < baseline],
        },
    }


def _auto(name, model, train, test, prompt, label, task, metric, cache, budget_s, fit) -> dict:
    """mode='auto' over the same four rungs, its table and its pick's test metric."""
    template, max_length = prompt
    start = time.perf_counter()
    try:
        result = llmhead.run_ladder(
            train,
            model,
            label=label,
            test=test,
            rungs=list(ROUTES),
            folds=2 if name == "quick" else 5,
            **(QUICK if name == "quick" else {}),
            budget_s=budget_s,
            feature_cache=cache,
            fit=fit,
            template=template,
            max_length=max_length,
            task=task,
        )
    except Exception as exc:  # the table says why rather than losing the other rows
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    print(result.format(), flush=True)
    return {
        "winner": result.winner,
        "reason": result.reason,
        "test": result.test[metric],
        "cv": {r["rung"]: r.get("mean") for r in result.rows},
        "table": result.format(),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=3600, help="the ladder's budget per data set, seconds")
    parser.add_argument("--out", default=None)
    parser.add_argument("--cache", default=None, help="a feature cache folder to reuse (default: a new temporary one)")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per text (BBC articles are cut there)")
    args = parser.parse_args(argv)
    import sklearn.calibration  # noqa: F401  (imported before any timing: the first route would pay for it)
    import sklearn.feature_extraction.text  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch

    torch.set_num_threads(args.threads)
    model = make_tiny(Path(tempfile.mkdtemp()) / "tiny") if args.quick else "smollm2-135m"
    names = ["quick"] if args.quick else args.datasets
    cache = args.cache or tempfile.mkdtemp()
    results = [run_dataset(name, model, cache, args.budget, args.max_length) for name in names]
    result = {"setup": {**machine(args.threads), "model": "tiny" if args.quick else model}, "datasets": results}
    print(format_table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(results: list[dict]) -> str:
    lines = [
        "| data set (train / test) | metric | tfidf | probe | head | hybrid | auto's pick (test) "
        "| hybrid fit s / probe fit s |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        by = {x["route"]: x for x in r["routes"]}
        auto = r["auto"]
        pick = f"{auto['winner']} ({auto['test']:.4f})" if "winner" in auto else "failed"
        ratio = by["hybrid"]["fit_seconds"] / max(by["probe"]["fit_seconds"], 1e-9)
        cells = " | ".join(f"{by[k]['test']:.4f}" for k in ROUTES)
        lines.append(
            f"| {r['dataset']} ({r['n_train']} / {r['n_test']}) | {r['metric']} | {cells} | {pick} | {ratio:.1f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

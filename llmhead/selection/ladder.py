"""The ladder: run the strategies that fit the data and the time budget under one cross-validation,
print one table, recommend a winner with the reason, and refit and save it.

Rungs, cheapest first: icl (few-shot prompt, nothing trained) -> lmhead (the label words' LM-head rows)
-> probe (frozen features + calibrated linear SVM) -> head (frozen features + MLP) -> lora -> full.

The playbook's thresholds decide what is tried by default: below 100 examples, prompting and LM-head
tuning (an MLP or fine-tuning would overfit); below 1,000, frozen features with a linear model; from
1,000, fine-tuning. The rungs around the playbook's pick run too, so the table shows whether the data
agrees. All frozen rungs share one feature pass; a rung whose estimated cost exceeds the time left is
skipped and says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmhead.classifier import Classifier
from llmhead.config import ModelConfig, TrainConfig, build, for_mode, used_options
from llmhead.data.examples import Examples
from llmhead.features.extractor import FeatureExtractor
from llmhead.model import backbone as bb
from llmhead.selection.cv import cross_validate
from llmhead.strategies import for_config

log = logging.getLogger(__name__)

RUNGS = ("icl", "lmhead", "probe", "head", "lora", "full")
# forward-pass equivalents per training example and epoch (forward + backward), for the budget estimate
TRAIN_COST = {"lora": 3.0, "full": 4.0}


def playbook(n: int) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(rungs tried, rungs the playbook picks, why) for ``n`` training examples."""
    if n < 100:
        return ("icl", "lmhead", "probe"), ("icl", "lmhead"), "< 100 examples: prompting or LM-head tuning"
    if n < 1000:
        return ("icl", "lmhead", "probe", "head"), ("probe",), "< 1,000 examples: frozen features + a linear model"
    return RUNGS, ("head", "lora", "full"), ">= 1,000 examples: train a head or fine-tune"


@dataclass
class LadderResult:
    n: int
    folds: int
    metric: str
    rows: list[dict]  # one per rung: status, score, costs
    winner: str
    reason: str
    playbook_pick: tuple[str, ...]
    agreed: bool
    seconds: float
    test: dict | None = None
    classifier: Classifier | None = field(default=None, repr=False)

    def format(self) -> str:
        out = [
            f"Ladder on {self.n} examples, {self.folds}-fold cross-validation, metric {self.metric}",
            "",
            "| rung | playbook | CV score (mean +/- std) | fit s / fold | predict s / 1,000 | trainable | status |",
            "|---|---|---|---:|---:|---:|---|",
        ]
        for r in self.rows:
            score = f"{r['mean']:.4f} +/- {r['std']:.4f}" if r.get("mean") is not None else "-"
            fit = f"{r['fit_seconds']:.1f}" if r.get("fit_seconds") is not None else "-"
            pred = f"{r['predict_per_1000']:.1f}" if r.get("predict_per_1000") is not None else "-"
            params = f"{r['trainable']:,}" if r.get("trainable") is not None else "-"
            pick = "yes" if r["rung"] in self.playbook_pick else ""
            name = f"**{r['rung']}**" if r["rung"] == self.winner else r["rung"]
            out.append(f"| {name} | {pick} | {score} | {fit} | {pred} | {params} | {r['status']} |")
        out += [
            "",
            f"winner: {self.winner}. {self.reason}",
            f"playbook pick: {' / '.join(self.playbook_pick)}; the data {'agreed' if self.agreed else 'disagreed'}.",
        ]
        if self.test:
            out.append(f"winner refit on all {self.n} examples; test: {_short(self.test)}")
        out.append(f"total {self.seconds:.0f} s")
        return "\n".join(out)

    def to_json(self) -> dict:
        data = dataclasses.asdict(dataclasses.replace(self, classifier=None))
        data.pop("classifier")
        return data


def run_ladder(
    data: Any,
    model: str | None = None,
    *,
    text="text",
    label="label",
    test: Any = None,
    budget_s: float = 900,
    folds: int = 5,
    rungs: list[str] | None = None,
    out_dir: str | None = None,
    fit: dict | None = None,
    feature_cache: str | None = None,
    **model_options,
) -> LadderResult:
    """Cross-validate the rungs that fit ``budget_s`` seconds, pick the winner, refit it on all the data,
    evaluate it on ``test`` when given, and save it (and the table) to ``out_dir`` when given.

    ``model_options`` are ModelConfig fields shared by every rung (template, verbalizers, dtype, seed...);
    ``fit`` holds TrainConfig fields for every rung's fit."""
    start = time.perf_counter()
    if model is not None:
        model_options["model"] = model
    model_options.pop("mode", None)
    # Options shared by every rung: refused when no rung reads them; each rung then gets the ones it reads.
    build(ModelConfig, {**model_options, "mode": "auto"})
    base_config = build(ModelConfig, {**used_options(ModelConfig, model_options, "head"), "mode": "head"})
    if base_config.task != "classification":
        raise ValueError("the ladder's rungs include prompting, which scores label words: task='classification'")
    examples = Examples.read(data, text, label, base_config.task, base_config.pair_separator, "train")
    n = len(examples)
    tried, pick, why = playbook(n)
    if rungs is not None:
        unknown = [r for r in rungs if r not in RUNGS]
        if unknown:
            raise ValueError(f"unknown rungs {unknown}; choose from {RUNGS}")
        tried = tuple(r for r in RUNGS if r in rungs)
    counts = np.unique(np.asarray([repr(v) for v in examples.raw]), return_counts=True)[1]
    folds = max(2, min(folds, int(counts.min())))
    fit = dict(fit or {})
    for_mode(build(TrainConfig, fit), "auto")  # unknown keys, wrong types, options no rung reads (run_dir...)
    if feature_cache:
        fit.setdefault("feature_cache", feature_cache)
    if test is not None:
        test = Examples.read(test, text, label, base_config.task, base_config.pair_separator, "test")
    # One feature pass over all examples, timed: it sets the budget estimates and feeds every frozen rung.
    extractor = FeatureExtractor(bb.resolve(base_config.model), base_config.trust_remote_code, feature_cache)
    per_example = _forward_cost(Classifier(base_config, extractor=extractor), examples)
    rows = []
    for rung in RUNGS:
        rows.append({"rung": rung})
        if rung not in tried:
            rows[-1]["status"] = f"skipped: playbook ({why})"
            continue
        estimate = _estimate(rung, n, folds, per_example, fit)
        left = budget_s - (time.perf_counter() - start)
        if estimate + estimate / folds > left:  # + the winner's refit on all the data: about one more fold
            rows[-1]["status"] = f"skipped: estimated {estimate:.0f} s > {left:.0f} s left"
            continue
        options = _rung_options(rung, base_config, model_options)
        rows[-1].update(_cross_validate(rung, examples, options, _rung_fit(rung, fit), folds, extractor, per_example))
    winner, reason = _choose(rows, folds)
    final = Classifier(
        build(ModelConfig, _rung_options(winner["rung"], base_config, model_options)), extractor=extractor
    )
    final.fit(examples, text=text, label=label, **_rung_fit(winner["rung"], {**fit, "progress": False}))
    result = LadderResult(n, folds, "accuracy", rows, winner["rung"], reason, pick, winner["rung"] in pick, 0.0)
    result.classifier = final
    if test is not None:
        result.test = final.evaluate(test, text=text, label=label)
    result.seconds = time.perf_counter() - start
    if out_dir is not None:
        _save(result, Path(out_dir))
    return result


def _forward_cost(clf: Classifier, examples: Examples) -> float:
    """Seconds of forward pass per example, measured on up to 64 of them (the weights load outside the timing);
    then every example's features, cached for the frozen rungs."""
    texts = clf.inputs(examples.texts)
    sample = texts[: min(len(texts), 64)]
    clf.extractor.progress = False
    clf.embed(sample[:2], cache=False, templated=True)  # loads the weights
    t0 = time.perf_counter()
    clf.embed(sample, cache=False, templated=True)  # measured even when the features are cached
    per_example = (time.perf_counter() - t0) / len(sample)
    clf.embed(texts, cache=True, templated=True)
    return per_example


def _cross_validate(rung, examples, options, rung_fit, folds, extractor, per_example) -> dict:
    """The rung's row of the table: its cross-validated score and costs, or why it failed."""
    try:
        cv = cross_validate(examples, folds=folds, fit=rung_fit, extractor=extractor, **options)
    except Exception as exc:  # one failing rung must not sink the others; the table says why
        log.exception("rung %s failed", rung)
        return {"status": f"failed: {type(exc).__name__}: {str(exc)[:120]}"}
    per_1000 = np.mean([f["predict_seconds"] / f["n_heldout"] for f in cv.folds]) * 1000
    if for_config(build(ModelConfig, options)).shares_weights():
        per_1000 += per_example * 1000  # held-out features came from the cache: add the forward pass they need
    return {
        "mean": cv.mean,
        "std": cv.std,
        "folds": [f[cv.metric] for f in cv.folds],
        "fit_seconds": float(np.mean([f["fit_seconds"] for f in cv.folds])),
        "predict_per_1000": float(per_1000),
        "trainable": int(np.mean([f["trainable"] for f in cv.folds])),
        "status": "ran",
    }


def _choose(rows: list[dict], folds: int) -> tuple[dict, str]:
    """Among rungs within one standard error of the best: the cheapest to run (costs within 20% count as equal),
    then the one with the fewest trained parameters (the least room to overfit)."""
    ran = [r for r in rows if r["status"] == "ran"]
    if not ran:
        raise RuntimeError(
            "no rung fitted the budget; raise budget_s. " + "; ".join(f"{r['rung']}: {r['status']}" for r in rows)
        )
    best = max(ran, key=lambda r: r["mean"])
    se = best["std"] / math.sqrt(folds)
    close = [r for r in ran if r["mean"] >= best["mean"] - se]
    cheapest = min(r["predict_per_1000"] for r in close)
    affordable = [r for r in close if r["predict_per_1000"] <= 1.2 * cheapest]
    winner = min(affordable, key=lambda r: (r["trainable"], RUNGS.index(r["rung"])))
    if winner is best:
        return winner, f"highest mean CV accuracy ({best['mean']:.4f} +/- {best['std']:.4f})"
    reason = (
        f"{winner['mean']:.4f} is within one standard error ({se:.4f}) of the best, {best['rung']} "
        f"({best['mean']:.4f}); among those it costs {winner['predict_per_1000']:.1f} s per 1,000 predictions "
        f"(vs {best['predict_per_1000']:.1f})"
    )
    if winner["trainable"] < best["trainable"]:
        reason += f" and trains fewer parameters ({winner['trainable']:,} vs {best['trainable']:,})"
    return winner, reason


def _save(result: LadderResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result.classifier.save(folder / "model")
    (folder / "ladder.md").write_text(result.format() + "\n")
    (folder / "ladder.json").write_text(json.dumps(result.to_json(), indent=2, default=str))


def _estimate(rung: str, n: int, folds: int, per_example: float, fit: dict) -> float:
    """Seconds for the rung's cross-validation, from the measured forward cost per example."""
    if rung in ("lmhead", "probe", "head"):
        return 2.0 * folds  # features are cached: only the head trains
    if rung == "icl":
        return 4.0 * n * per_example + 60  # each example scored once (demonstrations cached) + prompt choice
    epochs = fit.get("epochs") or 1
    train = n * (folds - 1) * epochs * TRAIN_COST[rung] * per_example
    return train + 2 * n * per_example  # + held-out predictions and the warm start's features


def _rung_options(rung: str, base: ModelConfig, user: dict) -> dict:
    options = used_options(ModelConfig, {k: v for k, v in user.items() if k != "mode"}, rung)
    options["mode"] = rung
    if rung == "icl" and "icl_template" not in user:
        if base.template != "{text}":  # the user's prompt, followed by the label word (and applied once)
            options["icl_template"] = base.template.rstrip() + " {label}"
            options["template"] = "{text}"
    if rung == "probe":
        options.setdefault("probe", "svm")
    if rung == "full":
        options.setdefault("freeze_blocks", 0)
    return options


def _rung_fit(rung: str, fit: dict) -> dict:
    options = used_options(TrainConfig, fit, rung)  # e.g. no epochs or lr for icl and probe, no grad_accum for head
    options.setdefault("progress", False)
    return options


def _short(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def auto(data: Any, model: str | None = None, **options) -> Classifier:
    """The ladder's winner, refit on all of ``data`` and ready to predict; ``clf.ladder`` holds the table and the
    reason. ``options`` are those of ``run_ladder`` (text, label, test, budget_s, folds, rungs, out_dir, fit,
    feature_cache) and ModelConfig fields shared by every rung."""
    result = run_ladder(data, model, **options)
    log.info("llmhead.auto chose %s: %s", result.winner, result.reason)
    result.classifier.ladder = result
    return result.classifier

"""The ladder: run the strategies that fit the data and the time budget under one cross-validation,
print one table, recommend a winner with the reason, and refit and save it.

Rungs, cheapest first: tfidf (the classic baseline, no LLM: it costs seconds) -> icl (few-shot prompt, nothing
trained) -> lmhead (the label words' LM-head rows) -> probe (frozen features + calibrated linear SVM) -> head
(frozen features + MLP) -> hybrid (frozen features and TF-IDF in one linear model) -> lora -> full.

The baseline and the hybrid always run (unless ``rungs=`` names the rungs to run): the table says by how much
each rung beats the baseline, and the winner is never a rung whose cross-validated score is below the baseline's.
Regression and multilabel data run too, without the rungs that score label words.

The playbook's thresholds decide what is tried by default: below 100 examples, prompting and LM-head
tuning (an MLP or fine-tuning would overfit); below 1,000, frozen features with a linear model; from
1,000, fine-tuning. The rungs around the playbook's pick run too, so the table shows whether the data
agrees. The probe, head and hybrid rungs share one feature pass (lmhead reads the final output: a pass of its
own); a rung whose estimated cost exceeds the time left is skipped and says so, and a rung still running when the
budget runs out is abandoned (llmhead/budget.py).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmhead import budget
from llmhead.classifier import Classifier
from llmhead.config import ModelConfig, TrainConfig, build, for_mode, invalid, unused_by_task, used_options
from llmhead.config.train import EPOCHS
from llmhead.data.examples import Examples
from llmhead.features.extractor import FeatureExtractor
from llmhead.model import backbone as bb
from llmhead.model.blocks import block_plan
from llmhead.progress import shown
from llmhead.selection.cv import MAIN_METRIC, cross_validate
from llmhead.selection.table import BASELINE, LadderProgress, LadderResult
from llmhead.strategies import for_config

log = logging.getLogger(__name__)

RUNGS = ("tfidf", "icl", "lmhead", "probe", "head", "hybrid", "lora", "full")
ALWAYS = ("tfidf", "hybrid")  # the baseline and the route that combines it with the LLM: in every table
WORDS = ("icl", "lmhead")  # they score label words: classification only
# forward-pass equivalents per training example and epoch (forward + backward), for the budget estimate: the
# training steps' seconds per example in benchmarks/results/tta-rt-{lora,full}.json as they were on 2026-12-07
# (evaluations taken out: 0.056 s, 0.068 s; full then trained every block) over a feature pass through all the
# blocks (0.021 s, tta-rt-head.json of that day, before the head's default stopped at 3/4 of the depth),
# SmolLM2-135M on 2 CPU threads; full's then scaled by 0.72, the ratio of two runs of its table once its default
# froze the bottom half of the blocks (0.043 s against 0.059 s per training example, tta-rt-full.json against
# tta-rt-full-allblocks.json). A full rung with freeze_blocks=0 costs ~1.4x this estimate. Each rung's pass cost
# is the measured one scaled to the blocks it runs (_pass_cost)
TRAIN_COST = {"lora": 2.7, "full": 2.4}


def playbook(n: int, requested: list[str] | None = None) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(rungs tried, rungs the playbook picks, why) for ``n`` training examples; ``requested`` rungs are tried
    instead of the playbook's."""
    if requested is not None:  # exactly those
        unknown = [r for r in requested if r not in RUNGS]
        if unknown:
            raise ValueError(f"unknown rungs {unknown}; choose from {RUNGS}")
        return tuple(r for r in RUNGS if r in requested), *playbook(n)[1:]
    tried, pick, why = _by_size(n)
    return tuple(r for r in RUNGS if r in tried or r in ALWAYS), pick, why


def _by_size(n: int) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    if n < 100:
        return ("icl", "lmhead", "probe"), ("icl", "lmhead"), "< 100 examples: prompting or LM-head tuning"
    if n < 1000:
        return ("icl", "lmhead", "probe", "head"), ("probe",), "< 1,000 examples: frozen features + a linear model"
    return RUNGS, ("head", "lora", "full"), ">= 1,000 examples: train a head or fine-tune"


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
    progress: bool = True,
    **model_options,
) -> LadderResult:
    """Cross-validate the rungs that fit ``budget_s`` seconds, pick the winner, refit it on all the data,
    evaluate it on ``test`` when given, and save it (and the table) to ``out_dir`` when given.

    The budget holds for the cross-validation: a rung whose estimated cost exceeds the time left is skipped, and a
    rung still running when the time runs out is abandoned (within one batch, step or fold). An estimate of the
    winner's refit (one more fold) is kept back from each rung's deadline; the refit, the test evaluation and the
    save then run to the end, so the total can pass ``budget_s`` by the difference between that estimate and the
    refit's real cost.
    ``progress``: one line on standard error as each rung starts and ends (the table is also rewritten in
    ``out_dir`` as each rung ends). ``model_options`` are ModelConfig fields shared by every rung (template,
    verbalizers, dtype, seed...); ``fit`` holds TrainConfig fields for every rung's fit."""
    with shown(progress):  # transformers' load bar too; nothing outlives the call
        start = time.perf_counter()
        base_config, examples, test, fit = _checked(
            data, model, text, label, test, budget_s, fit, feature_cache, model_options
        )
        n = len(examples)
        tried, pick, why = playbook(n, rungs)
        tried, folds = _for_task(base_config.task, tried, rungs, examples, folds)
        result = LadderResult(n, folds, MAIN_METRIC[base_config.task], [], "", "", pick, False, 0.0)
        report = LadderProgress(result, Path(out_dir) if out_dir is not None else None, progress, start)
        report.say(f"{n} examples, {folds}-fold cross-validation, budget {budget_s:.0f} s; playbook: {why}")
        run = _Run(examples, base_config, model_options, fit, folds, start + budget_s, report, tried, rungs, why)
        run.first_pass(feature_cache, progress)
        for rung in RUNGS:
            result.rows.append(run.rung(rung))
            report.row(result.rows[-1])
        winner, result.reason = _choose(result.rows, folds, result.metric)
        result.winner, result.agreed = winner["rung"], winner["rung"] in pick
        result.classifier = run.refit(winner, text, label, progress)
        if test is not None:
            result.test = result.classifier.evaluate(test, text=text, label=label)
        result.seconds = time.perf_counter() - start
        report.done()
        return result


def _for_task(task: str, tried: tuple[str, ...], requested, examples: Examples, folds: int) -> tuple[tuple, int]:
    """The rungs the task can run (label words: classification only) and the folds its data allows (stratified
    folds need every class in each)."""
    if task != "classification":  # no label words to score
        if requested is not None and set(requested) & set(WORDS):
            raise ValueError(f"rungs {sorted(set(requested) & set(WORDS))} score label words: classification only")
        return tuple(r for r in tried if r not in WORDS), folds
    counts = np.unique(np.asarray([repr(v) for v in examples.raw]), return_counts=True)[1]
    return tried, max(2, min(folds, int(counts.min())))


@dataclass
class _Run:
    """One ladder's shared state: the data, the options every rung starts from, the deadline, the shared feature
    pass and its measured cost."""

    examples: Examples
    base_config: ModelConfig
    model_options: dict
    fit: dict
    folds: int
    end: float  # the deadline of the first pass and the cross-validation (perf_counter seconds): start + budget_s
    report: LadderProgress
    tried: tuple[str, ...]
    requested: list[str] | None
    why: str
    extractor: FeatureExtractor | None = None
    per_example: float = 0.0

    def first_pass(self, feature_cache: str | None, progress: bool) -> None:
        """One feature pass over all examples, timed: it sets the budget estimates and feeds every frozen rung."""
        config = self.base_config
        self.extractor = FeatureExtractor(bb.resolve(config.model), config.trust_remote_code, feature_cache)
        self.extractor.progress = progress
        with budget.deadline(self.end):
            try:
                self.per_example = _forward_cost(Classifier(config, extractor=self.extractor), self.examples, progress)
            except budget.BudgetExceeded as exc:
                raise budget.BudgetExceeded(
                    f"{exc} over the {len(self.examples)} examples, before any rung ran: raise budget_s"
                ) from None

    def rung(self, rung: str) -> dict:
        """The rung's row: run it under the deadline, or say why it did not run."""
        if rung not in self.tried:
            if self.base_config.task != "classification" and rung in WORDS:
                return {"rung": rung, "status": "skipped: scores label words (classification only)"}
            playbook_says = f"skipped: playbook ({self.why})"
            return {"rung": rung, "status": "not requested" if self.requested is not None else playbook_says}
        chars = sum(len(str(t)) for t in self.examples.texts)
        options = _rung_options(rung, self.base_config, self.model_options)
        per_example, own_pass = _pass_cost(options, self.base_config, self.per_example, self.extractor)
        estimate = _estimate(rung, len(self.examples), self.folds, per_example, self.fit, chars, own_pass)
        refit = estimate / self.folds  # the winner's refit on all the data: about one more fold, kept back
        left = self.end - time.perf_counter()
        if estimate + refit > left:
            return {"rung": rung, "status": f"skipped: estimated {estimate:.0f} s > {left:.0f} s left"}
        self.report.say(f"{rung}: running (estimated {estimate:.0f} s, {left:.0f} s left)")
        began = time.perf_counter()
        rung_fit = _rung_fit(rung, self.fit)
        with budget.deadline(self.end - refit):
            row = _cross_validate(rung, self.examples, options, rung_fit, self.folds, self.extractor, per_example)
        return {"rung": rung, **row, "seconds": time.perf_counter() - began}

    def refit(self, winner: dict, text, label, progress: bool) -> Classifier:
        """The winner fitted on all the examples (no deadline: the budget kept its estimate back)."""
        n, folds = len(self.examples), self.folds
        refit = winner["fit_seconds"] * folds / (folds - 1)  # a fold's fit, on all the data instead of (k-1)/k
        self.report.say(f"winner: {winner['rung']}; refitting it on all {n} examples (about {refit:.0f} s)")
        options = _rung_options(winner["rung"], self.base_config, self.model_options)
        final = Classifier(build(ModelConfig, options), extractor=self.extractor)
        fit = _rung_fit(winner["rung"], {**self.fit, "progress": progress})
        final.fit(self.examples, text=text, label=label, **fit)
        return final


def _checked(data, model, text, label, test, budget_s, fit, feature_cache, model_options: dict):
    """Everything checked before any weights load: the options (each refused when no rung reads it), the budget,
    the data and the test data. Returns the head rung's configuration, the examples, the test examples and the
    rungs' fit options."""
    if model is not None:
        model_options["model"] = model
    model_options.pop("mode", None)
    build(ModelConfig, {**model_options, "mode": "auto"})
    base_config = build(ModelConfig, {**used_options(ModelConfig, model_options, "head"), "mode": "head"})
    if isinstance(budget_s, bool) or not (isinstance(budget_s, (int, float)) and 0 < budget_s < math.inf):
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    examples = Examples.read(data, text, label, base_config.task, base_config.pair_separator, "train")
    fit = dict(fit or {})
    checked = for_mode(build(TrainConfig, fit), "auto")  # unknown keys, wrong types, options no rung reads (run_dir...)
    problems = unused_by_task(checked, base_config.task, eval_given=False)  # focal_gamma for regression...
    if problems:
        raise invalid(problems)
    if feature_cache:
        fit.setdefault("feature_cache", feature_cache)
    if test is not None:
        test = Examples.read(test, text, label, base_config.task, base_config.pair_separator, "test")
    return base_config, examples, test, fit


def _forward_cost(clf: Classifier, examples: Examples, progress: bool) -> float:
    """Seconds of forward pass per example, measured on up to 64 of them (the weights load outside the timing);
    then every example's features, cached for the frozen rungs (with a bar: on real data this takes minutes)."""
    texts = clf.inputs(examples.texts)
    sample = texts[: min(len(texts), 64)]
    clf.extractor.progress = False
    clf.embed(sample[:2], cache=False, templated=True)  # loads the weights
    t0 = time.perf_counter()
    clf.embed(sample, cache=False, templated=True)  # measured even when the features are cached
    per_example = (time.perf_counter() - t0) / len(sample)
    clf.extractor.progress = progress
    clf.embed(texts, cache=True, templated=True)
    return per_example


def _pass_cost(options: dict, base: ModelConfig, per_example: float, extractor) -> tuple[float, bool]:
    """The rung's forward seconds per example: the measured pass's (the head rung's blocks) scaled by the blocks the
    rung runs (icl, lmhead and fine-tuning read the final output: all of them by default); and whether its frozen
    features need a pass of their own (lmhead's last token of the final output, unless the head rung's are that)."""
    if options["mode"] == "tfidf":
        return 0.0, False
    total = extractor.blocks()
    config = build(ModelConfig, options)
    blocks = block_plan(total, config.layer, config.layers)[0]
    base_blocks = block_plan(total, base.layer, base.layers)[0]
    same = (config.pooling, blocks, config.layers) == (base.pooling, base_blocks, base.layers)
    return per_example * blocks / base_blocks, config.mode == "lmhead" and not same


def _cross_validate(rung, examples, options, rung_fit, folds, extractor, per_example) -> dict:
    """The rung's row of the table: its cross-validated score and costs, or why it failed."""
    try:
        cv = cross_validate(examples, folds=folds, fit=rung_fit, extractor=extractor, **options)
    except budget.BudgetExceeded as exc:  # stopped within a batch, step or fold of the deadline
        return {"status": f"abandoned: {exc}"}
    except Exception as exc:  # one failing rung must not sink the others; the table says why
        log.exception("rung %s failed", rung)
        return {"status": f"failed: {type(exc).__name__}: {str(exc)[:120]}"}
    per_1000 = np.mean([f["predict_seconds"] / f["n_heldout"] for f in cv.folds]) * 1000
    strategy = for_config(build(ModelConfig, options))
    if strategy.reads_backbone and strategy.shares_weights():
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


def _choose(rows: list[dict], folds: int, metric: str = "accuracy") -> tuple[dict, str]:
    """Among rungs within one standard error of the best and not below the baseline (tfidf): the cheapest to run
    (costs within 20% count as equal), then the one with the fewest trained parameters (the least room to
    overfit)."""
    ran = [r for r in rows if r["status"] == "ran"]
    if not ran:
        raise RuntimeError(
            "no rung fitted the budget; raise budget_s. " + "; ".join(f"{r['rung']}: {r['status']}" for r in rows)
        )
    best = max(ran, key=lambda r: r["mean"])
    se = best["std"] / math.sqrt(folds)
    floor = next((r["mean"] for r in ran if r["rung"] == BASELINE), -math.inf)
    close = [r for r in ran if r["mean"] >= max(best["mean"] - se, floor)]
    cheapest = min(r["predict_per_1000"] for r in close)
    affordable = [r for r in close if r["predict_per_1000"] <= 1.2 * cheapest]
    winner = min(affordable, key=lambda r: (r["trainable"], RUNGS.index(r["rung"])))
    if winner is best:
        return winner, f"highest mean CV {metric} ({best['mean']:.4f} +/- {best['std']:.4f})"
    reason = (
        f"{winner['mean']:.4f} is within one standard error ({se:.4f}) of the best, {best['rung']} "
        f"({best['mean']:.4f}); among those it costs {winner['predict_per_1000']:.1f} s per 1,000 predictions "
        f"(vs {best['predict_per_1000']:.1f})"
    )
    if winner["trainable"] < best["trainable"]:
        reason += f" and trains fewer parameters ({winner['trainable']:,} vs {best['trainable']:,})"
    return winner, reason


def _estimate(
    rung: str, n: int, folds: int, per_example: float, fit: dict, chars: int = 0, own_pass: bool = False
) -> float:
    """Seconds for the rung's cross-validation, from its forward cost per example (``chars``: the training texts'
    total length, what n-gram counting costs grow with; ``own_pass``: frozen features not in the shared pass)."""
    if rung == "probe":  # features cached; the SVM's C search grows with n (3,406 examples: ~35 s a fold here)
        return (2.0 + 0.01 * n) * folds
    if rung in ("lmhead", "head"):  # features are cached (lmhead's after a pass of its own): only the head trains
        return 2.0 * folds + (n * per_example if own_pass else 0.0)
    if rung in ("tfidf", "hybrid"):  # n-gram counting and a cross-validated linear model per fold, no forward pass
        # measured per fold here: 3.3 s (2,940 tweets, 0.24M characters), 7.6 s (3,406 snippets, 0.4M), 100 s
        # (1,558 BBC articles, 3.4M); the hybrid searches 3 block weights on wider rows: ~5x
        return (2.0 + 3e-5 * chars) * folds * (5 if rung == "hybrid" else 1)
    if rung == "icl":
        return 4.0 * n * per_example + 60  # each example scored once (demonstrations cached) + prompt choice
    epochs = fit.get("epochs") or EPOCHS[rung]  # the mode's default (config/train.py)
    train = n * (folds - 1) * epochs * TRAIN_COST[rung] * per_example
    return train + 2 * n * per_example  # + held-out predictions and the warm start's features


def _rung_options(rung: str, base: ModelConfig, user: dict) -> dict:
    options = used_options(ModelConfig, {k: v for k, v in user.items() if k != "mode"}, rung)
    options["mode"] = rung
    if rung == "icl" and "icl_template" not in user:
        if base.template != "{text}":  # the user's prompt, followed by the label word (and applied once)
            options["icl_template"] = base.template.rstrip() + " {label}"
            options["template"] = "{text}"
    if rung == "probe" and base.task != "regression":  # (regression: ridge, the task's default)
        options.setdefault("probe", "svm")
    return options


def _rung_fit(rung: str, fit: dict) -> dict:
    options = used_options(TrainConfig, fit, rung)  # e.g. no epochs or lr for icl and probe, no grad_accum for head
    options.setdefault("progress", False)
    return options


def auto(data: Any, model: str | None = None, **options) -> Classifier:
    """The ladder's winner, refit on all of ``data`` and ready to predict; ``clf.ladder`` holds the table and the
    reason. ``options`` are those of ``run_ladder`` (text, label, test, budget_s, folds, rungs, out_dir, fit,
    feature_cache) and ModelConfig fields shared by every rung."""
    result = run_ladder(data, model, **options)
    log.info("llmhead.auto chose %s: %s", result.winner, result.reason)
    result.classifier.ladder = result
    return result.classifier

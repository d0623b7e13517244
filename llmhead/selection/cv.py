"""Cross-validation for any mode: k folds (stratified for classification, grouped when a group column is
given), the metric's mean and standard deviation over folds, out-of-fold predictions, and optionally the
fold models as an ensemble.

The folds share one ``FeatureExtractor`` (tokenizer, frozen backbone, feature cache), so cross-validating a
frozen mode (probe, head, hybrid, lmhead) costs a single feature pass over the data. Each fold is a new
``Classifier`` built from the configuration and used through its public methods only (scikit-learn's ``clone`` /
``fit`` / ``predict``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmhead import budget
from llmhead.classifier import Classifier
from llmhead.config import ModelConfig, build
from llmhead.data import DataError
from llmhead.data.examples import Examples
from llmhead.data.labels import LabelSpace
from llmhead.features.extractor import FeatureExtractor
from llmhead.model import backbone as bb

MAIN_METRIC = {"classification": "accuracy", "multilabel": "micro_f1", "regression": "pearson"}


@dataclass
class CVResult:
    metric: str
    folds: list[dict]  # per fold: sizes, every metric, fit and prediction seconds
    oof: list[dict]  # one row per example: its fold, the truth, the out-of-fold prediction (and probabilities)
    models: list[Classifier] = field(default_factory=list)  # kept when ensemble=True

    @property
    def scores(self) -> np.ndarray:
        return np.array([f[self.metric] for f in self.folds], dtype=float)

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def std(self) -> float:
        return float(self.scores.std(ddof=1)) if len(self.folds) > 1 else 0.0

    def summary(self) -> dict:
        fit = [f["fit_seconds"] for f in self.folds]
        return {
            "metric": self.metric,
            "mean": self.mean,
            "std": self.std,
            "folds": self.folds,
            "fit_seconds_mean": float(np.mean(fit)),
        }

    def predict_proba(self, data: Any, text="text") -> np.ndarray:
        """The fold models' mean probabilities (classification / multilabel)."""
        if not self.models:
            raise RuntimeError("cross_validate(..., ensemble=True) keeps the fold models for prediction")
        return np.mean([m.predict_proba(data, text) for m in self.models], axis=0)

    def predict(self, data: Any, text="text") -> list:
        """Ensemble prediction: argmax of the mean probabilities, per-label mean thresholds for multilabel,
        the mean value for regression."""
        first = self.models[0] if self.models else None
        if first is None:
            raise RuntimeError("cross_validate(..., ensemble=True) keeps the fold models for prediction")
        labels = first.labels
        if labels.task == "regression":
            values = np.mean([np.asarray(m.predict(data, text), dtype=float) for m in self.models], axis=0)
            return values.tolist()
        proba = self.predict_proba(data, text)
        if labels.task == "classification":
            return [labels.names[i] for i in proba.argmax(1)]
        thresholds = np.mean([m.labels.thresholds or [0.5] * len(labels.names) for m in self.models], axis=0)
        return [[n for n, p, t in zip(labels.names, row, thresholds) if p >= t] for row in proba]


def fold_indices(task: str, targets: np.ndarray, groups: list | None, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out row indices of each fold: stratified by class for classification, never splitting a
    group across folds when ``groups`` is given."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    n = len(targets)
    if not (isinstance(folds, int) and 2 <= folds <= n):
        raise ValueError(f"folds must be an int in [2, {n}] (the number of examples), got {folds!r}")
    x = np.zeros(n)
    if task == "classification":
        counts = np.bincount(targets)
        rare = [i for i, k in enumerate(counts) if 0 < k < folds]
        if rare and groups is None:
            raise DataError(
                f"stratified {folds}-fold cross-validation needs >= {folds} examples of every class; "
                f"class index(es) {rare} have {[int(counts[i]) for i in rare]}: use fewer folds"
            )
    if groups is not None:
        codes = np.unique(np.asarray([repr(g) for g in groups]), return_inverse=True)[1]
        if len(np.unique(codes)) < folds:
            raise DataError(f"grouped {folds}-fold cross-validation needs >= {folds} groups, got {codes.max() + 1}")
        if task == "classification":
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            return [test for _, test in splitter.split(x, targets, codes)]
        return [test for _, test in GroupKFold(n_splits=folds).split(x, groups=codes)]
    if task == "classification":
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return [test for _, test in splitter.split(x, targets)]
    return [test for _, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(x)]


def cross_validate(
    data: Any,
    model: str | None = None,
    *,
    text="text",
    label="label",
    group: str | None = None,
    folds: int = 5,
    ensemble: bool = False,
    out_dir: str | None = None,
    fit: dict | None = None,
    extractor: FeatureExtractor | None = None,
    **model_options,
) -> CVResult:
    """Cross-validate a classifier built from ``model`` and ``model_options`` (ModelConfig fields);
    ``fit`` holds TrainConfig fields for each fold's ``fit``. Returns per-fold metrics, their mean and
    std, and out-of-fold predictions (written to ``out_dir/oof.jsonl`` and ``out_dir/cv.json`` when set).
    ``extractor``: the tokenizer, frozen weights and feature cache the folds share (the ladder passes its own)."""
    if model is not None:
        model_options["model"] = model
    config = build(ModelConfig, model_options)
    if config.mode == "auto":
        raise ValueError("cross_validate runs one mode; llmhead.auto (the ladder) cross-validates each rung itself")
    # Every check on the data happens here, once, before any weights load; the folds index into these examples.
    examples = Examples.read(data, text, label, config.task, config.pair_separator, "train", group)
    labels = LabelSpace.learn(config.task, examples.raw, config.labels, label, origin=examples.origin)
    targets = labels.encode(examples.raw, examples.origin).numpy()
    held_out = fold_indices(config.task, targets, examples.groups, folds, config.seed)
    fit = {"progress": False, **(fit or {})}
    extractor = extractor or FeatureExtractor(bb.resolve(config.model), config.trust_remote_code)
    result = CVResult(MAIN_METRIC[config.task], [], [])
    oof: dict[int, dict] = {}
    started = time.perf_counter()
    for k, test_idx in enumerate(held_out):
        if k:  # under a time budget (the ladder's): stop now if the folds left would end past it
            per_fold = (time.perf_counter() - started) / k
            budget.check(f"cross-validation ({k} of {len(held_out)} folds done)", per_fold * (len(held_out) - k))
        clf = Classifier(config, extractor=extractor)  # a frozen backbone and its features are shared
        record, logits, heldout = _fold(k, clf, examples, test_idx, labels, text, label, fit)
        result.folds.append(record)
        oof.update(_oof_rows(clf, logits, test_idx, heldout.raw, k))
        if ensemble:
            result.models.append(clf)
    result.oof = [oof[i] for i in sorted(oof)]
    if out_dir is not None:
        _write(result, Path(out_dir))
    return result


def _fold(k: int, clf: Classifier, examples: Examples, test_idx: np.ndarray, labels: LabelSpace, text, label, fit):
    """Fold ``k``: ``clf`` fitted on the rows outside ``test_idx`` and scored on them (targets encoded by ``labels``,
    the label space of all the rows). Returns the fold's record, its held-out logits and its held-out rows."""
    train_idx = np.setdiff1d(np.arange(len(examples)), test_idx)
    start = time.perf_counter()
    clf.fit(examples.subset(train_idx, f"fold {k + 1} training rows"), text=text, label=label, **fit)
    fit_seconds = time.perf_counter() - start
    heldout = examples.subset(test_idx, f"fold {k + 1} held-out rows")
    start = time.perf_counter()
    logits = clf.logits(clf.inputs(heldout.texts), templated=True, cache=True)
    predict_seconds = time.perf_counter() - start
    scores = clf.score_logits(logits, labels.encode(heldout.raw), heldout.raw)
    record = {
        "fold": k + 1,
        "n_train": int(len(train_idx)),
        "n_heldout": int(len(test_idx)),
        **{m: v for m, v in scores.items() if isinstance(v, (int, float))},
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "trainable": clf.trainable_parameters(),
    }
    return record, logits, heldout


def _oof_rows(clf, logits, test_idx, raw: list, k: int) -> dict[int, dict]:
    predictions = clf.labels.decode(logits)
    proba = clf.labels.probabilities(logits) if clf.config.task != "regression" else None
    rows = {}
    for j, i in enumerate(test_idx):
        row = {"row": int(i) + 1, "fold": k + 1, "label": _plain(raw[j]), "prediction": _plain(predictions[j])}
        if proba is not None:
            row["probabilities"] = dict(zip(map(str, clf.labels.names), map(float, proba[j])))
        rows[int(i)] = row
    return rows


def _write(result: CVResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cv.json").write_text(json.dumps(result.summary(), indent=2))
    with open(folder / "oof.jsonl", "w") as f:
        for row in result.oof:
            f.write(json.dumps(row) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

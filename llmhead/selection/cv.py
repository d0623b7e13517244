"""Cross-validation for any mode: k folds (stratified for classification, grouped when a group column is
given), the metric's mean and standard deviation over folds, out-of-fold predictions, and optionally the
fold models as an ensemble.

The folds share one tokenizer, one frozen backbone and one feature cache, so cross-validating the probe,
head and lmhead modes costs a single feature pass over the data.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmhead.classifier import Classifier
from llmhead.config import FROZEN_MODES, ModelConfig, build
from llmhead.data.labels import LabelSpace
from llmhead.data.read import DataError, read_raw_labels, read_table, read_texts, require_columns

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
    share: Classifier | None = None,
    **model_options,
) -> CVResult:
    """Cross-validate a classifier built from ``model`` and ``model_options`` (ModelConfig fields);
    ``fit`` holds TrainConfig fields for each fold's ``fit``. Returns per-fold metrics, their mean and
    std, and out-of-fold predictions (written to ``out_dir/oof.jsonl`` and ``out_dir/cv.json`` when set).
    ``share``: a classifier whose loaded backbone and feature cache the folds reuse (the ladder's)."""
    if model is not None:
        model_options["model"] = model
    config = build(ModelConfig, model_options)
    if config.mode == "auto":
        raise ValueError("cross_validate runs one mode; mode='auto' (the ladder) cross-validates each rung itself")
    table = read_table(data, "train")
    # Every check on the data happens here, once, before any weights load.
    read_texts(table, text, config.template, config.pair_separator)
    raw = read_raw_labels(table, label, config.task)
    labels = LabelSpace.learn(config.task, raw, config.labels, label)
    targets = labels.encode(raw, table.origin).numpy()
    groups = None
    if group is not None:
        require_columns(table, [group], "group")
        groups = table.columns[group]
        missing = [i + 1 for i, g in enumerate(groups) if g is None or (isinstance(g, float) and np.isnan(g))]
        if missing:
            raise DataError(f"{table.origin}: column {group!r} has no group in row(s) {missing[:10]}")
    held_out = fold_indices(config.task, targets, groups, folds, config.seed)
    fit = dict(fit or {})
    fit.setdefault("progress", False)
    base = share
    result = CVResult(MAIN_METRIC[config.task], [], [])
    oof: dict[int, dict] = {}
    for k, test_idx in enumerate(held_out):
        train_idx = np.setdiff1d(np.arange(len(table)), test_idx)
        clf = Classifier(config, base.source if base is not None else None)
        if base is not None:
            clf.share_frozen(base)
        start = time.perf_counter()
        clf.fit(table.rows(train_idx, f"fold {k + 1} training rows"), text=text, label=label, **fit)
        fit_seconds = time.perf_counter() - start
        heldout = table.rows(test_idx, f"fold {k + 1} held-out rows")
        start = time.perf_counter()
        logits = clf.logits(heldout, text, cache=True)
        predict_seconds = time.perf_counter() - start
        fold_raw = [raw[i] for i in test_idx]
        scores = clf.score_logits(logits, labels.encode(fold_raw), fold_raw)
        result.folds.append(
            {
                "fold": k + 1,
                "n_train": int(len(train_idx)),
                "n_heldout": int(len(test_idx)),
                **{m: v for m, v in scores.items() if isinstance(v, (int, float))},
                "fit_seconds": fit_seconds,
                "predict_seconds": predict_seconds,
            }
        )
        predictions = clf.labels.decode(logits)
        proba = clf.labels.probabilities(logits) if config.task != "regression" else None
        for j, i in enumerate(test_idx):
            row = {"row": int(i) + 1, "fold": k + 1, "label": _plain(raw[i]), "prediction": _plain(predictions[j])}
            if proba is not None:
                row["probabilities"] = dict(zip(map(str, clf.labels.names), map(float, proba[j])))
            oof[int(i)] = row
        if ensemble:
            result.models.append(clf)
        if config.mode in FROZEN_MODES + ("icl",):
            base = clf  # later folds reuse its loaded (frozen) model and the feature cache
    result.oof = [oof[i] for i in sorted(oof)]
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cv.json").write_text(json.dumps(result.summary(), indent=2))
        with open(folder / "oof.jsonl", "w") as f:
            for row in result.oof:
                f.write(json.dumps(row) + "\n")
    return result


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

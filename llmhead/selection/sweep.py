"""Which layer to read: every layer's (or every k-th layer's) pooled features from one forward pass, a
cross-validated linear probe on each, the table, and a probe classifier built at the best layer with the
blocks above it dropped.

Middle layers often beat the last one for classification; this measures it on the user's data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmhead.classifier import Classifier
from llmhead.config import ModelConfig, build, used_options
from llmhead.data.examples import Examples
from llmhead.data.labels import LabelSpace
from llmhead.features.extractor import FeatureExtractor
from llmhead.model import backbone as bb


@dataclass
class SweepResult:
    table: list[dict]  # one row per layer: layer, cv score mean and std
    metric: str
    best_layer: int
    seconds: float
    classifier: Classifier | None = None  # the probe at the best layer (build=True)

    def format(self) -> str:
        lines = [f"| layer | {self.metric} (mean +/- std) |", "|---:|---|"]
        for row in self.table:
            mark = " **best**" if row["layer"] == self.best_layer else ""
            lines.append(f"| {row['layer']} | {row['mean']:.4f} +/- {row['std']:.4f}{mark} |")
        return "\n".join(lines)


def layer_sweep(
    data: Any,
    model: str | None = None,
    *,
    text="text",
    label="label",
    every: int = 1,
    folds: int = 5,
    build_best: bool = True,
    feature_cache: str | None = None,
    batch_size: int = 32,
    **model_options,
) -> SweepResult:
    """Score blocks every, 2*every, ... (and always the last) by ``folds``-fold cross-validated probe
    accuracy (classification; R^2 for regression, whose probe is ridge), all from a single forward pass."""
    if model is not None:
        model_options["model"] = model
    model_options.setdefault("mode", "probe")
    if model_options.get("layer") is not None or model_options.get("layers") is not None:
        raise ValueError("layer_sweep chooses the layer itself: do not pass layer or layers")
    if not (isinstance(every, int) and every >= 1):
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    config = build(ModelConfig, model_options)
    if config.task == "multilabel":
        raise ValueError("layer_sweep scores single-label classification (accuracy) or regression (R^2)")
    examples = Examples.read(data, text, label, config.task, config.pair_separator, "train")
    labels = LabelSpace.learn(config.task, examples.raw, config.labels, label, origin=examples.origin)
    y = labels.encode(examples.raw, examples.origin).numpy()
    start = time.perf_counter()
    extractor = FeatureExtractor(bb.resolve(config.model), config.trust_remote_code, feature_cache)
    total = extractor.blocks()
    layers = sorted({*range(every, total + 1, every), total})
    head_options = used_options(ModelConfig, model_options, "head")  # not the probe's own options
    sweeper = Classifier(build(ModelConfig, {**head_options, "mode": "head", "layers": layers}), extractor=extractor)
    texts = sweeper.inputs(examples.texts)
    features = (
        sweeper.embed(texts, batch_size=batch_size, cache=True, templated=True).values.double().numpy()
    )  # (N, L, H)
    rows, metric = _scores(features, y, layers, config, folds)
    best = max(rows, key=lambda r: r["mean"])["layer"]
    result = SweepResult(rows, metric, best, time.perf_counter() - start)
    if build_best:
        clf = Classifier(build(ModelConfig, {**model_options, "layer": best}), extractor=extractor)
        clf.fit(examples, text=text, label=label, progress=False)
        clf.sweep = result
        result.classifier = clf
    return result


def _scores(features: np.ndarray, y: np.ndarray, layers: list[int], config: ModelConfig, folds: int):
    """Each layer's cross-validated probe score (accuracy, or R^2 for regression) and the metric's name."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if config.task == "classification":
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
        c = config.probe_c or 0.01  # a fixed, fairly strong penalty: comparable across layers, fast
        estimator = LogisticRegression(C=c, max_iter=3000)
        scoring, metric = "accuracy", "cv_accuracy"
    else:
        cv = KFold(n_splits=folds, shuffle=True, random_state=config.seed)
        estimator, scoring, metric = Ridge(alpha=config.probe_alpha or 100.0), "r2", "cv_r2"
    rows = []
    for j, layer in enumerate(layers):
        scores = cross_val_score(make_pipeline(StandardScaler(), estimator), features[:, j], y, cv=cv, scoring=scoring)
        rows.append({"layer": layer, "mean": float(scores.mean()), "std": float(scores.std(ddof=1))})
    return rows, metric

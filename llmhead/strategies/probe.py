"""Linear models on frozen ("bottleneck") features: the playbook's choice below ~1,000 examples.

scikit-learn fits them (logistic regression, a linear SVM with sigmoid-calibrated probabilities, ridge
regression, the regularisation chosen by cross-validation); the fitted numbers are then copied into
``ProbeHead``, a torch module holding only tensors. It is saved as safetensors like any head, never pickled,
and computes exactly what scikit-learn's ``predict_proba`` / ``predict`` would (tests check both).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from llmhead.config import PROBES  # noqa: F401 (the choices live with the schema)
from llmhead.strategies.base import Split, Strategy, tune_thresholds, validation_record

C_GRID = np.logspace(-4, 1, 11)  # inverse regularisation tried for logreg / svm on standardized features
# The linear SVM stops at C = 1: above it, on (nearly) separable standardized features, liblinear runs to its
# iteration cap (~9 s a fit on 1,000 BBC articles' features, against 0.1-2 s below it) for no better CV score.
SVM_C_GRID = C_GRID[C_GRID <= 1.0]
ALPHA_GRID = np.logspace(-2, 5, 15)  # ridge penalties


class ProbeHead(nn.Module):
    """(B, L, H) pooled features -> flatten -> standardize -> linear -> task output:

    - classification: log-probabilities (softmax of them gives scikit-learn's ``predict_proba``);
    - multilabel: per-label logits (sigmoid gives the per-label probabilities);
    - regression: standardized targets (``LabelSpace`` maps them back to user units).
    """

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        kind: str,
        task: str,
        num_linear: int | None = None,
        standardize: bool = True,
    ):
        super().__init__()
        self.kind, self.task = kind, task
        rows = num_linear or num_outputs
        if standardize:  # heads on other inputs (TF-IDF rows, strategies/tfidf.py) subclass without it
            self.register_buffer("mean", torch.zeros(in_features, dtype=torch.float64))
            self.register_buffer("std", torch.ones(in_features, dtype=torch.float64))
        self.register_buffer("coef", torch.zeros(rows, in_features, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(rows, dtype=torch.float64))
        # sigmoid calibration of SVM scores, per output: p = 1 / (1 + exp(a * score + b))
        self.register_buffer("cal_a", torch.zeros(rows, dtype=torch.float64))
        self.register_buffer("cal_b", torch.zeros(rows, dtype=torch.float64))
        self.num_outputs = num_outputs

    def decision(self, pooled: torch.Tensor) -> torch.Tensor:
        x = (pooled.flatten(1).double() - self.mean) / self.std
        return x @ self.coef.T + self.intercept

    def forward(self, pooled: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.outputs(self.decision(pooled))

    def copy_linear(self, fitted: ProbeHead) -> None:
        """Take the linear model (and the SVM's calibration) of a head ``fit_linear`` returned."""
        for name in ("coef", "intercept", "cal_a", "cal_b"):
            getattr(self, name).copy_(getattr(fitted, name))

    def outputs(self, d: torch.Tensor) -> torch.Tensor:
        """(N, rows) float64 decision values -> the task's output (see the class docstring)."""
        if self.task == "regression":
            return d.float()
        if self.kind == "svm":
            p = torch.sigmoid(-(self.cal_a * d + self.cal_b))  # calibrated one-vs-rest probabilities
            if self.task == "multilabel":
                return torch.logit(p.clamp(1e-12, 1 - 1e-12)).float()
            if self.num_outputs == 2:
                p = torch.cat([1 - p, p], 1)
            else:
                total = p.sum(1, keepdim=True)
                p = torch.where(total > 0, p / total.clamp(min=1e-300), torch.full_like(p, 1 / p.shape[1]))
            return p.clamp(min=1e-300).log().float()
        if self.task == "multilabel":
            return d.float()
        if self.num_outputs == 2:  # binary logistic regression has one row: the score of class 1
            return torch.cat([nn.functional.logsigmoid(-d), nn.functional.logsigmoid(d)], 1).float()
        return d.log_softmax(1).float()


def fit_probe(
    features: torch.Tensor, targets: torch.Tensor, kind: str, task: str, c: float | None, seed: int, folds: int = 5
) -> tuple[ProbeHead, dict]:
    """Fit on (N, L, H) features; return the head and what was chosen (C or alpha, CV score)."""
    from sklearn.preprocessing import StandardScaler

    x = features.flatten(1).double().numpy()
    scaler = StandardScaler().fit(x)
    head, info = fit_linear(scaler.transform(x), targets.numpy(), kind, task, c, seed, folds)
    head.mean.copy_(torch.from_numpy(scaler.mean_))
    head.std.copy_(torch.from_numpy(scaler.scale_))
    return head, info


def fit_linear(
    xs, y: np.ndarray, kind: str, task: str, c: float | None, seed: int, folds: int | None = 5, grid=None
) -> tuple[ProbeHead, dict]:
    """The linear model on rows ``xs`` (dense, or scipy sparse): C (or ridge's alpha) from ``grid`` by
    ``folds``-fold cross-validation unless ``c`` is given. ``folds=None``: ridge's efficient leave-one-out."""
    if task == "regression":
        if kind != "ridge":
            raise ValueError(f"probe={kind!r} is a classifier; regression uses probe='ridge'")
        head, info = _ridge(xs, y, c, folds, ALPHA_GRID if grid is None else grid)
    elif kind == "ridge":
        raise ValueError("probe='ridge' is for task='regression'; use 'logreg' or 'svm' for classification")
    elif task == "classification":
        head, info = _classifier(xs, y, kind, c, seed, folds or 5, _c_grid(kind) if grid is None else grid)
    else:  # multilabel: one binary model per label
        grid = _c_grid(kind) if grid is None else grid
        parts = [_classifier(xs, y[:, j].astype(int), kind, c, seed, folds or 5, grid) for j in range(y.shape[1])]
        head = ProbeHead(xs.shape[1], y.shape[1], kind, task)
        for j, (part, _) in enumerate(parts):
            for name in ("coef", "intercept", "cal_a", "cal_b"):
                getattr(head, name)[j] = getattr(part, name)[0]
        info = {"C": [p[1]["C"] for p in parts], "cv_score": float(np.mean([p[1]["cv_score"] for p in parts]))}
    head.task = task
    return head, info


def _c_grid(kind: str) -> np.ndarray:
    return SVM_C_GRID if kind == "svm" else C_GRID


def _cv(y: np.ndarray, folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    smallest = np.bincount(y).min() if len(y) else 0
    return StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)


def _classifier(x, y: np.ndarray, kind: str, c: float | None, seed: int, folds: int, grid):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import LinearSVC

    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("a probe needs at least two classes in the training data (a label column is constant)")
    if np.bincount(y).min() < 2:
        raise ValueError("a probe needs at least 2 examples of every class (it cross-validates)")
    n_out = int(y.max()) + 1
    base = (
        LogisticRegression(max_iter=5000)
        if kind == "logreg"
        else LinearSVC(max_iter=20000, dual="auto", random_state=seed)
    )
    score = None
    if c is None:  # choose the regularisation by stratified cross-validation on the training data
        search = GridSearchCV(base, {"C": grid}, cv=_cv(y, folds, seed), scoring="accuracy").fit(x, y)
        c, score = float(search.best_params_["C"]), float(search.best_score_)
    base.set_params(C=c)
    binary = n_out == 2
    head = ProbeHead(x.shape[1], n_out, kind, "classification", num_linear=1 if binary else n_out)
    if kind == "logreg":
        model = base.fit(x, y)
        coef, intercept = model.coef_, model.intercept_
    else:
        model = CalibratedClassifierCV(base, method="sigmoid", cv=_cv(y, folds, seed), ensemble=False).fit(x, y)
        inner = model.calibrated_classifiers_[0]
        coef, intercept = inner.estimator.coef_, inner.estimator.intercept_
        head.cal_a.copy_(torch.tensor([k.a_ for k in inner.calibrators], dtype=torch.float64))
        head.cal_b.copy_(torch.tensor([k.b_ for k in inner.calibrators], dtype=torch.float64))
    if not binary and len(classes) != n_out:
        raise ValueError("every class must appear in the training data of a probe")
    head.coef.copy_(torch.from_numpy(np.asarray(coef, dtype=np.float64)))
    head.intercept.copy_(torch.from_numpy(np.asarray(intercept, dtype=np.float64)))
    head.sklearn = model  # kept in memory for tests comparing with scikit-learn; never saved
    return head, {"C": c, "cv_score": score}


def _ridge(x, y: np.ndarray, alpha: float | None, folds: int | None, grid):
    from sklearn.linear_model import Ridge, RidgeCV

    if alpha is None:
        model = RidgeCV(alphas=grid, cv=None if folds is None else min(folds, len(y))).fit(x, y)
        alpha, score = float(model.alpha_), float(model.best_score_)
    else:
        model, score = Ridge(alpha=alpha).fit(x, y), None
    coef = np.atleast_2d(model.coef_)
    head = ProbeHead(x.shape[1], coef.shape[0], "ridge", "regression")
    head.coef.copy_(torch.from_numpy(coef.astype(np.float64)))
    head.intercept.copy_(torch.from_numpy(np.atleast_1d(model.intercept_).astype(np.float64)))
    head.sklearn = model
    return head, {"C": alpha, "cv_score": score}


class Probe(Strategy):
    """mode='probe': frozen features + a scikit-learn linear model, its regularisation chosen by cross-validation."""

    validates = False  # every example trains; the probe cross-validates its regularisation instead
    calibrates = False  # logreg's probabilities are its own likelihood fit; svm's are sigmoid-calibrated by CV

    def new_head(self, width: int, n_layers: int, labels) -> nn.Module:
        c = self.config
        binary = c.task == "classification" and labels.num_outputs == 2
        return ProbeHead(n_layers * width, labels.num_outputs, c.probe, c.task, 1 if binary else None)

    def fit(self, clf, train: Split, val: Split, cfg, extra_metrics: dict) -> list[dict]:
        c = self.config
        x_train = clf.embed(train.texts, batch_size=cfg.batch_size, cache=True, templated=True)
        x_val = clf.embed(val.texts, batch_size=cfg.batch_size, cache=True, templated=True) if val.texts else None
        strength = c.probe_alpha if c.probe == "ridge" else c.probe_c  # ridge penalty, or C of logreg / svm
        head, info = fit_probe(x_train.values, train.targets, c.probe, c.task, strength, c.seed)
        clf.model.head = head.eval()
        tune_thresholds(clf, x_val, val.targets, cfg)
        return [{"probe": c.probe, **info, **validation_record(clf, x_val, val.targets, cfg.batch_size)}]

    def trainable_parameters(self, model) -> int:
        return model.head.coef.numel() + model.head.intercept.numel()

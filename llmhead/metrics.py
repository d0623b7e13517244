"""Metrics computed offline with scikit-learn and scipy (``evaluate.load`` needs the hub)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def classification(y_true: np.ndarray, y_pred: np.ndarray, names: list) -> dict:
    """y_true, y_pred: (N,) class ids."""
    labels = list(range(len(names)))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(f.mean()),
        "per_class": {
            str(n): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, n in enumerate(names)
        },
    }


def multilabel(y_true: np.ndarray, y_pred: np.ndarray, names: list) -> dict:
    """y_true, y_pred: (N, C) 0/1."""
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    return {
        "micro_f1": float(skm.f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f.mean()),
        "subset_accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "hamming_loss": float(skm.hamming_loss(y_true, y_pred)),
        "per_class": {
            str(n): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, n in enumerate(names)
        },
    }


def _correlation(fn, a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")  # undefined for a constant input; reported, not hidden
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(a, b)[0])


def regression(y_true: np.ndarray, y_pred: np.ndarray, names: list) -> dict:
    """y_true, y_pred: (N, K) floats."""
    per = {}
    for k, name in enumerate(names):
        t, p = y_true[:, k], y_pred[:, k]
        per[str(name)] = {
            "mse": float(skm.mean_squared_error(t, p)),
            "mae": float(skm.mean_absolute_error(t, p)),
            "r2": float(skm.r2_score(t, p)) if len(t) > 1 else float("nan"),
            "pearson": _correlation(stats.pearsonr, t, p),
            "spearman": _correlation(stats.spearmanr, t, p),
        }
    out = {m: float(np.mean([v[m] for v in per.values()])) for m in ("mse", "mae", "r2", "pearson", "spearman")}
    if len(names) > 1:
        out["per_target"] = per
    return out


def load_hub_metric(name: str):
    """An ``evaluate`` metric by name. evaluate fetches each metric's script from the hub, so this needs
    network access or a warm cache; the built-in metrics above never do."""
    try:
        import evaluate

        return evaluate.load(name)
    except Exception as exc:  # evaluate raises several types for "cannot fetch"
        raise ValueError(
            f"could not load the evaluate metric {name!r}: {type(exc).__name__}: {exc}. evaluate downloads metric "
            "scripts from the Hugging Face hub, so it needs network access or a warm cache. The built-in metrics "
            "(accuracy, macro_f1, micro_f1, mse, mae, r2, pearson, spearman) always work; drop it from `metrics`."
        ) from exc


def of_task(labels, out, targets, raw: list) -> dict:
    """Metrics of head outputs ``out`` against encoded ``targets`` (and the raw values, for regression)."""
    if labels.task == "classification":
        return classification(targets.numpy(), out.argmax(-1).numpy(), labels.names)
    if labels.task == "multilabel":
        return multilabel(targets.numpy().astype(int), labels.multilabel_decisions(out), labels.names)
    truth = np.asarray([[float(v) for v in (row if isinstance(row, (list, tuple)) else [row])] for row in raw])
    return regression(truth, labels.values(out), labels.names)

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


ECE_BINS = 15  # equal-width confidence bins, as Guo et al. (2017) and scikit-learn's calibration_curve


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per equal-width bin of ``confidence`` (N,): its mean confidence, the observed frequency of ``outcome`` (N,)
    0/1, and its count; bins as scikit-learn's ``calibration_curve(strategy="uniform")`` cuts them. ``ece``: the
    count-weighted mean gap between the two."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], confidence)
    count = np.bincount(ids, minlength=bins)
    filled = count > 0
    mean_conf = np.bincount(ids, weights=confidence, minlength=bins)[filled] / count[filled]
    frequency = np.bincount(ids, weights=outcome.astype(float), minlength=bins)[filled] / count[filled]
    ece = float(np.sum(count[filled] * np.abs(frequency - mean_conf)) / max(len(confidence), 1))
    return {"confidence": mean_conf, "frequency": frequency, "count": count[filled], "ece": ece}


def expected_calibration_error(task: str, probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Classification: top-label ECE (the winning class's probability against whether it is right). Multilabel: the
    mean over labels of each label's ECE (its probability against its 0/1 truth)."""
    if task == "classification":
        hit = probabilities.argmax(1) == targets
        return reliability_bins(probabilities.max(1), hit)["ece"]
    return float(
        np.mean([reliability_bins(probabilities[:, k], targets[:, k])["ece"] for k in range(targets.shape[1])])
    )


def brier(task: str, probabilities: np.ndarray, targets: np.ndarray) -> float:
    """scikit-learn's Brier score: of the positive class when binary, summed over classes otherwise; multilabel:
    the mean of the labels' binary scores."""
    if task == "classification":
        labels = list(range(probabilities.shape[1]))
        return float(skm.brier_score_loss(targets, probabilities, labels=labels))
    return float(
        np.mean(
            [skm.brier_score_loss(targets[:, k], probabilities[:, k], labels=[0, 1]) for k in range(targets.shape[1])]
        )
    )


def calibration(labels, out, targets) -> dict:
    """ECE and Brier score of the probabilities ``predict_proba`` gives, and, for a calibrated model, of the
    uncalibrated ones (empty for regression)."""
    if labels.task == "regression":
        return {}
    y = targets.numpy() if labels.task == "classification" else targets.numpy().astype(int)
    result = {}
    variants = [("", True)] + ([("_uncalibrated", False)] if labels.calibrated else [])
    for suffix, calibrated in variants:
        p = labels.probabilities(out, calibrated=calibrated).astype(np.float64)
        if labels.task == "classification":
            p /= p.sum(1, keepdims=True)  # float32 softmax rows sum to 1 within ~1e-7, which scikit-learn warns about
        result[f"ece{suffix}"] = expected_calibration_error(labels.task, p, y)
        result[f"brier{suffix}"] = brier(labels.task, p, y)
    return result


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


def validation(labels, logits, targets) -> dict:
    """The float metrics of head outputs on encoded targets, as training loops record them per evaluation."""
    if labels.task == "classification":
        m = classification(targets.numpy(), logits.argmax(-1).numpy(), labels.names)
    elif labels.task == "multilabel":
        m = multilabel(targets.numpy().astype(int), labels.multilabel_decisions(logits), labels.names)
    else:
        truth = targets.double().numpy() * np.asarray(labels.scale) + np.asarray(labels.shift)
        m = regression(truth, labels.values(logits), labels.names)
    return {k: v for k, v in m.items() if isinstance(v, float)}

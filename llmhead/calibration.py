"""Calibrated probabilities, fitted on the validation split after training and saved with the labels
(``LabelSpace.calibration``: JSON in the manifest), so ``predict_proba`` of a loaded model applies them exactly.

- classification, ``temperature`` (Guo et al. 2017): every logit is divided by one T > 0, chosen to minimise the
  validation negative log-likelihood. softmax(z / T) keeps each row's order, so ``predict`` never changes.
- multilabel, ``platt`` (per label): p = sigmoid(a * z + b), a and b minimising that label's validation log loss
  against Platt's smoothed targets (as scikit-learn's ``CalibratedClassifierCV(method="sigmoid")``), so a label that
  validation separates perfectly still gets finite a and b. Decisions compare these calibrated probabilities with
  the per-label thresholds, which are therefore tuned again on them (``Classifier.fit``).

Both are one- or two-parameter convex fits, solved with scipy. What cannot be fitted is left out and says why in
the record (``reason``, ``unfitted``): a validation split under ``MIN_EXAMPLES`` examples, or one that the model
classifies without a single error (the likelihood then keeps rising as T falls to 0: no finite temperature).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize, special

from llmhead import metrics

MIN_EXAMPLES = 20  # fewer validation examples would set the probabilities of every later prediction from noise
BETA_BOUNDS = (1e-2, 1e2)  # 1 / T: the search interval of the temperature fit


def resolve(task: str, calibrate: str) -> str:
    """The method ``calibrate`` names for ``task``: 'auto' picks it; a method the task cannot use is refused."""
    if calibrate == "auto":
        return {"classification": "temperature", "multilabel": "platt"}.get(task, "none")
    if calibrate == "none":
        return "none"
    if task == "regression":
        raise ValueError(
            f"calibrate={calibrate!r}: task='regression' predicts values, not probabilities; remove calibrate"
        )
    meant_for = {"temperature": "classification", "platt": "multilabel"}
    if meant_for[calibrate] != task:
        other = "platt" if calibrate == "temperature" else "temperature"
        why = (
            "one temperature for every label would not correct labels that are miscalibrated in different ways"
            if task == "multilabel"
            else "a per-class sigmoid would change which class wins (temperature never does)"
        )
        raise ValueError(
            f"calibrate={calibrate!r} is for task={meant_for[calibrate]!r}; {why}: use {other!r} or 'none'"
        )
    return calibrate


def fit(method: str, logits: torch.Tensor, targets: torch.Tensor) -> dict | None:
    """The calibration of validation ``logits`` (N, C) against ``targets`` ((N,) class ids or (N, C) 0/1): its
    parameters and the validation ECE / negative log-likelihood before and after. None for method 'none'."""
    if method == "none":
        return None
    n = len(logits)
    if too_few(n):
        return too_few(n)
    z = logits.double().numpy()
    if method == "temperature":
        y = targets.numpy()
        if (z.argmax(1) == y).all():
            return {
                "method": "none",
                "reason": "every validation example is classified correctly, so no finite temperature fits it",
            }
        beta = _temperature(z, y)
        record = {"method": "temperature", "temperature": 1.0 / beta}
    else:
        y = targets.numpy().astype(np.float64)
        a, b, unfitted = _platt(z, y)
        record = {"method": "platt", "a": a, "b": b, "unfitted": unfitted}
    return {**record, "examples": n, **_before_after(method, z, y, record)}


def too_few(n: int) -> dict | None:
    """The record of a validation split too small to calibrate on (None when it is large enough)."""
    if n >= MIN_EXAMPLES:
        return None
    return {"method": "none", "reason": f"the validation split has {n} examples; calibration needs {MIN_EXAMPLES}"}


def _nll(beta: float, z: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of softmax(beta * z) at the true classes. Convex in beta."""
    scaled = beta * z
    return float(np.mean(special.logsumexp(scaled, axis=1) - scaled[np.arange(len(y)), y]))


def _temperature(z: np.ndarray, y: np.ndarray) -> float:
    """1 / T minimising the validation NLL (bounded Brent search on a convex function: one minimum)."""
    found = optimize.minimize_scalar(_nll, bounds=BETA_BOUNDS, args=(z, y), method="bounded", options={"xatol": 1e-8})
    return float(found.x)


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float], list[int]]:
    """Per label, (a, b) minimising the log loss of sigmoid(a * z + b) against Platt's targets; labels whose
    validation column is all 0 or all 1 keep a = 1, b = 0 (nothing to fit) and are listed."""
    a, b, unfitted = [], [], []
    for k in range(z.shape[1]):
        positives = y[:, k].sum()
        negatives = len(y) - positives
        if positives == 0 or negatives == 0:
            a.append(1.0), b.append(0.0), unfitted.append(k)
            continue
        hi, lo = (positives + 1) / (positives + 2), 1 / (negatives + 2)  # Platt (1999): no 0/1 targets
        t = np.where(y[:, k] > 0, hi, lo)
        x = z[:, k]

        def loss(params, x=x, t=t):
            s = params[0] * x + params[1]
            # log(1 + e^s) - t * s: the log loss of sigmoid(s) against t, and its gradient
            value = np.mean(np.logaddexp(0.0, s) - t * s)
            g = special.expit(s) - t
            return value, np.array([np.mean(g * x), np.mean(g)])

        found = optimize.minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        a.append(float(found.x[0])), b.append(float(found.x[1]))
    return a, b, unfitted


def _before_after(method: str, z: np.ndarray, y: np.ndarray, record: dict) -> dict:
    """Validation ECE and negative log-likelihood with the raw and the calibrated probabilities."""
    out = {}
    for when, params in (("before", None), ("after", record)):
        if method == "temperature":
            beta = 1.0 / params["temperature"] if params else 1.0
            p = special.softmax(beta * z, axis=1)
            nll = _nll(beta, z, y)
        else:
            s = z * np.asarray(params["a"]) + np.asarray(params["b"]) if params else z
            p = special.expit(s)
            nll = float(np.mean(np.logaddexp(0.0, s) - y * s))
        task = "classification" if method == "temperature" else "multilabel"
        out[f"val_ece_{when}"] = metrics.expected_calibration_error(task, p, y)
        out[f"val_nll_{when}"] = nll
    return out


def describe(record: dict | None) -> str:
    """The calibration's part of a fit's summary line ('' when there is none)."""
    if not record:
        return ""
    if record["method"] == "none":
        return f"; not calibrated: {record['reason']}"
    what = f"temperature {record['temperature']:.3f}" if record["method"] == "temperature" else "Platt per label"
    return f"; calibrated ({what}): validation ECE {record['val_ece_before']:.4f} -> {record['val_ece_after']:.4f}"


def check_saved(record: dict | None, task: str, num_outputs: int) -> None:
    """A saved calibration must be one this version applies: a finite T > 0, or finite a and b per label."""
    if record is None:
        return
    method = record.get("method") if isinstance(record, dict) else None
    ok = method == "none"
    if method == "temperature" and task == "classification":
        t = record.get("temperature")
        ok = isinstance(t, (int, float)) and math.isfinite(t) and t > 0
    elif method == "platt" and task == "multilabel":
        a, b = record.get("a"), record.get("b")
        ok = all(
            isinstance(v, list)
            and len(v) == num_outputs
            and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
            for v in (a, b)
        )
    if not ok:
        raise ValueError(f"saved calibration {record!r} is not one this version applies to task={task!r}")

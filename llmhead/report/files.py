"""Write a report's files: the figures for the task, metrics.json, worst.jsonl and report.html."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from llmhead.metrics import brier, expected_calibration_error
from llmhead.report import html, plots
from llmhead.report.evaluation import Evaluation
from llmhead.report.training import curves


def _clean(value):
    """JSON-safe: NaN and infinities as null, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _confidence(ev: Evaluation, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) pairs of the reliability diagram: the top class and whether it is right
    (classification), or every label's probability and truth, pooled (multilabel)."""
    if ev.task == "classification":
        return probabilities.max(1), (probabilities.argmax(1) == ev.targets).astype(int)
    return probabilities.ravel(), ev.targets.ravel()


def _confusion(ev: Evaluation, names: list[str]) -> list:
    out = []
    for normalize in (False, True):
        name = "confusion_normalized" if normalize else "confusion_counts"
        caption = (
            "Each true class's row divided by its support: the diagonal is each class's recall."
            if normalize
            else "How many examples of each true class (rows) were predicted as each class (columns)."
        )
        fig = plots.confusion(ev.targets, ev.predictions, names, normalize)
        out.append((name, name.replace("_", " "), caption, fig))
    return out


def _reliability(ev: Evaluation) -> tuple:
    before = None
    if ev.uncalibrated is not None:
        c, o = _confidence(ev, ev.uncalibrated)
        raw = ev.uncalibrated
        before = (c, o, expected_calibration_error(ev.task, raw, ev.targets), brier(ev.task, raw, ev.targets))
    c, o = _confidence(ev, ev.probabilities)
    top = ev.task == "classification"
    which = "the predicted class's probability" if top else "every label's probability, pooled"
    caption = (
        f"Observed frequency against {which}, per bin; below, how many predictions fall in each bin. ECE "
        f"({'top-label' if top else 'the mean of the labels'}) and Brier as in metrics."
    )
    fig = plots.reliability(c, o, ev.metrics["ece"], ev.metrics["brier"], before)
    return ("reliability", "reliability diagram", caption, fig)


def _curves(ev: Evaluation, names: list[str], notes: list[str]) -> list:
    """ROC and precision-recall: the second class of a binary task, else one curve per class or label."""
    if ev.task == "classification" and len(names) == 2:
        truth, scores, curve_names = (ev.targets == 1)[:, None].astype(int), ev.probabilities[:, 1:], [names[1]]
        scope = f"'{names[1]}' as the positive class"
    elif ev.task == "classification":
        truth = (ev.targets[:, None] == np.arange(len(names))).astype(int)
        scores, curve_names, scope = ev.probabilities, names, "one class against the rest, per class"
    else:
        truth, scores, curve_names, scope = ev.targets, ev.probabilities, names, "per label"
    out = []
    for kind, draw, title in (
        ("roc", plots.roc, "ROC"),
        ("precision_recall", plots.precision_recall, "precision-recall"),
    ):
        fig, missing = draw(truth, scores, curve_names)
        notes += missing if kind == "roc" else []  # the same columns lack a PR curve: said once
        out.append((kind, f"{title} curves", f"{title} from predict_proba's probabilities, {scope}.", fig))
    return out


def _regression(ev: Evaluation, names: list[str]) -> list:
    out = []
    for k, name in enumerate(names):
        t, p = ev.targets[:, k], ev.predictions[:, k]
        suffix = f"_{k}" if len(names) > 1 else ""
        caption = "Each point one example; the dashed line is a perfect prediction."
        out.append(
            (f"predicted_vs_true{suffix}", f"predicted vs true: {name}", caption, plots.predicted_vs_true(t, p, name))
        )
        caption = "Predicted minus true, against the prediction: structure here is bias."
        out.append((f"residuals{suffix}", f"residuals: {name}", caption, plots.residuals(t, p, name)))
    return out


def _training(ev: Evaluation, notes: list[str]) -> list:
    found = curves(ev.history, ev.train_log)
    notes += found.notes
    if not found:
        notes.append("no training curves: this model's training logged no per-epoch or per-step losses")
        return []
    from_log = ev.train_log is not None and ev.train_log.is_file()
    source = "run_dir/train_log.jsonl" if from_log else "the saved training history"
    return [("training", "training curves", f"From {source}, per {found.x_label}.", plots.training(found))]


def figures(ev: Evaluation) -> tuple[list[tuple[str, str, str, object]], list[str]]:
    """(name, title, caption, Figure) in the order shown, and notes on what could not be drawn."""
    names, notes = [str(n) for n in ev.names], []
    if ev.task == "regression":
        out = _regression(ev, names)
    else:
        out = _confusion(ev, names) if ev.task == "classification" else []
        caption = "Precision, recall and F1 per class; n is the support."
        out.append(("per_class", "per-class scores", caption, plots.per_class(ev.metrics.get("per_class", {}))))
        out.append(_reliability(ev))
        out += _curves(ev, names, notes)
    return out + _training(ev, notes), notes


def write_report(folder, ev: Evaluation) -> Path:
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    drawn, notes = figures(ev)
    blocks = []
    for name, title, caption, fig in drawn:
        image = plots.png(fig)
        (folder / f"{name}.png").write_bytes(image)
        blocks.append(html.figure(name, title, caption, image))
    worst = ev.worst()
    (folder / "metrics.json").write_text(json.dumps(_clean(ev.metrics), indent=2) + "\n")
    (folder / "worst.jsonl").write_text("".join(json.dumps(_clean(r), ensure_ascii=False) + "\n" for r in worst))
    scalars = {k: v for k, v in ev.metrics.items() if isinstance(v, (int, float))}
    sections = [("Figures", f'<div class="figures">{"".join(blocks)}</div>')]
    if ev.task != "regression":
        sections.insert(0, ("Calibration", html.calibration_table(ev.calibration)))
    per = ev.metrics.get("per_class") or ev.metrics.get("per_target")
    if per:
        keys = list(next(iter(per.values())))
        rows = [[name, *(v[k] for k in keys)] for name, v in per.items()]
        sections.insert(
            0,
            (
                "Per class" if "per_class" in ev.metrics else "Per target",
                html.table(["", *keys], rows, numeric=set(range(1, len(keys) + 1))),
            ),
        )
    if ev.task == "multilabel" and ev.thresholds:
        sections.append(
            (
                "Decision thresholds",
                html.table(["label", "threshold"], [[str(n), t] for n, t in zip(ev.names, ev.thresholds)], numeric={1}),
            )
        )
    sections.append((f"The {len(worst)} worst-predicted examples", html.worst_table(ev.task, worst)))
    page = html.page(ev.about, scalars, sections, notes)
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path

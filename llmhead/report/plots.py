"""The report's figures, each a ``matplotlib.figure.Figure`` drawn from arrays (curves and matrices computed with
scikit-learn). pyplot is never imported: a ``Figure`` on its own Agg canvas leaves the caller's backend, open
figures and rc settings as they were."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm

from llmhead.metrics import ECE_BINS, reliability_bins

MAX_ANNOTATED = 20  # classes up to which the confusion matrix prints its numbers
MAX_LEGEND = 12  # curves up to which a legend names each


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # its own canvas: nothing global chosen or changed
    return fig


def png(fig: Figure) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _short(names: list, width: int = 24) -> list[str]:
    return [s if len(s) <= width else s[: width - 1] + "…" for s in map(str, names)]


def confusion(targets: np.ndarray, predictions: np.ndarray, names: list, normalize: bool) -> Figure:
    """Counts, or each true class's row divided by its support (recall on the diagonal)."""
    k = len(names)
    cm = skm.confusion_matrix(targets, predictions, labels=list(range(k)), normalize="true" if normalize else None)
    side = min(4.0 + 0.35 * k, 16.0)
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.arange(k)
    ax.set_xticks(ticks, _short(names), rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(ticks, _short(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix, row-normalised" if normalize else "confusion matrix, counts")
    if k <= MAX_ANNOTATED:
        high = (1 if normalize else cm.max()) / 2
        for i in range(k):
            for j in range(k):
                text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", color="white" if cm[i, j] > high else "black")
    return fig


def per_class(per: dict) -> Figure:
    """Precision, recall and F1 per class, with each class's support."""
    names = list(per)
    fig = new_figure(6.8, max(2.5, 0.55 * len(names) + 1.4))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    height = 0.27
    for shift, (key, colour) in zip(
        (-height, 0, height), (("precision", "#4c72b0"), ("recall", "#dd8452"), ("f1", "#55a868"))
    ):
        values = [per[n][key] for n in names]
        ax.barh(y + shift, values, height, label=key, color=colour)
    ax.set_yticks(y, [f"{s}  (n={per[n]['support']})" for s, n in zip(_short(names), names)])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title("per-class precision, recall and F1 (n = support)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=3, fontsize="small", frameon=False)
    return fig


def reliability(confidence: np.ndarray, outcome: np.ndarray, ece: float, brier: float, before=None) -> Figure:
    """Observed frequency against mean confidence per bin (the diagonal is perfect calibration), and how many
    predictions fall in each bin. ``before``: (confidence, outcome, ece, brier) without calibration."""
    fig = new_figure(6.4, 6.0)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    if before is not None:
        b = reliability_bins(before[0], before[1])
        top.plot(
            b["confidence"],
            b["frequency"],
            "s--",
            color="#dd8452",
            alpha=0.8,
            label=f"uncalibrated (ECE {before[2]:.3f}, Brier {before[3]:.3f})",
        )
    a = reliability_bins(confidence, outcome)
    label = f"{'calibrated' if before is not None else 'model'} (ECE {ece:.3f}, Brier {brier:.3f})"
    top.plot(a["confidence"], a["frequency"], "o-", color="#4c72b0", label=label)
    top.set_ylabel("observed frequency")
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="upper left", fontsize="small")
    top.set_title(f"reliability diagram ({ECE_BINS} equal-width bins)")
    bottom.hist(confidence, bins=np.linspace(0, 1, ECE_BINS + 1), color="#4c72b0")
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("predictions")
    return fig


def _curves(truth: np.ndarray, scores: np.ndarray, names: list[str], kind: str) -> tuple[Figure, list[str]]:
    """ROC (kind 'roc') or precision-recall ('pr') curves, one per column of ``truth`` / ``scores`` (N, K);
    columns without both outcomes have no curve and are named in the returned notes."""
    fig = new_figure(6.4, 5.2)
    ax = fig.add_subplot()
    notes = []
    for k, name in enumerate(names):
        y, s = truth[:, k], scores[:, k]
        if y.min() == y.max():
            notes.append(f"{name}: no {'positive' if y.max() == 0 else 'negative'} example, so no {kind.upper()} curve")
            continue
        if kind == "roc":
            fpr, tpr, _ = skm.roc_curve(y, s)
            ax.plot(fpr, tpr, label=f"{name} (AUC {skm.roc_auc_score(y, s):.3f})")
        else:
            precision, recall, _ = skm.precision_recall_curve(y, s)
            ax.plot(
                recall, precision, drawstyle="steps-post", label=f"{name} (AP {skm.average_precision_score(y, s):.3f})"
            )
    if kind == "roc":
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC curve" + ("s" if len(names) > 1 else f": {names[0]}"))
    else:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("precision-recall curve" + ("s" if len(names) > 1 else f": {names[0]}"))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if ax.lines and len(names) <= MAX_LEGEND:
        ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize="small")
    return fig, notes


def roc(truth: np.ndarray, scores: np.ndarray, names: list[str]) -> tuple[Figure, list[str]]:
    return _curves(truth, scores, names, "roc")


def precision_recall(truth: np.ndarray, scores: np.ndarray, names: list[str]) -> tuple[Figure, list[str]]:
    return _curves(truth, scores, names, "pr")


def predicted_vs_true(truth: np.ndarray, predicted: np.ndarray, name: str) -> Figure:
    fig = new_figure(5.6, 5.2)
    ax = fig.add_subplot()
    ax.scatter(truth, predicted, s=10, alpha=0.5, color="#4c72b0")
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1, label="predicted = true")
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    ax.set_title(f"predicted vs true: {name}")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def residuals(truth: np.ndarray, predicted: np.ndarray, name: str) -> Figure:
    fig = new_figure(5.6, 4.4)
    ax = fig.add_subplot()
    ax.scatter(predicted, predicted - truth, s=10, alpha=0.5, color="#dd8452")
    ax.axhline(0, linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel(f"predicted {name}")
    ax.set_ylabel("residual (predicted - true)")
    ax.set_title(f"residuals: {name}")
    return fig


def training(curves) -> Figure:
    """Loss (training and validation), the validation metric and the learning rate, as far as they were logged."""
    s = curves.series
    panels = [
        p
        for p in ("loss", "metric", "lr")
        if (p == "loss" and ({"train_loss", "val_loss"} & set(s)))
        or (p == "metric" and curves.metric)
        or (p == "lr" and "lr" in s)
    ]
    fig = new_figure(6.4, 2.6 * len(panels) + 0.6)
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True))
    for ax, panel in zip(axes, panels):
        if panel == "loss":
            for key, style in (("train_loss", "-"), ("val_loss", "o-")):
                if key in s:
                    ax.plot(*s[key], style, label=key.replace("_", " "), markersize=3)
            ax.set_ylabel("loss")
            ax.legend(fontsize="small")
        elif panel == "metric":
            ax.plot(*s[curves.metric], "o-", color="#55a868", markersize=3)
            ax.set_ylabel(f"validation {curves.metric.removeprefix('val_')}")
        else:
            ax.plot(*s["lr"], color="#8172b3")
            ax.set_ylabel("learning rate")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes[-1].set_xlabel(curves.x_label)
    axes[0].set_title("training")
    return fig

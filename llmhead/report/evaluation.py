"""What a report shows: an evaluation's truth, predictions and probabilities as plain arrays, taken from a
classifier's public attributes (``Evaluation.of``), and the worst-predicted examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WORST = 20  # examples listed in the report


@dataclass
class Evaluation:
    task: str  # classification | multilabel | regression
    names: list  # classes, labels or targets, in output order
    texts: list[str]  # the evaluated texts (before the template)
    targets: np.ndarray  # (N,) class ids | (N, C) 0/1 | (N, K) values in the data's units
    predictions: np.ndarray  # the same shapes: what predict() decides
    metrics: dict  # what evaluate() returned
    probabilities: np.ndarray | None = None  # (N, C), what predict_proba gives (calibrated when fitted so)
    uncalibrated: np.ndarray | None = None  # (N, C) before calibration; None when the model is not calibrated
    thresholds: list[float] = field(default_factory=list)  # multilabel decision thresholds
    calibration: dict | None = None  # the fitted calibration's record (clf.calibration)
    history: list[dict] = field(default_factory=list)  # clf.history
    train_log: Path | None = None  # run_dir/train_log.jsonl, when the model was fine-tuned with a run_dir
    about: dict = field(default_factory=dict)  # model, mode, ... shown at the top

    @classmethod
    def of(cls, clf, texts: list[str], raw: list, out, targets, metrics: dict) -> Evaluation:
        """From a classifier, the evaluated texts and their labels as written, its head outputs ``out`` and the
        encoded ``targets``."""
        labels = clf.labels
        about = {"model": clf.source.name, "mode": clf.config.mode, "task": labels.task, "examples": len(texts)}
        log = Path(clf.run_dir) / "train_log.jsonl" if clf.run_dir else None
        common = dict(history=list(clf.history or []), train_log=log, about=about, calibration=clf.calibration)
        if labels.task == "regression":
            truth = np.asarray([[float(v) for v in (r if isinstance(r, (list, tuple)) else [r])] for r in raw])
            return cls("regression", list(labels.names), list(texts), truth, labels.values(out), metrics, **common)
        proba = labels.probabilities(out)
        raw_proba = labels.probabilities(out, calibrated=False) if labels.calibrated else None
        if labels.task == "classification":
            y, decided = targets.numpy(), out.argmax(-1).numpy()
        else:
            y, decided = targets.numpy().astype(int), labels.multilabel_decisions(out)
        return cls(
            labels.task,
            list(labels.names),
            list(texts),
            y,
            decided,
            metrics,
            proba,
            raw_proba,
            list(labels.thresholds),
            **common,
        )

    def worst(self, k: int = WORST) -> list[dict]:
        """The ``k`` examples predicted worst: the lowest probability of the true class (classification), the
        highest log loss over the labels (multilabel), the largest absolute error (regression)."""
        names = [str(n) for n in self.names]
        rows = []
        if self.task == "classification":
            n = len(self.targets)
            p_true = self.probabilities[np.arange(n), self.targets]
            for i in np.argsort(p_true, kind="stable")[:k]:
                rows.append(
                    {
                        "row": int(i) + 1,
                        "text": self.texts[i],
                        "true": names[self.targets[i]],
                        "predicted": names[self.predictions[i]],
                        "p_true": float(p_true[i]),
                        "p_predicted": float(self.probabilities[i, self.predictions[i]]),
                    }
                )
        elif self.task == "multilabel":
            p = np.clip(self.probabilities.astype(np.float64), 1e-12, 1 - 1e-12)
            loss = -(self.targets * np.log(p) + (1 - self.targets) * np.log(1 - p)).sum(1)
            for i in np.argsort(-loss, kind="stable")[:k]:
                rows.append(
                    {
                        "row": int(i) + 1,
                        "text": self.texts[i],
                        "true": [names[j] for j in np.flatnonzero(self.targets[i])],
                        "predicted": [names[j] for j in np.flatnonzero(self.predictions[i])],
                        "log_loss": float(loss[i]),
                    }
                )
        else:
            error = np.abs(self.predictions - self.targets).sum(1)
            for i in np.argsort(-error, kind="stable")[:k]:
                one = len(names) == 1
                rows.append(
                    {
                        "row": int(i) + 1,
                        "text": self.texts[i],
                        "true": float(self.targets[i, 0]) if one else self.targets[i].tolist(),
                        "predicted": float(self.predictions[i, 0]) if one else self.predictions[i].tolist(),
                        "abs_error": float(error[i]),
                    }
                )
        return rows

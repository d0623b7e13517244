"""The map between what users write as labels and what the head outputs, saved with the model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from llmhead.data import MAX_REPORTED, DataError, fold_label, suspicious_labels


@dataclass
class LabelSpace:
    task: str
    names: list  # class names (classification, multilabel) or target names (regression)
    shift: list[float] = field(default_factory=list)  # regression: targets are standardized for training
    scale: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)  # multilabel: per-label decision thresholds
    # fitted on validation after training (calibration.py): {"method": "temperature", "temperature": T, ...} or
    # {"method": "platt", "a": [...], "b": [...], ...}; None or method "none": probabilities as the head gives them
    calibration: dict | None = None

    @property
    def num_outputs(self) -> int:
        return len(self.names)

    @classmethod
    def learn(cls, task: str, raw: list, fixed: list | None, label, origin: str = "training data") -> LabelSpace:
        """Build from training labels; ``fixed`` (the user's ``labels``) sets the order when given.

        Without ``fixed``, string labels that differ only by case or surrounding spaces, or that read as a
        missing value ('NA', 'null', ...), are refused rather than made classes of their own; listing every
        class in ``labels=[...]`` keeps them as written. ``origin`` (the file or source) goes in messages."""
        if task == "regression":
            targets = np.asarray(raw, dtype=np.float64)  # (N, K)
            names = [label] if isinstance(label, str) else list(label)
            std = targets.std(0)
            return cls(task, names, targets.mean(0).tolist(), np.where(std > 0, std, 1.0).tolist())
        seen = raw if task == "classification" else [name for row in raw for name in row]
        where = f"{origin}, column {label!r}" if isinstance(label, str) else origin
        if task == "multilabel" and not isinstance(label, str) and fixed is None:
            fixed = list(label)  # one 0/1 column per label: the columns are the names, in order
        elif fixed is None:
            problems = suspicious_labels([[v] for v in raw] if task == "classification" else raw)
            if problems:
                shown = "\n  ".join(problems[:MAX_REPORTED])
                more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
                example = sorted({v for v in seen if isinstance(v, str)})
                raise DataError(
                    f"{where}: {len(problems)} problem(s) with the labels (rows numbered from 1):\n  {shown}{more}\n"
                    "Correct the data, or pass labels=[...] listing every class as written to keep them "
                    f"(here labels={example!r})"
                )
        if fixed is not None:
            unknown = sorted({repr(v) for v in seen} - {repr(v) for v in fixed})
            if unknown:
                folded = {fold_label(v): v for v in fixed if isinstance(v, str)}
                near = [
                    f"{v!r} differs from {folded[fold_label(v)]!r} only by case or surrounding spaces"
                    for v in dict.fromkeys(seen)
                    if isinstance(v, str) and repr(v) in unknown and fold_label(v) in folded
                ]
                hint = f" ({'; '.join(near[:MAX_REPORTED])})" if near else ""
                raise DataError(f"{where}: training labels {', '.join(unknown)} are not in labels={fixed!r}{hint}")
            names = list(fixed)
        else:
            names = sorted(set(seen), key=lambda v: (str(type(v)), v))
        if task == "classification" and len(names) < 2:
            raise DataError(
                f"{where}: task='classification' needs at least 2 classes; the training data has only {names!r}"
            )
        return cls(task, names)

    def encode(self, raw: list, origin: str = "data") -> torch.Tensor:
        """Raw labels -> targets: (N,) class ids, (N, C) 0/1 floats, or (N, K) standardized floats."""
        if self.task == "regression":
            targets = torch.tensor(raw, dtype=torch.float64)
            return ((targets - torch.tensor(self.shift)) / torch.tensor(self.scale)).float()
        index = {repr(name): i for i, name in enumerate(self.names)}
        rows = [[row] for row in raw] if self.task == "classification" else raw
        unseen = [(i, v) for i, row in enumerate(rows) for v in row if repr(v) not in index]
        if unseen:
            listed = "; ".join(f"row {i + 1}: {v!r}" for i, v in unseen[:10])
            more = f" (and {len(unseen) - 10} more)" if len(unseen) > 10 else ""
            raise DataError(
                f"{origin}: {len(unseen)} label(s) that training never saw: {listed}{more}. "
                f"Known labels: {self.names!r}"
            )
        if self.task == "classification":
            return torch.tensor([index[repr(r[0])] for r in rows], dtype=torch.long)
        targets = torch.zeros(len(rows), len(self.names))
        for i, row in enumerate(rows):
            for v in row:
                targets[i, index[repr(v)]] = 1.0
        return targets

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None, focal_gamma: float = 0.0
    ) -> torch.Tensor:
        """Cross-entropy | BCE-with-logits | MSE. ``weights``: per-class weights (classification) or
        positive-class weights (multilabel). ``focal_gamma`` > 0 down-weights easy examples (focal loss)."""
        F = torch.nn.functional
        logits = logits.float()
        if self.task == "classification":
            ce = F.cross_entropy(logits, targets, weight=weights, reduction="none")  # (B,)
            if focal_gamma:
                p_true = logits.softmax(-1).gather(1, targets[:, None])[:, 0]
                ce = (1 - p_true) ** focal_gamma * ce
            if weights is None:
                return ce.sum() / len(ce)
            # a batch of zero-weight classes only has nothing to learn: a zero loss, not 0 / 0
            return ce.sum() / weights[targets].sum().clamp(min=torch.finfo(torch.float32).tiny)
        if self.task == "multilabel":
            bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights, reduction="none")
            if focal_gamma:
                p = logits.sigmoid()
                p_true = p * targets + (1 - p) * (1 - targets)
                bce = (1 - p_true) ** focal_gamma * bce
            return bce.mean()
        return F.mse_loss(logits, targets)

    def loss_weight(self, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """What ``loss`` divides its sum by for these rows, up to a factor common to every row: the rows' class
        weights (weighted classification), else their count. A batch's loss is then the sum over any split of its
        rows of each part's loss x its weight / the batch's weight (finetuning/loop.py's passes)."""
        if self.task == "classification" and weights is not None:
            return weights[targets].sum()
        return torch.tensor(float(len(targets)))

    def resolve_class_weights(self, setting, targets: torch.Tensor) -> torch.Tensor | None:
        """TrainConfig.class_weights resolved: "auto" (inverse frequency in ``targets``), a list, or None (float32)."""
        if setting is None:
            return None
        return (self.class_weights(targets) if setting == "auto" else torch.tensor(setting)).float()

    def class_weights(self, targets: torch.Tensor) -> torch.Tensor:
        """Inverse label frequency: n / (C * count) per class, or negatives/positives per label."""
        if self.task == "classification":
            counts = torch.bincount(targets, minlength=self.num_outputs).float().clamp(min=1)
            return len(targets) / (self.num_outputs * counts)
        if self.task == "multilabel":
            positives = targets.sum(0).clamp(min=1)
            return ((len(targets) - positives) / positives).clamp(max=100.0)
        raise ValueError("class_weights is for classification and multilabel tasks, not regression")

    def tune_thresholds(self, probabilities: np.ndarray, targets: np.ndarray) -> None:
        """Per label, the threshold in 0.05..0.95 with the best F1 on (validation) data; 0.5 without positives."""
        from sklearn.metrics import f1_score

        grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
        chosen = []
        for k in range(probabilities.shape[1]):
            if targets[:, k].sum() == 0:
                chosen.append(0.5)
                continue
            scores = [f1_score(targets[:, k], probabilities[:, k] >= t, zero_division=0) for t in grid]
            chosen.append(float(grid[int(np.argmax(scores))]))
        self.thresholds = chosen

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration) and self.calibration["method"] != "none"

    def probabilities(self, logits: torch.Tensor, calibrated: bool = True) -> np.ndarray:
        """(N, C) float32: softmax(logits / T) (classification) or sigmoid(a * logits + b) per label (multilabel), with
        the fitted calibration unless ``calibrated=False`` (or none was fitted: T = 1, a = 1, b = 0)."""
        z = logits.float()
        cal = self.calibration if calibrated and self.calibrated else None
        if self.task == "classification":
            return (z / cal["temperature"] if cal else z).softmax(-1).numpy()  # one T > 0: the argmax is unchanged
        if self.task == "multilabel":
            if cal:
                z = z * torch.tensor(cal["a"], dtype=torch.float32) + torch.tensor(cal["b"], dtype=torch.float32)
            return z.sigmoid().numpy()
        raise ValueError("predict_proba is for classification and multilabel; regression has no probabilities")

    def values(self, logits: torch.Tensor) -> np.ndarray:
        """Regression outputs in the units of the training targets. (N, K)"""
        return logits.double().numpy() * np.asarray(self.scale) + np.asarray(self.shift)

    def multilabel_decisions(self, logits: torch.Tensor) -> np.ndarray:
        """(N, C) 0/1 with the per-label thresholds (0.5 until tuned) on the calibrated probabilities (the
        thresholds are tuned again after Platt scaling, so decisions and ``predict_proba`` agree)."""
        thresholds = np.asarray(self.thresholds or [0.5] * self.num_outputs)
        return (self.probabilities(logits) >= thresholds).astype(int)

    def decode(self, logits: torch.Tensor) -> list:
        """Predictions as users wrote labels: names, lists of names, or floats (lists for K > 1 targets)."""
        if self.task == "classification":
            return [self.names[i] for i in logits.argmax(-1).tolist()]
        if self.task == "multilabel":
            return [[n for n, d in zip(self.names, row) if d] for row in self.multilabel_decisions(logits)]
        values = self.values(logits)
        return values[:, 0].tolist() if values.shape[1] == 1 else values.tolist()

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "names": self.names,
            "shift": self.shift,
            "scale": self.scale,
            "thresholds": self.thresholds,
            "calibration": self.calibration,
        }

    @classmethod
    def from_json(cls, data: dict) -> LabelSpace:
        space = cls(
            data["task"],
            list(data["names"]),
            list(data["shift"]),
            list(data["scale"]),
            list(data.get("thresholds", [])),
            data.get("calibration"),  # saves from before calibration have none
        )
        if any(not math.isfinite(v) for v in space.shift + space.scale):
            raise ValueError("saved label space has non-finite target statistics")
        from llmhead.calibration import check_saved

        check_saved(space.calibration, space.task, space.num_outputs)
        return space

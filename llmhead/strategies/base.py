"""What every strategy (mode) provides. The classifier holds one and asks it how to load the backbone, which head to
build, how to fit, how to predict, and what to save; it never branches on the mode itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from llmhead.model import loading
from llmhead.strategies.headtrain import head_logits


@dataclass
class Split:
    """Model inputs (the template applied) and their encoded targets."""

    texts: list[str]
    targets: torch.Tensor | None


class Strategy:
    causal_lm = False  # loads the whole causal LM (its LM head scores label words)
    validates = True  # carves a validation split from the training data when no eval set is given
    verbalized = False  # starts from (or scores) the label words' LM-head rows
    calibrates = True  # its probabilities are calibrated on the validation split after fit (calibration.py)
    reads_backbone = True  # False: no weights are ever loaded, saved, referenced or fingerprinted (tfidf)

    def __init__(self, config):
        self.config = config
        self.backbone_trained = False  # the backbone carries trained weights (then its features are not cached)

    # ---- the backbone ------------------------------------------------------------------------------------------
    def weights_dtype(self) -> str:
        return self.config.dtype

    def shares_weights(self) -> bool:
        """Whether the loaded frozen weights may come from (and be shared through) the feature extractor."""
        return not self.backbone_trained

    def load_backbone(self, source, keep: int) -> torch.nn.Module:
        return loading.base_model(source, self.config, self.weights_dtype(), keep)

    def forget_training(self) -> None:
        """A second fit starts again from the pretrained weights."""

    # ---- the head ----------------------------------------------------------------------------------------------
    def new_head(self, width: int, n_layers: int, labels) -> torch.nn.Module:
        raise NotImplementedError

    def fit(self, clf, train: Split, val: Split, cfg, extra_metrics: dict) -> list[dict]:
        """Train ``clf.model`` in place on ``train`` (``val``: early stopping, thresholds); return the history."""
        raise NotImplementedError

    @torch.no_grad()
    def logits(self, clf, texts: list[str], batch_size: int, cache: bool) -> torch.Tensor:
        return head_logits(
            clf.model.head, clf.embed(texts, batch_size=batch_size, cache=cache, templated=True), batch_size
        )

    def trainable_parameters(self, model) -> int:
        """Parameters the fit trained (LoRA: the adapters; probes: the linear model's coefficients)."""
        return sum(p.numel() for p in model.head.parameters())

    # ---- what a save holds -------------------------------------------------------------------------------------
    def saved_as(self) -> str:
        """How the backbone is saved: a reference checked by fingerprint, adapters, or its weights."""
        return "reference"

    def state(self) -> dict | None:
        """What the strategy learnt besides tensors (JSON), for the manifest."""
        return None

    def restore(self, state: dict | None, folder: Path) -> None:
        """Put ``state`` back before the weights load (a saved folder of weights, demonstrations...)."""

    def write_backbone(self, model, folder: Path) -> dict | None:
        """Write what the backbone needs beside the head into a save's ``folder``; return manifest details."""
        return None

    def load_backbone_parts(self, clf, folder: Path, details: dict) -> None:
        """Put saved adapters back onto ``clf.model.backbone``."""

    def merge(self, model) -> None:
        """Fold adapters into the backbone's weights; nothing to do for strategies without adapters."""


def tune_thresholds(clf, features, targets, cfg) -> None:
    """Multilabel: per-label thresholds on validation F1, from the frozen backbone's features."""
    if clf.config.task == "multilabel" and cfg.tune_thresholds and features is not None:
        out = head_logits(clf.model.head, features, cfg.batch_size)
        clf.labels.tune_thresholds(clf.labels.probabilities(out), targets.numpy())


def validation_record(clf, features, targets, batch_size: int) -> dict:
    if features is None:
        return {}
    out = head_logits(clf.model.head, features, batch_size)
    record = {"val_loss": clf.labels.loss(out, targets).item()}
    if clf.config.task == "classification":
        record["val_accuracy"] = float((out.argmax(-1) == targets).float().mean())
    return record

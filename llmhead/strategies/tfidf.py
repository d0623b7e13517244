"""mode='tfidf': the classic baseline, no LLM. Word and character n-gram TF-IDF (features/tfidf.py) and a
scikit-learn linear model (logistic regression, a calibrated linear SVM, or ridge for regression; the ``probe``
option), its regularisation chosen by cross-validation as the probe's is (strategies/probe.py).

It reads the texts as written (no template) and never loads model weights, not even to save or load: the
vocabularies go to ``tfidf.json`` and the idf weights and coefficients to ``head.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from llmhead.features.tfidf import ANALYZERS, TfidfFeaturizer, untemplated
from llmhead.io.layout import TFIDF
from llmhead.strategies.base import Split, Strategy
from llmhead.strategies.probe import ALPHA_GRID, ProbeHead, fit_linear

# TF-IDF rows are L2-normalised per block, so the useful C sit higher than on standardized features (probe.C_GRID)
C_GRID = np.logspace(-1, 3, 9)


class TfidfHead(ProbeHead):
    """Texts -> TF-IDF rows (the vocabularies, and the idf weights held as buffers) -> linear -> task output."""

    def __init__(self, vocabularies: dict[str, list[str]], num_outputs, kind, task, num_linear=None, extra=0):
        width = sum(len(vocabularies[k]) for k in ANALYZERS)
        super().__init__(extra + width, num_outputs, kind, task, num_linear, standardize=False)
        self.vocabularies = vocabularies
        for name in ANALYZERS:
            self.register_buffer(f"idf_{name}", torch.zeros(len(vocabularies[name]), dtype=torch.float64))
        self._featurizer = None

    def set_featurizer(self, featurizer: TfidfFeaturizer) -> None:
        for name, idf in featurizer.idf_tensors().items():
            getattr(self, f"idf_{name}").copy_(idf)
        self._featurizer = None  # rebuilt from the buffers, as after a load: the same bits either way

    def featurizer(self) -> TfidfFeaturizer:
        if self._featurizer is None:
            idf = {k: getattr(self, f"idf_{k}").clone() for k in ANALYZERS}
            self._featurizer = TfidfFeaturizer.from_state({"vocabularies": self.vocabularies}, idf)
        return self._featurizer

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._featurizer = None

    def sparse_decision(self, texts: list[str], skip: int = 0) -> torch.Tensor:
        """TF-IDF rows @ the coefficients of columns ``skip`` onwards (the hybrid's LLM block comes first)."""
        rows = self.featurizer().transform(texts)
        return torch.from_numpy(np.asarray(rows @ self.coef[:, skip:].numpy().T))

    def decision(self, texts: list[str]) -> torch.Tensor:
        return self.sparse_decision(texts) + self.intercept


def linear_kind(config) -> tuple[str, float | None]:
    """The linear model and its penalty (None: chosen by cross-validation)."""
    return config.probe, config.probe_alpha if config.probe == "ridge" else config.probe_c


def fit_info(info: dict, width: int) -> dict:
    return {"C": info["C"], "cv_score": info["cv_score"], "tfidf_features": width}


class VocabularyFile:
    """The vocabularies a TF-IDF head needs before its tensors load: saved beside the head as JSON."""

    def __init__(self):
        self.vocabularies: dict[str, list[str]] | None = None

    def write(self, model, folder: Path) -> dict:
        (folder / TFIDF).write_text(json.dumps(model.head.featurizer().to_json()))
        return {"tfidf": TFIDF}

    def read(self, folder: Path) -> None:
        from llmhead.io.save import LoadError

        path = folder / TFIDF
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            vocabularies = state["vocabularies"]
            if set(vocabularies) != set(ANALYZERS) or not all(
                isinstance(v, list) and all(isinstance(t, str) for t in v) for v in vocabularies.values()
            ):
                raise ValueError(f"expected {{{', '.join(ANALYZERS)}: [term, ...]}}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LoadError(f"{path}: not the TF-IDF vocabularies this save needs ({exc})") from exc
        self.vocabularies = vocabularies

    def need(self) -> dict[str, list[str]]:
        if self.vocabularies is None:
            raise RuntimeError("the TF-IDF vocabularies are learnt by fit() or read by llmhead.load()")
        return self.vocabularies


class Tfidf(Strategy):
    """mode='tfidf': TF-IDF + a linear model. The baseline every LLM route is compared with."""

    validates = False  # every example trains; the penalty is chosen by cross-validation instead
    reads_backbone = False
    calibrates = False  # as the probe's: logreg's probabilities are its own fit, svm's sigmoid-calibrated by CV

    def __init__(self, config):
        super().__init__(config)
        self.vocabulary = VocabularyFile()

    def load_backbone(self, source, keep: int):
        raise RuntimeError("mode='tfidf' loads no model weights")  # Classifier.model never asks (reads_backbone)

    def new_head(self, width: int, n_layers: int, labels) -> torch.nn.Module:
        c = self.config
        binary = c.task == "classification" and labels.num_outputs == 2
        return TfidfHead(self.vocabulary.need(), labels.num_outputs, c.probe, c.task, 1 if binary else None)

    def fit(self, clf, train: Split, val: Split, cfg, extra_metrics: dict) -> list[dict]:
        c = self.config
        texts = untemplated(train.texts, c.template)
        featurizer = TfidfFeaturizer.fit(texts)
        kind, strength = linear_kind(c)
        grid = ALPHA_GRID if kind == "ridge" else C_GRID
        fitted, info = fit_linear(
            featurizer.transform(texts),
            train.targets.numpy(),
            kind,
            c.task,
            strength,
            c.seed,
            5 if kind != "ridge" else None,
            grid,
        )
        self.vocabulary.vocabularies = featurizer.vocabularies
        head = clf.new_head()
        head.copy_linear(fitted)
        head.set_featurizer(featurizer)
        clf.model.head = head.eval()
        record = {"probe": kind, **fit_info(info, featurizer.width)}
        record.update(tune_on_eval(clf, val, lambda: head(untemplated(val.texts, c.template)), cfg))
        return [record]

    @torch.no_grad()
    def logits(self, clf, texts: list[str], batch_size: int, cache: bool) -> torch.Tensor:
        return clf.model.head(untemplated(texts, self.config.template))

    def trainable_parameters(self, model) -> int:
        return model.head.coef.numel() + model.head.intercept.numel()

    def saved_as(self) -> str:
        return "none"  # no backbone: nothing to reference, fingerprint or write

    def write_backbone(self, model, folder: Path) -> dict | None:
        return self.vocabulary.write(model, folder)

    def restore(self, state: dict | None, folder: Path) -> None:
        self.vocabulary.read(folder)


def tune_on_eval(clf, val: Split, outputs, cfg) -> dict:
    """Multilabel: per-label thresholds on the eval data's F1 (when eval data was given); its loss and accuracy."""
    if not val.texts:
        return {}
    out = outputs()
    if clf.config.task == "multilabel" and cfg.tune_thresholds:
        clf.labels.tune_thresholds(clf.labels.probabilities(out), val.targets.numpy())
    record = {"val_loss": clf.labels.loss(out, val.targets).item()}
    if clf.config.task == "classification":
        record["val_accuracy"] = float((out.argmax(-1) == val.targets).float().mean())
    return record

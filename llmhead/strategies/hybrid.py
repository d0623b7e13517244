"""mode='hybrid': the frozen LLM's pooled features and TF-IDF n-grams side by side in one linear model.

Meaning favours the LLM's features, style and rare words favour n-grams; one model over both blocks keeps
what each knows. The blocks are scaled so that neither drowns the other: the pooled features are standardized
and divided by sqrt(their width), so a row's squared norm is about 1 in each block (TF-IDF rows are L2-normalised
per analyzer), then the LLM block is weighted by ``w``; ``w`` and the penalty are chosen together by
cross-validation (``w`` only when the penalty is left to it), so the model can lean on either block or both.
"""

from __future__ import annotations

import math

import torch

from llmhead.features.tfidf import TfidfFeaturizer, untemplated
from llmhead.strategies.base import Split, Strategy
from llmhead.strategies.probe import ALPHA_GRID, fit_linear
from llmhead.strategies.tfidf import C_GRID, TfidfHead, VocabularyFile, fit_info, linear_kind, tune_on_eval

LLM_WEIGHTS = (0.5, 1.0, 2.0)  # the LLM block's weight against the TF-IDF block's, tried by cross-validation


class HybridHead(TfidfHead):
    """((N, L, H) pooled features, texts) -> [standardized features * scale, TF-IDF rows] -> linear -> output."""

    def __init__(self, in_features: int, vocabularies, num_outputs, kind, task, num_linear=None):
        super().__init__(vocabularies, num_outputs, kind, task, num_linear, extra=in_features)
        self.register_buffer("mean", torch.zeros(in_features, dtype=torch.float64))
        self.register_buffer("std", torch.ones(in_features, dtype=torch.float64))
        self.register_buffer("llm_scale", torch.ones(1, dtype=torch.float64))  # w / sqrt(in_features)

    def dense_block(self, pooled: torch.Tensor) -> torch.Tensor:
        return (pooled.flatten(1).double() - self.mean) / self.std * self.llm_scale

    def decision(self, inputs: tuple[torch.Tensor, list[str]]) -> torch.Tensor:
        pooled, texts = inputs
        d = self.mean.numel()
        return self.dense_block(pooled) @ self.coef[:, :d].T + self.sparse_decision(texts, skip=d) + self.intercept


class Hybrid(Strategy):
    """mode='hybrid': frozen pooled features + TF-IDF, one linear model chosen by cross-validation."""

    validates = False  # every example trains; the penalty and the blocks' weight are chosen by cross-validation
    calibrates = False  # as the probe's: logreg's probabilities are its own fit, svm's sigmoid-calibrated by CV

    def __init__(self, config):
        super().__init__(config)
        self.vocabulary = VocabularyFile()

    def new_head(self, width: int, n_layers: int, labels) -> torch.nn.Module:
        c = self.config
        binary = c.task == "classification" and labels.num_outputs == 2
        vocabularies = self.vocabulary.need()
        return HybridHead(n_layers * width, vocabularies, labels.num_outputs, c.probe, c.task, 1 if binary else None)

    def fit(self, clf, train: Split, val: Split, cfg, extra_metrics: dict) -> list[dict]:
        import scipy.sparse as sp
        from sklearn.preprocessing import StandardScaler

        c = self.config
        pooled = clf.embed(train.texts, batch_size=cfg.batch_size, cache=True, templated=True).values
        texts = untemplated(train.texts, c.template)
        featurizer = TfidfFeaturizer.fit(texts)
        sparse = featurizer.transform(texts)
        dense = pooled.flatten(1).double().numpy()
        scaler = StandardScaler().fit(dense)
        standardized = scaler.transform(dense) / math.sqrt(dense.shape[1])
        kind, strength = linear_kind(c)
        grid, folds = (ALPHA_GRID, None) if kind == "ridge" else (C_GRID, 5)
        y = train.targets.numpy()
        best = None
        for w in LLM_WEIGHTS if strength is None else (1.0,):  # a given penalty leaves nothing to score w by
            x = sp.hstack([sp.csr_matrix(standardized * w), sparse], format="csr")
            fitted, info = fit_linear(x, y, kind, c.task, strength, c.seed, folds, grid)
            if best is None or (info["cv_score"] is not None and info["cv_score"] > best[2]["cv_score"]):
                best = (w, fitted, info)
        w, fitted, info = best
        self.vocabulary.vocabularies = featurizer.vocabularies
        head = clf.new_head()
        head.copy_linear(fitted)
        head.set_featurizer(featurizer)
        head.mean.copy_(torch.from_numpy(scaler.mean_))
        head.std.copy_(torch.from_numpy(scaler.scale_))
        head.llm_scale.fill_(w / math.sqrt(dense.shape[1]))
        clf.model.head = head.eval()
        record = {"probe": kind, "llm_weight": w, **fit_info(info, featurizer.width)}
        record.update(tune_on_eval(clf, val, lambda: self.logits(clf, val.texts, cfg.batch_size, True), cfg))
        return [record]

    @torch.no_grad()
    def logits(self, clf, texts: list[str], batch_size: int, cache: bool) -> torch.Tensor:
        pooled = clf.embed(texts, batch_size=batch_size, cache=cache, templated=True).values
        return clf.model.head((pooled, untemplated(texts, self.config.template)))

    def trainable_parameters(self, model) -> int:
        return model.head.coef.numel() + model.head.intercept.numel()

    def write_backbone(self, model, folder) -> dict | None:
        return self.vocabulary.write(model, folder)

    def restore(self, state: dict | None, folder) -> None:
        self.vocabulary.read(folder)

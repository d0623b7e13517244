"""Frozen-backbone strategies trained by gradient descent on cached features: ``head`` (an MLP) and ``lmhead``
(a linear head started from the label words' LM-head rows, i.e. from the zero-shot classifier)."""

from __future__ import annotations

import torch

from llmhead.model.backbone import lm_head_rows
from llmhead.model.heads import MLPHead
from llmhead.strategies.base import Split, Strategy, tune_thresholds
from llmhead.strategies.headtrain import train_head
from llmhead.strategies.prompting import verbalizer_words


class FrozenHead(Strategy):
    """mode='head': the backbone frozen, its features computed once and cached, an MLP head trained on them."""

    @property
    def verbalized(self) -> bool:
        return self.config.head_init == "lmhead"

    def new_head(self, width: int, n_layers: int, labels) -> torch.nn.Module:
        c = self.config
        return MLPHead(
            width,
            labels.num_outputs,
            c.head_hidden,
            c.activation,
            c.dropout,
            num_layers=n_layers,
            layer_mix=c.layer_mix,
            input_norm=c.input_norm,
            bias=c.head_bias,
            init=c.head_init,
            attention_pool=c.pooling == "attention",
        )

    def start_head(self, clf, features) -> torch.nn.Module:
        """A new head with its input statistics from ``features`` (and, verbalized, the label words' rows)."""
        head = clf.new_head()
        head.fit_scaler(features.values)
        if self.verbalized:
            words = verbalizer_words(clf.labels.names, self.config.verbalizers)
            rows = lm_head_rows(
                clf.source, clf.model.backbone, clf.label_token_ids(words), self.config.trust_remote_code
            )
            head.init_from_rows(rows)
        return head

    def fit(self, clf, train: Split, val: Split, cfg, extra_metrics: dict) -> list[dict]:
        x_train = clf.embed(train.texts, batch_size=cfg.batch_size, cache=True, templated=True)
        x_val = clf.embed(val.texts, batch_size=cfg.batch_size, cache=True, templated=True)
        head = self.start_head(clf, x_train)
        history = train_head(
            head,
            clf.labels,
            (x_train, train.targets),
            (x_val, val.targets),
            cfg,
            self.config.seed,
            progress=cfg.progress,
            start_is_candidate=self.verbalized,
        )
        clf.model.head = head.eval()
        tune_thresholds(clf, x_val, val.targets, cfg)
        return history


class LMHeadRows(FrozenHead):
    """mode='lmhead': only the label words' LM-head rows train (a linear head with a bias), from zero-shot."""

    verbalized = True

    def new_head(self, width: int, n_layers: int, labels) -> torch.nn.Module:
        return MLPHead(width, labels.num_outputs, [], dropout=0.0, input_norm="none", bias=True)

"""mode='icl': in-context learning. Nothing trains: demonstrations are drawn from the training data, the causal LM
scores each label's words after the few-shot prompt (prompting.py), and the head only removes the prompt's bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from llmhead.model import loading
from llmhead.model.precision import torch_dtype
from llmhead.strategies.base import Split, Strategy
from llmhead.strategies.prompting import ICLHead, ICLScorer, build_prompt, pick_demonstrations, verbalizer_words


class InContext(Strategy):
    causal_lm = True
    validates = False
    verbalized = True
    calibrates = False  # no validation split; icl_calibrate removes the prompt's bias instead

    def __init__(self, config):
        super().__init__(config)
        self.demos: list[tuple[str, int]] = []  # (text, label index)
        self.chat = False  # whether the prompt uses the tokenizer's chat template
        self._scorer: ICLScorer | None = None

    def load_backbone(self, source, keep: int) -> torch.nn.Module:
        return loading.causal_lm(source, self.config)

    def new_head(self, width: int, n_layers: int, labels) -> torch.nn.Module:
        return ICLHead(labels.num_outputs)

    def fit(self, clf, train: Split, val: Split, cfg, extra_metrics: dict) -> list[dict]:
        c, texts, targets = self.config, train.texts, train.targets
        picked = pick_demonstrations(targets.numpy(), c.icl_shots, c.seed)
        self.demos = [(texts[i], int(targets[i])) for i in picked]
        record: dict = {"demonstrations": len(picked)}
        has_chat = bool(clf.tokenizer.chat_template)
        if c.chat_template == "on" and not has_chat:
            raise ValueError(f"chat_template='on' but the tokenizer of {clf.source.name!r} has no chat template")
        self.chat = c.chat_template == "on" or (c.chat_template == "auto" and has_chat)
        if c.chat_template == "auto" and has_chat:
            # Small or base-like models often do better without the chat format: choose on training rows
            # that are not demonstrations (up to 64), never on evaluation data.
            rest = np.setdiff1d(np.arange(len(texts)), picked)
            rest = np.random.default_rng(c.seed).permutation(rest)[:64]
            if len(rest) >= 8:
                scores = {}
                for chat in (True, False):
                    self.chat, self._scorer = chat, None
                    scorer = self.scorer(clf)
                    out = self.calibrated_head(clf)(scorer.scores([texts[i] for i in rest], progress=cfg.progress))
                    scores["chat" if chat else "plain"] = float((out.argmax(-1) == targets[rest]).float().mean())
                self.chat = scores["chat"] >= scores["plain"]
                record["prompt_choice_accuracy"] = scores
        record["chat_template"] = self.chat
        self._scorer = None
        clf.model.head = self.calibrated_head(clf).eval()
        record["content_free_probs"] = clf.model.head.log_cf.exp().tolist()
        if val.texts:
            out = self.logits(clf, val.texts, cfg.batch_size, cache=False)
            record["val_accuracy"] = float((out.argmax(-1) == val.targets).float().mean())
        return [record]

    def calibrated_head(self, clf) -> ICLHead:
        head = clf.new_head()
        if self.config.icl_calibrate:
            head.log_cf.copy_(self.scorer(clf).content_free_bias())
        return head

    def scorer(self, clf) -> ICLScorer:
        if self._scorer is None:
            words = verbalizer_words(clf.labels.names, self.config.verbalizers)
            prompt = build_prompt(clf.tokenizer, self.config, [(t, words[y]) for t, y in self.demos], words, self.chat)
            dtype = torch_dtype(self.config.dtype)
            self._scorer = ICLScorer(clf.model.backbone, clf.tokenizer, prompt, words, dtype)
        return self._scorer

    @torch.no_grad()
    def logits(self, clf, texts: list[str], batch_size: int, cache: bool) -> torch.Tensor:
        scores = self.scorer(clf).scores(texts, progress=clf.extractor.progress)
        return clf.model.head(scores)

    def trainable_parameters(self, model) -> int:
        return 0

    def state(self) -> dict:
        return {"demonstrations": [list(d) for d in self.demos], "chat_template": self.chat}

    def restore(self, state: dict | None, folder: Path) -> None:
        if state and "demonstrations" in state:
            self.demos = [(t, int(y)) for t, y in state["demonstrations"]]
            self.chat = bool(state["chat_template"])

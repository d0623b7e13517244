"""The strategies, one per mode. The mode -> strategy choice is made here and nowhere else.

    head    frozen.py    frozen backbone, cached features, an MLP head
    lmhead  frozen.py    frozen backbone, a linear head started from the label words' LM-head rows
    probe   probe.py     frozen features + a scikit-learn linear model (logistic regression, SVM, ridge)
    icl     icl.py       in-context learning: demonstrations in a prompt, the LM head scores label words
    lora    finetune.py  peft adapters + the head, trained by the Accelerate loop (finetuning/)
    qlora   finetune.py  the same on a 4-bit NF4 base (bitsandbytes)
    full    finetune.py  every backbone weight (but frozen blocks) + the head
    tfidf   tfidf.py     no LLM: word + character n-gram TF-IDF and a linear model (the baseline)
    hybrid  hybrid.py    frozen features and TF-IDF side by side in one linear model

To add one: a ``Strategy`` subclass (base.py) with ``new_head`` and ``fit``, an entry below, and its options in
``config/usage.py`` (which modes read each option).
"""

from __future__ import annotations

from llmhead.strategies.base import Split, Strategy
from llmhead.strategies.finetune import Full, LoRA, QLoRA
from llmhead.strategies.frozen import FrozenHead, LMHeadRows
from llmhead.strategies.hybrid import Hybrid
from llmhead.strategies.icl import InContext
from llmhead.strategies.probe import Probe
from llmhead.strategies.tfidf import Tfidf

STRATEGIES: dict[str, type[Strategy]] = {
    "head": FrozenHead,
    "lmhead": LMHeadRows,
    "probe": Probe,
    "icl": InContext,
    "lora": LoRA,
    "qlora": QLoRA,
    "full": Full,
    "tfidf": Tfidf,
    "hybrid": Hybrid,
}


def for_config(config) -> Strategy:
    if config.mode not in STRATEGIES:
        raise ValueError(
            f"mode={config.mode!r} is not a strategy a classifier runs: choose from {sorted(STRATEGIES)}"
            + ("; mode='auto' (the ladder) is llmhead.auto(train, ...)" if config.mode == "auto" else "")
        )
    return STRATEGIES[config.mode](config)


__all__ = ["STRATEGIES", "Split", "Strategy", "for_config"]

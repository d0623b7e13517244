"""The classic baseline beside any classifier: word + character n-gram TF-IDF and a linear model (mode='tfidf'),
trained on the same data, so a report shows at once what the LLM buys (``clf.evaluate(test, baseline=True)``)."""

from __future__ import annotations

from llmhead.config import ModelConfig

MAIN = {"classification": ("accuracy", "macro_f1"), "multilabel": ("micro_f1", "macro_f1"), "regression": ("r2",)}


def baseline_options(config: ModelConfig) -> dict:
    """ModelConfig fields of the tfidf classifier that matches ``config`` (task, label order, pairs, seed)."""
    return {
        "model": config.model,
        "mode": "tfidf",
        "task": config.task,
        "labels": config.labels,
        "pair_separator": config.pair_separator,
        "seed": config.seed,
        "probe": "ridge" if config.task == "regression" else "logreg",
    }


def beside(model: dict, baseline: dict, task: str) -> dict:
    """The model's main metrics minus the baseline's (positive: the model is better; for mse/mae, lower is better
    and they are left out)."""
    return {m: model[m] - baseline[m] for m in MAIN[task] if m in model and m in baseline}

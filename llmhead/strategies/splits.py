"""The validation split carved from training data when no eval set is given: stratified and seeded."""

from __future__ import annotations

import numpy as np
import torch

from llmhead.data import DataError


def validation_split(texts: list[str], targets: torch.Tensor, fraction: float, config):
    """(train texts, validation texts, train targets, validation targets): ``fraction`` of the examples held out,
    stratified by class for classification when every class can give one."""
    from sklearn.model_selection import train_test_split

    n_val = max(1, round(fraction * len(texts)))
    if len(texts) - n_val < 1:
        raise DataError(f"need at least 2 training examples to carve a validation split, got {len(texts)}")
    stratify = None
    if config.task == "classification":
        counts = np.bincount(targets.numpy())
        if counts[counts > 0].min() >= 2 and n_val >= len(counts):
            stratify = targets.numpy()
    idx_train, idx_val = train_test_split(
        np.arange(len(texts)), test_size=n_val, random_state=config.seed, stratify=stratify
    )
    return (
        [texts[i] for i in idx_train],
        [texts[i] for i in idx_val],
        targets[torch.as_tensor(idx_train)],
        targets[torch.as_tensor(idx_val)],
    )

"""The validation split carved from training data when no eval set is given: stratified and seeded, and never
taking the last training example of a class (or of a label, multilabel): a model that never trained on a class it
predicts is a silent defect."""

from __future__ import annotations

import logging

import numpy as np
import torch

from llmhead.data import DataError

log = logging.getLogger(__name__)


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
    if config.task != "regression" and _classes(targets[torch.as_tensor(idx_train)], config.task) != _classes(
        targets, config.task
    ):
        idx_train, idx_val = _keeping_every_class(targets, n_val, config.seed, config.task)
    return (
        [texts[i] for i in idx_train],
        [texts[i] for i in idx_val],
        targets[torch.as_tensor(idx_train)],
        targets[torch.as_tensor(idx_val)],
    )


def _classes(targets: torch.Tensor, task: str) -> set[int]:
    """The classes (multilabel: the labels) with at least one example in ``targets``."""
    if task == "multilabel":
        return set(torch.nonzero(targets.sum(0) > 0).flatten().tolist())
    return set(targets.unique().tolist())


def _keeping_every_class(targets: torch.Tensor, n_val: int, seed: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_val`` validation examples drawn in a seeded order, each skipped when it holds the last training
    example of one of its classes (or labels). Raises when none can be drawn."""
    rows = [
        torch.nonzero(t > 0).flatten().tolist() if task == "multilabel" else [int(t)] for t in targets
    ]  # each example's classes
    left: dict[int, int] = {}
    for classes in rows:
        for c in classes:
            left[c] = left.get(c, 0) + 1
    val = []
    for i in np.random.default_rng(seed).permutation(len(rows)):
        if len(val) == n_val:
            break
        if all(left[c] > 1 for c in rows[i]):
            val.append(int(i))
            for c in rows[i]:
                left[c] -= 1
    kind = "label" if task == "multilabel" else "class"
    if not val:
        raise DataError(
            f"cannot carve a validation split from {len(rows)} examples without taking the only training example of "
            f"a {kind}: give an eval set, or more examples of each {kind}"
        )
    if len(val) < n_val:
        log.warning(
            "the validation split holds %d examples, not %d: the others would have taken a %s's only training example",
            len(val),
            n_val,
            kind,
        )
    chosen = set(val)
    return np.asarray([i for i in range(len(rows)) if i not in chosen]), np.asarray(sorted(val))

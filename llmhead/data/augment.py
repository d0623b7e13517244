"""Label-preserving text perturbations for small training sets, with no network and no extra model.

Word-level, seeded, applied to the training split only:

- ``dropout``: delete each word with probability p;
- ``mask``: replace a span of words (length ~ p * words, at least 1) with ``mask_token``;
- ``swap``: swap each word with its right neighbour with probability p.

NEFTune-style noise on the input embeddings (``TrainConfig.neftune_alpha``) is applied in the fine-tuning
loop instead, as it perturbs vectors, not words.
"""

from __future__ import annotations

import numpy as np

OPS = ("dropout", "mask", "swap")


def perturb(text: str, ops: list[str], p: float, rng: np.random.Generator, mask_token: str = "...") -> str:
    words = text.split()
    if len(words) < 2:
        return text
    for op in ops:
        if op == "dropout":
            keep = rng.random(len(words)) >= p
            if keep.any():
                words = [w for w, k in zip(words, keep) if k]
        elif op == "mask":
            span = max(1, round(p * len(words)))
            start = int(rng.integers(0, max(1, len(words) - span + 1)))
            words = words[:start] + [mask_token] + words[start + span :]
        elif op == "swap":
            i = 0
            while i < len(words) - 1:
                if rng.random() < p:
                    words[i], words[i + 1] = words[i + 1], words[i]
                    i += 1
                i += 1
        else:
            raise ValueError(f"unknown augmentation {op!r}; choose from {OPS}")
    return " ".join(words)


def augment(texts: list[str], targets, copies: int, ops: list[str], p: float, seed: int):
    """The originals followed by ``copies`` perturbed versions of each, with their targets repeated.

    ``texts`` are the raw texts (before the prompt template); ``targets`` is a tensor indexed by example.
    """
    import torch

    if copies == 0:
        return texts, targets
    rng = np.random.default_rng(seed)
    extra = [perturb(t, ops, p, rng) for _ in range(copies) for t in texts]
    return texts + extra, torch.cat([targets] + [targets] * copies)

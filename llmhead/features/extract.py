"""Pooled features from a frozen backbone: tokenized once, batched by length, cached.

With a frozen backbone every epoch would recompute the same vectors; computing them once makes
extra epochs cost only the head.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from llmhead import budget
from llmhead.progress import bar as progress_bar

log = logging.getLogger(__name__)


def truncate(ids: list[list[int]], max_length: int) -> tuple[list[list[int]], int]:
    """``ids`` cut to ``max_length`` tokens (keeping the start), and how many were cut (said in a warning)."""
    truncated = sum(len(x) > max_length for x in ids)
    if truncated:
        log.warning(
            "%d of %d texts are longer than max_length=%d tokens and were truncated (keeping the start); "
            "set long_inputs='chunk' to use all of them",
            truncated,
            len(ids),
            max_length,
        )
    return [x[:max_length] for x in ids], truncated


def chunk(tokenizer, texts: list[str], max_length: int, overlap: int) -> tuple[list[list[int]], list[int]]:
    """Overlapping windows of at most ``max_length`` tokens covering each text, and the text each came from.

    Leading special tokens (a BOS) are repeated at the start of every window, as the model expects them.
    """
    specials = set(tokenizer.all_special_ids)
    windows, owner = [], []
    for i, ids in enumerate(tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]):
        n_prefix = next((k for k, t in enumerate(ids) if t not in specials), len(ids))
        prefix, body = ids[:n_prefix], ids[n_prefix:]
        size = max_length - n_prefix
        step = size - overlap
        starts = range(0, max(len(body) - overlap, 1), step) if len(body) > size else [0]
        for start in starts:
            windows.append(prefix + body[start : start + size])
            owner.append(i)
    return windows, owner


def aggregate(features: torch.Tensor, owner: list[int], n: int, how: str) -> torch.Tensor:
    """(C, ...) chunk features -> (n, ...) per-text mean or max, without a Python loop over texts."""
    index = torch.as_tensor(owner)
    shape = (n, *features.shape[1:])
    if how == "mean":
        total = torch.zeros(shape).index_add_(0, index, features)
        counts = torch.bincount(index, minlength=n).clamp(min=1).to(features.dtype)
        return total / counts.view(-1, *([1] * (features.dim() - 1)))
    expanded = index.view(-1, *([1] * (features.dim() - 1))).expand_as(features)
    return torch.full(shape, -torch.inf).scatter_reduce_(0, expanded, features, reduce="amax")


def length_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped by length, longest first, so padding stays small and peak memory shows early."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def autocast(device: torch.device, dtype: torch.dtype):
    enabled = dtype != torch.float32
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


@dataclass
class FeatureSet:
    """What the head trains on: (N, L, H) pooled vectors, or, for attention pooling, the real tokens'
    states of all examples stacked as (sum of lengths, L, H) with ``lengths`` (N,)."""

    values: torch.Tensor
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.values) if self.lengths is None else len(self.lengths)

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows ``index`` as the head's input: (B, L, H), or right-padded (B, T, L, H) and a (B, T) mask."""
        if self.lengths is None:
            return self.values[index], None
        starts = torch.cumsum(self.lengths, 0) - self.lengths
        rows = [self.values[starts[i] : starts[i] + self.lengths[i]] for i in index.tolist()]
        tokens = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, T, L, H)
        mask = torch.arange(tokens.shape[1])[None, :] < self.lengths[index][:, None]  # (B, T)
        return tokens, mask.long()

    def rows(self) -> list[torch.Tensor]:
        """One tensor per example: (L, H) pooled, or (T_i, L, H) token states."""
        if self.lengths is None:
            return list(self.values.unbind(0))
        return list(self.values.split(self.lengths.tolist()))

    @classmethod
    def from_rows(cls, rows: list[torch.Tensor], tokens: bool) -> FeatureSet:
        if not tokens:
            return cls(torch.stack(rows))
        return cls(torch.cat(rows), torch.tensor([len(r) for r in rows]))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"values": self.values} if self.lengths is None else {"values": self.values, "lengths": self.lengths}


@torch.no_grad()  # not inference_mode: autocast does not keep its weight casts there
def extract(
    model, tokenizer, ids: list[list[int]], batch_size: int, dtype: torch.dtype, progress: bool = True
) -> FeatureSet:
    """Features of each token list, in input order, computed in ``dtype`` (autocast when not float32).
    ``model`` has ``features(input_ids, attention_mask)``."""
    device = next(model.parameters()).device
    pooled_out: torch.Tensor | None = None
    token_rows: list[torch.Tensor | None] = [None] * len(ids)
    bar = progress_bar(progress, total=len(ids), desc="features", unit="ex", leave=False)
    # One autocast for every batch: autocast keeps its low-precision copies of float32 weights that require
    # grad (after full fine-tuning) until its outermost context exits, so they are cast once, not once per batch.
    with autocast(device, dtype):
        for batch in length_batches([len(x) for x in ids], batch_size):
            padded = tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            mask = padded["attention_mask"]
            out = model.features(padded["input_ids"].to(device), mask.to(device)).float().cpu()
            if out.dim() == 3:  # pooled (B, L, H)
                if pooled_out is None:
                    pooled_out = torch.empty(len(ids), *out.shape[1:], dtype=torch.float32)
                pooled_out[torch.as_tensor(batch)] = out
            else:  # token states (B, T, L, H): keep the real tokens only
                for row, i in enumerate(batch):
                    token_rows[i] = out[row][mask[row].bool()]
            bar.update(len(batch))
            budget.check("the feature pass")
    bar.close()
    if pooled_out is not None:
        return FeatureSet(pooled_out)
    return FeatureSet(torch.cat(token_rows), torch.tensor([len(r) for r in token_rows]))

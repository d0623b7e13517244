"""Pooled features from a frozen backbone: tokenized once, batched by length, cached.

With a frozen backbone every epoch would recompute the same vectors; computing them once makes
extra epochs cost only the head.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids per text, truncated to ``max_length``, and how many texts were truncated."""
    ids = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
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


@torch.inference_mode()
def extract(model, tokenizer, ids: list[list[int]], batch_size: int, progress: bool = True) -> torch.Tensor:
    """(N, L, H) float32 pooled features in input order. ``model`` has ``features(input_ids, attention_mask)``."""
    device = next(model.parameters()).device
    dtype = next(model.backbone.parameters()).dtype
    out: torch.Tensor | None = None
    bar = tqdm(total=len(ids), desc="features", unit="ex", disable=not progress, leave=False)
    for batch in length_batches([len(x) for x in ids], batch_size):
        padded = tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
        with autocast(device, dtype):
            pooled = model.features(padded["input_ids"].to(device), padded["attention_mask"].to(device))
        if out is None:
            out = torch.empty(len(ids), *pooled.shape[1:], dtype=torch.float32)
        out[torch.as_tensor(batch)] = pooled.float().cpu()
        bar.update(len(batch))
    bar.close()
    return out


class FeatureCache:
    """Pooled features keyed by everything that determines them: in memory, and on disk when a folder is set."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder else None
        self.memory: dict[str, torch.Tensor] = {}

    @staticmethod
    def key(model_id: str, settings: str, ids: list[list[int]]) -> str:
        digest = hashlib.sha256(f"{model_id}|{settings}".encode())
        for row in ids:
            digest.update(np.asarray(row, dtype=np.int64).tobytes())
            digest.update(b"|")
        return digest.hexdigest()[:24]

    def get(self, key: str) -> torch.Tensor | None:
        if key in self.memory:
            return self.memory[key]
        if self.folder is not None and (self.folder / f"{key}.safetensors").is_file():
            self.memory[key] = load_file(self.folder / f"{key}.safetensors")["features"]
            return self.memory[key]
        return None

    def put(self, key: str, features: torch.Tensor) -> None:
        self.memory[key] = features
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=self.folder)
            os.close(fd)
            save_file({"features": features.contiguous()}, tmp)
            os.replace(tmp, self.folder / f"{key}.safetensors")

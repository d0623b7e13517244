"""Pool a sequence of hidden states into one vector per example.

Positions come from ``attention_mask`` only, never from ``pad_token_id``: that is correct for left
and right padding alike and when the pad token is the EOS token (transformers #24265, #30004).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from llmhead.config import FIXED, POOLINGS  # noqa: F401 (FIXED: no parameters, computed once and cached)

Pooling = Literal["last", "mean", "max", "last+mean", "attention"]


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position of each row, for left or right padding. (B,)"""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)  # (T,)
    return (attention_mask.long() * positions).argmax(dim=1)  # (B,)


def pooled_width(hidden: int, how: Pooling) -> int:
    """The width of one layer's pooled vector: ``last+mean`` puts two vectors side by side."""
    return 2 * hidden if how == "last+mean" else hidden


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: Pooling = "last") -> torch.Tensor:
    """(B, T, H) hidden states, (B, T) mask -> (B, H), or (B, 2H) for ``last+mean``."""
    if how == "last+mean":  # the last token sees the whole text; the mean keeps what no single position holds
        return torch.cat([pool(hidden, attention_mask, "last"), pool(hidden, attention_mask, "mean")], -1)
    if how == "last":
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, last_token_index(attention_mask)]  # (B, H)
    mask = attention_mask.unsqueeze(-1).bool()  # (B, T, 1)
    if how == "mean":
        weights = mask.to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, H)
    if how == "max":
        return hidden.masked_fill(~mask, torch.finfo(hidden.dtype).min).max(1).values  # (B, H)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {how!r}")


class AttentionPool(nn.Module):
    """A learned query per layer attends over the real tokens: (B, T, L, H), (B, T) mask -> (B, L, H).

    It has parameters, so it belongs to the head: with a frozen backbone the token states are cached
    and only this query and the MLP train.
    """

    def __init__(self, num_layers: int, hidden: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(num_layers, hidden))  # zeros: starts as mean pooling

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("btlh,lh->btl", tokens, self.query) / tokens.shape[-1] ** 0.5  # (B, T, L)
        scores = scores.masked_fill(~attention_mask.bool().unsqueeze(-1), float("-inf"))
        return torch.einsum("btl,btlh->blh", scores.softmax(1), tokens)  # (B, L, H)

"""The new head: an MLP on pooled vectors, always kept in float32 whatever the backbone's dtype."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLPHead(nn.Module):
    """standardize -> [Linear -> activation -> dropout] * len(hidden) -> dropout -> Linear.

    Decoder hidden states have a few dimensions with huge magnitudes ("massive activations"), so
    the pooled input is standardized with per-feature statistics of the training features. These are
    buffers, fitted once by ``fit_scaler`` and saved with the head, not trained.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: list[int] | tuple[int, ...] = (),
        activation: str = "gelu",
        dropout: float = 0.1,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.register_buffer("shift", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = size
        layers += [nn.Dropout(dropout), nn.Linear(width, out_dim)]
        self.mlp = nn.Sequential(*layers)

    @torch.no_grad()
    def fit_scaler(self, features: torch.Tensor) -> None:
        """Per-feature mean and std of (N, H) training features."""
        features = features.float()
        self.shift.copy_(features.mean(0))
        self.scale.copy_(features.std(0, unbiased=False).clamp(min=1e-6))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B, out_dim) in float32."""
        x = (pooled.float() - self.shift) / self.scale
        return self.mlp(x)

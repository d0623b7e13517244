"""The new head, on pooled vectors of one or several layers, always float32 whatever the backbone's dtype.

(B, L, H) pooled features -> input norm (per layer) -> layer mix -> [Linear -> act -> dropout]* -> Linear
"""

from __future__ import annotations

import torch
from torch import nn

from llmhead.config import INITS, INPUT_NORMS, LAYER_MIXES  # noqa: F401 (the choices live with the schema)
from llmhead.model.pooling import AttentionPool

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}  # llmhead.config.ACTIVATIONS


class MLPHead(nn.Module):
    """Decoder hidden states have a few dimensions with huge magnitudes ("massive activations") and
    norms that differ across layers, so the input is normalized per layer first:

    - ``standardize`` (default): per-feature mean/std of the training features, fitted once by
      ``fit_scaler`` and saved as buffers, not trained;
    - ``scale``: the same std, no shift (keeps a linear head exportable as a bias-free ``score``);
    - ``layernorm``: a learned LayerNorm; ``none``: nothing.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: list[int] | tuple[int, ...] = (),
        activation: str = "gelu",
        dropout: float = 0.1,
        num_layers: int = 1,
        layer_mix: str = "concat",
        input_norm: str = "standardize",
        bias: bool = True,
        init: str = "default",
        attention_pool: bool = False,
    ):
        super().__init__()
        self._config = dict(
            in_dim=in_dim,
            out_dim=out_dim,
            hidden=list(hidden),
            activation=activation,
            dropout=dropout,
            num_layers=num_layers,
            layer_mix=layer_mix,
            input_norm=input_norm,
            bias=bias,
            init=init,
            attention_pool=attention_pool,
        )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.input_norm, self.layer_mix = input_norm, layer_mix
        self.register_buffer("shift", torch.zeros(num_layers, in_dim))
        self.register_buffer("scale", torch.ones(num_layers, in_dim))
        self.norm = nn.LayerNorm(in_dim) if input_norm == "layernorm" else nn.Identity()
        self.attention = AttentionPool(num_layers, in_dim) if attention_pool else None
        if layer_mix == "weighted":
            self.mix = nn.Parameter(torch.zeros(num_layers))  # softmax weights over layers, start uniform
            width = in_dim
        else:
            width = in_dim * num_layers
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = size
        layers += [nn.Dropout(dropout), nn.Linear(width, out_dim, bias=bias)]
        self.mlp = nn.Sequential(*layers)
        if init == "normal":  # what transformers does for its score layer
            for module in self.mlp:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def config(self) -> dict:
        """The constructor's arguments: ``MLPHead(**head.config())`` builds the same shape (JSON values)."""
        return dict(self._config)

    @torch.no_grad()
    def fit_scaler(self, features: torch.Tensor) -> None:
        """Per-layer, per-feature statistics of (N, L, H) training features (pooled vectors, or the
        token states of all examples when the head pools by attention)."""
        features = features.float()
        if self.input_norm in ("standardize", "scale"):
            self.scale.copy_(features.std(0, unbiased=False).clamp(min=1e-6))
        if self.input_norm == "standardize":
            self.shift.copy_(features.mean(0))

    @torch.no_grad()
    def init_from_rows(self, rows: torch.Tensor) -> None:
        """Make a linear head compute ``rows @ h`` on the raw pooled vector h: the LM head's logits of the
        label words, i.e. the zero-shot classifier. The input normalization is folded in (call
        ``fit_scaler`` first)."""
        linear = self.mlp[-1]
        if len(self.mlp) != 2 or self.scale.shape[0] != 1 or self.input_norm == "layernorm":
            raise ValueError("verbalizer initialisation needs a linear head on one layer without layernorm")
        rows = rows.float()
        linear.weight.copy_(rows * self.scale[0])  # ((h - shift) / scale) @ (rows * scale).T = rows @ h - rows @ shift
        if linear.bias is not None:
            linear.bias.copy_(rows @ self.shift[0])

    def forward(self, pooled: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, H) pooled vectors, or (B, T, L, H) token states + (B, T) mask -> (B, out_dim) float32."""
        x = self.norm((pooled.float() - self.shift) / self.scale)  # (B, [T,] L, H)
        if self.attention is not None:
            x = self.attention(x, attention_mask)  # (B, L, H)
        if self.layer_mix == "weighted":
            x = (self.mix.softmax(0)[:, None] * x).sum(1)  # (B, H)
        else:
            x = x.flatten(1)  # (B, L*H)
        return self.mlp(x)

"""The top block's MLP on the pooled positions only.

With last-token pooling from the top kept block, one position per row of that block's output is read. The MLP is
position-wise, so it runs on those positions only: about three quarters of the block's matmuls (SmolLM2: 2.7 of 3.5
MFLOP per token), 2.5% of a 30-block forward or training step, saved in feature extraction, prediction and
fine-tuning alike. The other positions keep the residual stream without the MLP's update; nothing reads them.
``benchmarks/speedups.py`` (SmolLM2-135M, bf16, Rotten Tomatoes snippets, one thread on the shared 2-core machine,
alternating in one process; ``results/speedups.json``) could not show that gain: without it, feature extraction (192
snippets, batch 32) took 0.96x as long (0.72-0.99x over 5 repetitions) and a default LoRA step 0.94x (0.92-0.96x
over 3), both within that run's noise (two identical all-on classifiers differed by up to 26% and 9%).

The pooled features equal the full block's up to rounding, not bit for bit: the MLP's matrix products run on B rows
instead of B x T, and the kernels may round those differently (SmolLM2 on 128 snippets: at most 0.05% of the
features' norm in bf16, most rows identical; 2e-7 in float32; bit-identical on the tests' tiny models). The tests
hold its bf16 logits to at most twice the plain bf16 path's own distance from float32 (tests/test_speedups.py).

Installed as forward hooks on the block's ``mlp`` (its parameters and their names are untouched, so LoRA targets
and saved weights are the same), and active only inside ``only(attention_mask)``; a block recomputed by
activation checkpointing runs in full (the recomputation happens outside that context).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from llmhead.model.pooling import last_token_index


def top_block(backbone: nn.Module) -> nn.Module | None:
    """The last decoder block: the last of the one list of blocks as long as the model's layer count (the class
    names transformers keeps whole across devices); None when that is not unambiguous."""
    config = backbone.config.get_text_config() if hasattr(backbone.config, "get_text_config") else backbone.config
    names = set(getattr(backbone, "_no_split_modules", None) or [])
    lists = [
        m
        for m in backbone.modules()
        if isinstance(m, nn.ModuleList)
        and len(m) == getattr(config, "num_hidden_layers", -1)
        and all(type(b).__name__ in names for b in m)
    ]
    return lists[0][-1] if len(lists) == 1 else None


class LastTokenMLP:
    def __init__(self, block: nn.Module):
        self.block = block
        self.index: torch.Tensor | None = None
        self._shape: torch.Size | None = None
        block.mlp.register_forward_pre_hook(self._gather)
        block.mlp.register_forward_hook(self._scatter)

    @classmethod
    def install(cls, backbone: nn.Module) -> LastTokenMLP | None:
        block = top_block(backbone)
        if block is None or not isinstance(getattr(block, "mlp", None), nn.Module):
            return None
        return cls(block)

    @contextmanager
    def only(self, attention_mask: torch.Tensor):
        """Inside: the MLP runs on each row's last attended position of ``attention_mask`` (B, T)."""
        if getattr(self.block, "gradient_checkpointing", False) and torch.is_grad_enabled():
            yield
            return
        self.index = last_token_index(attention_mask)
        try:
            yield
        finally:
            self.index, self._shape = None, None

    def _gather(self, module, args):
        if self.index is None or not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 3:
            self._shape = None
            return None
        hidden = args[0]  # (B, T, H)
        self._shape = hidden.shape
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return (hidden[rows, self.index.to(hidden.device)].unsqueeze(1), *args[1:])  # (B, 1, H)

    def _scatter(self, module, args, out):
        if self._shape is None:
            return None
        first = out[0] if isinstance(out, tuple) else out  # (B, 1, H)
        rows = torch.arange(first.shape[0], device=first.device)
        full = first.new_zeros(*self._shape[:2], first.shape[-1])
        full = full.index_put((rows, self.index.to(first.device)), first[:, 0])  # (B, T, H), differentiable
        self._shape = None
        return (full, *out[1:]) if isinstance(out, tuple) else full

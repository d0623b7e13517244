"""The head-swapping model: decoder backbone (no LM head) -> pooling -> head on pooled vectors only."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from llmhead.model.heads import MLPHead
from llmhead.model.pooling import FIXED, Pooling, pool
from llmhead.speedups.lastblock import LastTokenMLP


class HeadModel(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        head: MLPHead,
        pooling: Pooling = "last",
        layers: list[int] | None = None,
        last_mlp: LastTokenMLP | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pooling = pooling
        self.layers = layers  # indices into hidden_states (0 = embeddings); None = the final output
        self.last_mlp = last_mlp  # hooks that run the top block's MLP on chosen positions only

    @property
    def trims_top_mlp(self) -> bool:
        """Last-token pooling of the final output reads one position of the top block: its MLP runs there only."""
        return self.last_mlp is not None and self.pooling == "last" and self.layers is None

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens -> (B, L, H) pooled float32 features, one row per selected layer; for attention
        pooling, whose query is trained, the (B, T, L, H) token states."""
        # Positions count real tokens only, so left padding does not shift them (models with absolute
        # position embeddings, such as GPT-2, would otherwise change their output with the padding side).
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        with self.last_mlp.only(attention_mask) if self.trims_top_mlp else nullcontext():
            out = self.backbone(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
                output_hidden_states=self.layers is not None,
            )
        states = [out.last_hidden_state] if self.layers is None else [out.hidden_states[i] for i in self.layers]
        if self.pooling not in FIXED:
            return torch.stack(states, 2).float()  # (B, T, L, H)
        return torch.stack([pool(h, attention_mask, self.pooling) for h in states], 1).float()  # (B, L, H)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, num_outputs) logits."""
        mask = None if self.pooling in FIXED else attention_mask
        return self.head(self.features(input_ids, attention_mask), mask)

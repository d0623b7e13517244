"""The head-swapping model: decoder backbone (no LM head) -> pooling -> MLP head on pooled vectors."""

from __future__ import annotations

import torch
from torch import nn

from .heads import MLPHead
from .pooling import Pooling, pool


class HeadModel(nn.Module):
    def __init__(self, backbone: nn.Module, head: MLPHead, pooling: Pooling = "last"):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pooling = pooling

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens -> (B, H) pooled float32 features."""
        # Positions count real tokens only, so left padding does not shift them (models with absolute
        # position embeddings, such as GPT-2, would otherwise change their output with the padding side).
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        out = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        return pool(out.last_hidden_state, attention_mask, self.pooling).float()  # (B, H)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, num_outputs) logits; the head only ever sees pooled vectors."""
        return self.head(self.features(input_ids, attention_mask))

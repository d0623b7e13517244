"""The optimizer's parameter groups (a smaller learning rate for pretrained weights, decayed per block) and the
mixed precision a run computes in."""

from __future__ import annotations

from llmhead.config import TrainConfig
from llmhead.finetuning.adapters import block_index


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    from llmhead.model.precision import resolve_dtype

    return "bf16" if resolve_dtype("auto") == "bfloat16" else "no"


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """Head at ``lr``; backbone at ``lr * backbone_lr_ratio``, decayed per block when ``layer_decay`` < 1;
    no weight decay on biases and norms."""
    num_blocks = model.backbone.config.num_hidden_layers
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            lr = cfg.lr
        else:
            index = block_index(name)
            depth = num_blocks - 1 - index if index is not None else (0 if "norm" in name else num_blocks)
            lr = cfg.lr * cfg.backbone_lr_ratio * cfg.layer_decay**depth
        decay = cfg.weight_decay if param.ndim >= 2 else 0.0
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]

"""What trains when the backbone does: where LoRA adapters go (peft), how QLoRA quantizes the base (bitsandbytes),
which weights full fine-tuning unfreezes, and the names and copies of what trains (for checkpoints)."""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from llmhead.config import ModelConfig
from llmhead.model.blocks import frozen_blocks
from llmhead.seeding import seeded_fork

BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")  # block index in a parameter name (Llama, GPT-2...)


def block_index(name: str) -> int | None:
    match = BLOCK.search(name)
    return int(match.group(1)) if match else None


def quantization_config(config: ModelConfig):
    """bitsandbytes 4-bit NF4 for qlora (runs on CUDA and, with bitsandbytes >= 0.49, on the CPU)."""
    from transformers import BitsAndBytesConfig

    from llmhead.model.precision import torch_dtype

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype("auto") if config.dtype == "float32" else torch_dtype(config.dtype),
    )


def _block_layers(backbone: nn.Module, types: tuple[type, ...]):
    """(dotted name, module) of every module of ``types`` inside a block."""
    for name, m in backbone.named_modules():
        if isinstance(m, types) and block_index(name + ".") is not None:
            yield name, m


def linear_names(backbone: nn.Module) -> list[str]:
    """Leaf names of the blocks' linear layers (q_proj, ..., down_proj): peft's "all-linear", spelled out."""
    return sorted({name.rsplit(".", 1)[-1] for name, _ in _block_layers(backbone, (nn.Linear,))})


def attention_names(backbone: nn.Module) -> list[str]:
    """The blocks' attention projections as "<attention module>.<projection>" (self_attn.q_proj, ... ; GPT-2:
    attn.c_attn, attn.c_proj), so that a name shared with the MLP (GPT-2's mlp.c_proj) is not matched."""
    from transformers.pytorch_utils import Conv1D

    parents = (name.split(".")[-2:] for name, _ in _block_layers(backbone, (nn.Linear, Conv1D)))
    names = {".".join(p) for p in parents if len(p) == 2 and ("attn" in p[0].lower() or "attention" in p[0].lower())}
    if not names:
        raise ValueError(
            f"lora_targets='attention' found no attention projections in {type(backbone).__name__} (no linear layer "
            "inside a block's module named *attn* / *attention*): name the modules (lora_targets=['q_proj', ...]) "
            "or use lora_targets='all-linear'"
        )
    return sorted(names)


def lora_config(config: ModelConfig, num_blocks: int, backbone: nn.Module):
    from peft import LoraConfig

    if config.peft_config is not None:
        return config.peft_config
    frozen = frozen_blocks(num_blocks, config.freeze_blocks)
    if frozen >= num_blocks:
        raise ValueError(f"freeze_blocks={config.freeze_blocks} leaves no block to adapt: the model has {num_blocks}")
    layers = list(range(frozen, num_blocks)) if frozen else None
    targets = config.lora_targets
    if targets == "attention":
        targets = attention_names(backbone)
    elif layers and targets == "all-linear":  # peft takes a block range only with explicit module names
        targets = linear_names(backbone)
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        layers_pattern="layers" if layers else None,
        use_dora=config.lora_dora,
        bias="none",
    )


def with_adapters(backbone: nn.Module, peft_config, seed: int = 0) -> nn.Module:
    """peft's ``get_peft_model``, its adapters initialised from ``seed`` on a forked generator (the caller's random
    stream is left as it was), and without the FutureWarning it raises on every call under transformers 5 (it reads
    ``is_gradient_checkpointing``, a deprecated alias): nothing a user of llmhead could act on."""
    from peft import get_peft_model

    with warnings.catch_warnings(), seeded_fork(seed):
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(backbone, peft_config)


def unfreeze(backbone: nn.Module, freeze_blocks: int | float) -> nn.Module:
    """Full fine-tuning: every weight trains except, when ``freeze_blocks`` (a count or a share of the depth) is not 0,
    the embeddings and the first blocks."""
    num_blocks = backbone.config.num_hidden_layers
    if freeze_blocks > num_blocks:
        raise ValueError(f"freeze_blocks={freeze_blocks} exceeds the model's {num_blocks} blocks")
    freeze_blocks = frozen_blocks(num_blocks, freeze_blocks)
    for name, param in backbone.named_parameters():
        index = block_index(name)
        if index is not None:
            frozen = index < freeze_blocks
        else:  # embeddings (frozen with the first blocks) or the final norm (trains)
            frozen = freeze_blocks > 0 and "norm" not in name and "ln_f" not in name
        param.requires_grad_(not frozen)
    return backbone


def trainable_names(model: nn.Module) -> set[str]:
    """State-dict names of what training changes: trainable parameters, and the head's buffers."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {n for n in model.state_dict() if n in names or n.startswith("head.")}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of what training changes (adapters, unfrozen weights, the head)."""
    names = trainable_names(model)
    return {n: t.detach().cpu().clone() for n, t in model.state_dict().items() if n in names}

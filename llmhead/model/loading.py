"""Loading a classifier's backbone: the plain base model, the causal LM (in-context learning keeps the LM head), or
a saved folder of fine-tuned weights; then the speed-ups, frozen, and fingerprinted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from llmhead import speedups
from llmhead.model.backbone import Source, fingerprint, load_backbone
from llmhead.model.precision import torch_dtype
from llmhead.model.quiet import expected_load


@dataclass
class Loaded:
    """A loaded backbone and the fingerprint of its (pretrained) weights."""

    backbone: torch.nn.Module
    fingerprint: str

    @classmethod
    def prepare(cls, backbone: torch.nn.Module, enabled: list[str], causal_lm: bool = False) -> Loaded:
        speedups.install(backbone, enabled)  # the CPU speed-ups chosen (speedups/__init__.py)
        backbone.requires_grad_(False)  # until a strategy unfreezes what it trains
        return cls(backbone, fingerprint(backbone.base_model if causal_lm else backbone))

    def body(self) -> Loaded:
        """The base model inside a causal LM: exactly the frozen backbone the other strategies read."""
        return Loaded(self.backbone.base_model, self.fingerprint)


def base_model(source: Source, config, dtype: str, keep: int, quantization=None) -> torch.nn.Module:
    """The base model (no LM head) with its first ``keep`` blocks."""
    return load_backbone(
        source,
        dtype,
        config.trust_remote_code,
        keep_blocks=keep,
        quantization_config=quantization,
        enabled_speedups=config.speedups,
    )


def causal_lm(source: Source, config) -> torch.nn.Module:
    """The whole causal LM: in-context learning scores label words with its LM head."""
    from transformers import AutoModelForCausalLM

    path, dtype = source.pretrained_path(), torch_dtype(config.dtype)
    with expected_load():
        lm = speedups.load_pretrained(
            config.speedups, AutoModelForCausalLM, path, dtype, None, config.trust_remote_code
        )
    return lm.eval()


def saved_weights(folder: Path, config, dtype: str) -> torch.nn.Module:
    """A saved folder of fine-tuned (or merged) weights: safetensors only (never a .bin put beside them)."""
    from transformers import AutoModel

    with expected_load():
        return speedups.load_pretrained(
            config.speedups,
            AutoModel,
            folder,
            torch_dtype(dtype),
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
            local_files_only=True,
        ).eval()

"""CPU speed-ups, each behind one switch: the ``speedups`` option lists the ones in use (all by default), and
``speedups=[]`` is the plain transformers path. Each is exact or rounds only as stated in its module, and each has
a test that it equals the plain path (tests/test_speedups.py); ``benchmarks/speedups.py`` measures what each one
gains on a default run, side by side with the plain path.

    short_attention  attention.py  plain matmul attention on short CPU inputs instead of SDPA's kernel
    fused_norms      norms.py      RMSNorm as torch's fused kernel where bit-identical, without gradients
    last_token_mlp   lastblock.py  the top block's MLP on the pooled position only (last-token pooling)
    mapped_load      mapped.py     a float32 checkpoint cast to bf16 one tensor at a time (lower peak memory)
"""

from __future__ import annotations

import torch

from . import mapped
from .attention import use_short_attention
from .lastblock import LastTokenMLP
from .norms import fuse_rms_norms

# the values of the `speedups` option (config.SPEEDUPS, which imports no torch, lists the same names)
NAMES = ("short_attention", "fused_norms", "last_token_mlp", "mapped_load")


def install(backbone: torch.nn.Module, enabled: list[str]) -> None:
    """The forward-pass speed-ups in ``enabled`` on a loaded ``backbone`` (per instance: other models untouched)."""
    if "short_attention" in enabled:
        use_short_attention(backbone)
    if "fused_norms" in enabled:
        fuse_rms_norms(backbone)  # only where bit-identical, only without gradients


def last_token_mlp(backbone: torch.nn.Module, enabled: list[str]) -> LastTokenMLP | None:
    """The hooks that run the top block's MLP on pooled positions only, or None when switched off."""
    return LastTokenMLP.install(backbone) if "last_token_mlp" in enabled else None


def load_pretrained(
    enabled: list[str], auto_class, path, dtype: torch.dtype, config=None, trust_remote_code=False, **options
):
    """``auto_class.from_pretrained``: through ``mapped.py`` when ``mapped_load`` is enabled."""
    if "mapped_load" in enabled:
        return mapped.from_pretrained(auto_class, path, dtype, config, trust_remote_code, **options)
    if config is not None:
        options["config"] = config
    return auto_class.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **options)

"""CPU speed-ups, each behind one switch: the ``speedups`` option lists the ones in use (all by default), and
``speedups=[]`` is the plain transformers path. Each is exact or rounds only as stated in its module, and each has
a test that it equals the plain path (tests/test_speedups.py); ``benchmarks/speedups.py`` measures what each one
gains on a default run, side by side with the plain path.

    short_attention  attention.py  plain matmul attention on short CPU inputs instead of SDPA's kernel
    mapped_load      mapped.py     a float32 checkpoint cast to bf16 one tensor at a time (lower peak memory)

Two more (a fused RMSNorm forward without gradients, and the top block's MLP run on the pooled position only) were
removed: benchmarks/speedups.py measured no gain for either on a default run (feature extraction 0.92x and 0.96x,
a LoRA step 0.94x, inside the run's own noise; benchmarks/results/speedups.json).
"""

from __future__ import annotations

import torch

from . import mapped
from .attention import use_short_attention

# the values of the `speedups` option (config.SPEEDUPS, which imports no torch, lists the same names)
NAMES = ("short_attention", "mapped_load")


def install(backbone: torch.nn.Module, enabled: list[str]) -> None:
    """The forward-pass speed-ups in ``enabled`` on a loaded ``backbone`` (per instance: other models untouched)."""
    if "short_attention" in enabled:
        use_short_attention(backbone)


def load_pretrained(
    enabled: list[str], auto_class, path, dtype: torch.dtype, config=None, trust_remote_code=False, **options
):
    """``auto_class.from_pretrained``: through ``mapped.py`` when ``mapped_load`` is enabled."""
    if "mapped_load" in enabled:
        return mapped.from_pretrained(auto_class, path, dtype, config, trust_remote_code, **options)
    if config is not None:
        options["config"] = config
    return auto_class.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **options)

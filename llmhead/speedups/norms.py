"""RMSNorm as one fused kernel when no gradient is recorded (feature extraction, prediction, validation).

transformers' Llama-family RMSNorm is five element-wise passes over a float32 copy (cast, square-mean, rsqrt, scale,
cast back), and a forward runs two per block: on the CPU at 16 x 26 tokens of SmolLM2 each took ~0.34 ms, against
~0.12 ms for torch's fused ``rms_norm`` on the same float32 input: ~13 ms of a 16-snippet batch's forward, a few
percent of it. ``benchmarks/speedups.py`` (SmolLM2-135M, bf16, 192 Rotten Tomatoes snippets at batch 32, one thread
on the shared 2-core machine, alternating in one process; ``results/speedups.json``) could not show that gain:
feature extraction took 0.92x as long without it (0.79-1.00x over 5 repetitions), within that run's noise (two
identical all-on classifiers differed by up to 26%). Its outputs are bit-identical (tests/test_speedups.py). The
fused forward is set per module instance (never on the class, so other models are untouched), only where it gives
bit-identical outputs to the module's own forward on probes in float32 and bfloat16 (Gemma's ``1 + weight`` and
other variants keep theirs), and only while gradients are off: training runs the original, whose backward is as
fast.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.nn import functional as F


def fused_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """Bound to an RMSNorm instance (a method, so copies of the module bind to the copy)."""
    if torch.is_grad_enabled():
        return type(self).forward(self, hidden_states)
    normed = F.rms_norm(hidden_states.float(), (hidden_states.shape[-1],), eps=self.variance_epsilon)
    return self.weight * normed.to(hidden_states.dtype)


@torch.inference_mode()
def _same(module: nn.Module, original, fused) -> bool:
    weight = module.weight
    g = torch.Generator(device=weight.device).manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        x = (torch.randn(2, 5, weight.shape[0], generator=g, device=weight.device) * 3).to(dtype)
        try:
            if not torch.equal(original(x), fused(x)):
                return False
        except (RuntimeError, TypeError):
            return False
    return True


def fuse_rms_norms(model: nn.Module) -> int:
    """Give ``model``'s RMSNorm modules the fused forward where it is exact; returns how many."""
    count = 0
    for module in model.modules():
        if not type(module).__name__.endswith("RMSNorm") or "forward" in vars(module):
            continue
        weight, eps = getattr(module, "weight", None), getattr(module, "variance_epsilon", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or not isinstance(eps, float):
            continue
        original, fused = module.forward, types.MethodType(fused_forward, module)
        if _same(module, original, fused):
            module.forward = fused
            count += 1
    return count

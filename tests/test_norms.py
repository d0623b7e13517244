"""The fused RMSNorm forward: bit-identical where set, never set where the formula differs, training unchanged."""

from __future__ import annotations

import copy

import torch

import llmhead
from llmhead.speedups.norms import fuse_rms_norms


def norms(model):
    return [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]


def test_llama_and_qwen_norms_are_fused_and_exact(tiny_model, monkeypatch):
    clf = llmhead.from_pretrained(tiny_model, dtype="float32")
    backbone = clf.model.backbone
    fused = [m for m in norms(backbone) if "forward" in vars(m)]
    if "gemma" in type(backbone).__name__.lower():
        assert fused == []  # Gemma scales by (1 + weight): its own forward stays
        return
    assert len(fused) == 2 * backbone.config.num_hidden_layers + 1
    x = torch.randn(3, 7, backbone.config.hidden_size) * 5
    for m in fused:
        torch.nn.init.normal_(m.weight)
        for dtype in (torch.float32, torch.bfloat16):
            with torch.inference_mode():
                assert torch.equal(m(x.to(dtype)), type(m).forward(m, x.to(dtype)))
    calls = []
    monkeypatch.setattr(torch.nn.functional, "rms_norm", lambda *a, **k: calls.append(1) or torch.zeros(x.shape))
    with torch.enable_grad():  # training runs the module's own forward (and its autograd graph)
        assert fused[0](x.requires_grad_()).requires_grad and calls == []
    with torch.inference_mode():
        assert not fused[0](x).any() and calls == [1]
    monkeypatch.undo()
    copied = copy.deepcopy(fused[0])  # a copy computes with its own weight
    torch.nn.init.zeros_(copied.weight)
    with torch.inference_mode():
        assert not copied(x).any() and fused[0](x).any()


def test_a_different_formula_is_left_alone():
    class OffsetRMSNorm(torch.nn.Module):  # Gemma-style: (1 + weight)
        def __init__(self):
            super().__init__()
            self.weight, self.variance_epsilon = torch.nn.Parameter(torch.randn(8)), 1e-6

        def forward(self, x):
            h = x.float()
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
            return (1 + self.weight) * h.to(x.dtype)

    model = torch.nn.Sequential(OffsetRMSNorm())
    assert fuse_rms_norms(model) == 0 and "forward" not in vars(model[0])

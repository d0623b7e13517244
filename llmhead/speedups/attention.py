"""Attention for short sequences on the CPU: plain matmul + softmax where it beats SDPA's kernel.

On the CPU, PyTorch's SDPA runs a flash-attention kernel built for long sequences. On short ones its fixed costs
dominate: at 16 x 26 tokens on SmolLM2-135M its backward took 39% of a LoRA step's backward, and forward-only one
call took about twice as long as two matmuls and a float32 softmax (what transformers' "eager" attention does).
Measured by ``benchmarks/speedups.py`` (SmolLM2-135M, bf16, Rotten Tomatoes snippets, one thread on the shared
2-core machine, each variant alternating with the others in one process; ``results/speedups.json``): a default LoRA
step (16 x ~25 tokens) takes 1.30x as long without it (1.29-1.46x over 3 repetitions, each faster with it); feature
extraction (192 snippets, ~26 tokens, batch 32) showed no gain: 0.96x (0.73-1.00x) without it against with it,
within that run's noise (two identical all-on classifiers differed by up to 26%). Training keeps the scores for the
backward, and they grow with the square of the length, so only calls with at most ``2 x head_dim`` keys take it (the
scores then add about a third to what a block keeps for the backward anyway: 128 keys for SmolLM2's 64-wide heads,
256 for Llama-3-8B's), never more than ``MAX_SCORES`` scores; longer ones go to SDPA. Forward-only, SDPA's fixed
costs are amortised sooner: at most ``head_dim`` keys take this path there.

Registered with transformers as the attention implementation "llmhead" (``AttentionInterface``), using SDPA's
boolean masks, and set only on models that would otherwise run SDPA; anything unusual (soft-capping, attention
sinks, returned weights, CUDA) goes to SDPA unchanged. In float32 it equals SDPA to float32 rounding. In bfloat16
its outputs differ from SDPA's by rounding (SDPA keeps the scores in float32; here they are rounded to bfloat16
before a float32 softmax, as in transformers' eager attention), by about as much as bf16 itself moves them: on 128
Rotten Tomatoes snippets SmolLM2's bf16 features are a median 1.27% (at most 2.9%) of their norm from its float32
features with it, 1.22% (2.6%) with SDPA, and 1.26% (2.4%) from SDPA's. The tests hold its bf16 logits to at most
twice the plain bf16 path's own distance from float32 (tests/test_speedups.py). Not equal, though, so the attention
implementation is part of the feature-cache key.
"""

from __future__ import annotations

import torch

NAME = "llmhead"
MAX_SCORES = 2**24  # batch x heads x queries x keys per call (bf16 + fp32 copies: ~100 MB)
KEYS_PER_HEAD_DIM = 2  # at most this many keys per unit of head width, in training
FORWARD_KEYS_PER_HEAD_DIM = 1  # without gradients (feature extraction, prediction, validation)


def short_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, T, D)
    key: torch.Tensor,  # (B, H_kv, S, D)
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # (B, 1, T, S) bool (True = attend) or None = causal / none
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, length, dim = query.shape
    keys = key.shape[2]
    unusual = any(kwargs.get(k) is not None for k in ("softcap", "s_aux", "position_bias")) or kwargs.get(
        "output_attentions"
    )
    masked = attention_mask is not None and (  # an additive float mask, or one per head
        attention_mask.dtype != torch.bool or attention_mask.dim() != 4 or attention_mask.shape[1] != 1
    )
    # Forward-only, SDPA's kernel catches up sooner (16 x 64 tokens: even; 16 x 128: SDPA ahead or even).
    per_dim = KEYS_PER_HEAD_DIM if torch.is_grad_enabled() else FORWARD_KEYS_PER_HEAD_DIM
    long = keys > per_dim * dim or batch * heads * length * keys > MAX_SCORES
    if unusual or masked or long or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    # Grouped-query attention without copying keys and values per query head: each key/value head's queries
    # are stacked along the query axis (heads h = kv * groups + g, as transformers' repeat_kv pairs them).
    q = query.reshape(batch, kv_heads, groups * length, dim)
    scale = scaling if scaling is not None else dim**-0.5
    scores = torch.matmul(q, key.transpose(2, 3)) * scale  # (B, H_kv, G*T, S)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None and causal and length > 1:
        attention_mask = torch.ones(length, keys, dtype=torch.bool, device=query.device).tril(keys - length)
    if attention_mask is not None:  # a large negative, not -inf: a fully masked (padding) row stays finite
        allowed = attention_mask.expand(batch, 1, length, keys)[:, :, None]  # (B, 1, 1, T, S)
        scores = scores.view(batch, kv_heads, groups, length, keys).masked_fill(~allowed, torch.finfo(scores.dtype).min)
        scores = scores.view(batch, kv_heads, groups * length, keys)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if dropout and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout)
    out = torch.matmul(probs, value).view(batch, heads, length, dim)  # (B, H, T, D)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, short_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def use_short_attention(model: torch.nn.Module) -> bool:
    """Switch ``model`` from SDPA to ``short_attention`` (which itself hands CUDA and long calls to SDPA);
    leave any other choice alone."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    register()
    model.set_attn_implementation(NAME)
    return True

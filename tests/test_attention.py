"""The short-sequence attention equals SDPA (values and gradients), and models give the same outputs with it."""

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from llmhead.speedups import attention


class Module(torch.nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups, self.is_causal = groups, True


def qkv(batch, heads, kv_heads, length, keys, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, dim, generator=g, requires_grad=True)
    k = torch.randn(batch, kv_heads, keys, dim, generator=g, requires_grad=True)
    v = torch.randn(batch, kv_heads, keys, dim, generator=g, requires_grad=True)
    return q, k, v


def both(module, q, k, v, mask, **kw):
    outs = []
    for fn in (attention.short_attention, sdpa_attention_forward):
        for t in (q, k, v):
            t.grad = None
        out, weights = fn(module, q, k, v, mask, **kw)
        assert weights is None
        (out * torch.arange(out.numel()).reshape(out.shape).sin()).sum().backward()
        outs.append((out.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone()))
    return outs


@pytest.mark.parametrize("kv_heads", [4, 2, 1])  # plain, grouped-query, multi-query
def test_causal_no_mask_equals_sdpa(kv_heads):
    q, k, v = qkv(3, 4, kv_heads, 7, 7)
    ours, theirs = both(Module(4 // kv_heads), q, k, v, None, scaling=0.3)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_padding_mask_and_cache_offset_equal_sdpa():
    """Left padding (a boolean mask with fully masked rows) and queries after a cached prefix (T < S)."""
    q, k, v = qkv(2, 4, 2, 5, 9)
    mask = torch.ones(2, 1, 5, 9, dtype=torch.bool).tril(4)  # causal, bottom-right aligned
    mask[1, :, :, :3] = False  # the second row's first three keys are padding
    ours, theirs = both(Module(2), q, k, v, mask)
    real = mask.any(-1).squeeze(1)  # (B, T): queries that see at least one key
    torch.testing.assert_close(ours[0][real], theirs[0][real], atol=1e-5, rtol=1e-5)
    for a, b in zip(ours[1:], theirs[1:]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # A cached prefix without a mask: every query sees the whole prefix and its own past.
    q, k, v = qkv(2, 4, 4, 3, 8, seed=1)
    out, _ = attention.short_attention(Module(1), q, k, v, None)
    full = torch.ones(3, 8, dtype=torch.bool).tril(5)
    ref, _ = sdpa_attention_forward(Module(1), q, k, v, full[None, None].expand(2, 1, 3, 8))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_long_calls_and_soft_capping_go_to_sdpa(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "transformers.integrations.sdpa_attention.sdpa_attention_forward",
        lambda *a, **kw: calls.append(kw) or (torch.zeros(1), None),
    )
    monkeypatch.setattr(attention, "MAX_SCORES", 4 * 7 * 7 - 1)
    q, k, v = qkv(1, 4, 4, 7, 7)
    attention.short_attention(Module(1), q, k, v, None)  # one score over the cap
    attention.short_attention(Module(1), q[..., :6, :], k[..., :6, :], v[..., :6, :], None, softcap=30.0)
    assert len(calls) == 2
    attention.short_attention(Module(1), q[..., :6, :], k[..., :6, :], v[..., :6, :], None)
    assert len(calls) == 2
    q, k, v = qkv(1, 2, 2, 9, 9, dim=4)  # 9 keys > 2 x head_dim
    attention.short_attention(Module(1), q, k, v, None)
    assert len(calls) == 3
    with torch.no_grad():  # forward-only (feature extraction, prediction) takes it too, up to head_dim keys
        attention.short_attention(Module(1), q[..., :4, :], k[..., :4, :], v[..., :4, :], None)
        assert len(calls) == 3
        attention.short_attention(Module(1), q[..., :6, :], k[..., :6, :], v[..., :6, :], None)  # 6 keys > 4
        assert len(calls) == 4
    attention.short_attention(Module(1), q[..., :6, :], k[..., :6, :], v[..., :6, :], None)  # training: <= 8
    assert len(calls) == 4


def test_models_give_the_same_features_with_and_without_it(tiny_model):
    import llmhead

    texts = ["a good film", "bad", "an utterly forgettable and tedious story about nothing at all"]
    feats = []
    for short in (True, False):
        clf = llmhead.from_pretrained(tiny_model, dtype="float32", speedups=["short_attention"] if short else [])
        backbone = clf.model.backbone
        assert backbone.config._attn_implementation == (attention.NAME if short else "sdpa")
        with torch.enable_grad():  # the path that training takes
            feats.append(clf.model.features(*padded(clf, texts)).detach())
        with torch.inference_mode():  # feature extraction and prediction
            feats.append(clf.model.features(*padded(clf, texts)))
    for f in feats[1:]:
        torch.testing.assert_close(f, feats[0], atol=1e-5, rtol=1e-4)


def padded(clf, texts):
    batch = clf.tokenizer(texts, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def test_feature_cache_keeps_the_two_kernels_apart(tiny_llama, tmp_path):
    """Their bf16 outputs differ by rounding, so features computed with one are never served to the other."""
    from conftest import sentiment_rows

    import llmhead

    rows = sentiment_rows(1)
    runs = []
    for short in (True, False, True):
        clf = llmhead.from_pretrained(tiny_llama, dtype="float32", speedups=["short_attention"] if short else [])
        clf.fit(rows, epochs=1, feature_cache=str(tmp_path), progress=False)
        runs.append((clf.extractor.cache.computed, clf.extractor.cache.hits))
    assert runs[0][0] > 0 and runs[1][0] == runs[0][0] and runs[2] == (0, runs[0][0])

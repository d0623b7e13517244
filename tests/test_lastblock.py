"""The top block's MLP on the pooled position only: same features and gradients, less work."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny

import llmhead
from llmhead.speedups.lastblock import top_block

TEXTS = ["a good film", "bad", "an utterly forgettable and tedious story about nothing at all", "fine"]


def batch(clf):
    b = clf.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return b["input_ids"], b["attention_mask"]


def mlp_rows(clf) -> list[tuple[int, ...]]:
    """Shapes of what the top block's MLP receives, recorded by a hook."""
    seen: list[tuple[int, ...]] = []
    top_block(clf.model.backbone).mlp.register_forward_hook(lambda m, a, o: seen.append(tuple(a[0].shape)))
    return seen


def with_and_without(clf, fn):
    """fn() with the top block's MLP on the pooled positions, then on every position."""
    trimmed = fn()
    installed, clf.model.last_mlp = clf.model.last_mlp, None
    try:
        return trimmed, fn()
    finally:
        clf.model.last_mlp = installed


@pytest.mark.parametrize("side", ["right", "left"])
def test_features_equal_the_full_blocks(tiny_model, side):
    clf = llmhead.from_pretrained(tiny_model, dtype="float32")
    clf.tokenizer.padding_side = side
    seen = mlp_rows(clf)
    ids, mask = batch(clf)
    with torch.inference_mode():
        trimmed, full = with_and_without(clf, lambda: clf.model.features(ids, mask))
    torch.testing.assert_close(trimmed, full, atol=1e-6, rtol=1e-6)
    assert seen == [(len(TEXTS), 1, 32), (len(TEXTS), ids.shape[1], 32)]  # one position per row, then all


def test_lora_gradients_equal_the_full_blocks(tiny_llama, tmp_path):
    """Fine-tuning through the trimmed block gives the same loss and adapter gradients (MLP adapters included)."""
    lora = dict(mode="lora", lora_targets="all-linear", lora_dropout=0.0)
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", **lora)
    clf.model.backbone = clf.strategy.adapt(clf.model.backbone)
    params = [p for p in clf.model.backbone.parameters() if p.requires_grad]
    for p in params:
        torch.nn.init.normal_(p, std=0.1)  # non-zero B so every adapter gets a gradient
    ids, mask = batch(clf)

    def grads():
        for p in params:
            p.grad = None
        clf.model.features(ids, mask).pow(2).sum().backward()
        return [p.grad.clone() for p in params]

    trimmed, full = with_and_without(clf, grads)
    assert any("mlp" in n for n, p in clf.model.backbone.named_parameters() if p.requires_grad)
    for a, b in zip(trimmed, full):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_other_poolings_and_layer_lists_run_every_position(tiny_llama):
    for options in ({"pooling": "mean"}, {"layers": [1, 2]}):
        clf = llmhead.from_pretrained(tiny_llama, dtype="float32", **options)
        seen = mlp_rows(clf)
        ids, mask = batch(clf)
        with torch.inference_mode():
            clf.model.features(ids, mask)
        assert seen == [tuple(ids.shape) + (32,)]


def test_activation_checkpointing_trains_with_full_blocks(tiny_llama):
    """Recomputation happens outside the forward's context, so checkpointed training keeps the whole block."""
    import warnings

    from conftest import sentiment_rows

    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", mode="lora")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(sentiment_rows(2), epochs=1, gradient_checkpointing=True, warm_start=False, progress=False)
    assert not clf.model.backbone.is_activation_checkpointing  # switched off again after training
    assert not [w for w in caught if "checkpointing" in str(w.message)], [str(w.message) for w in caught]
    assert clf.predict(["a good film"])[0] in ("pos", "neg")


def test_gpt2_block_is_found(tmp_path):
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(n_layer=3, n_embd=16, n_head=2, vocab_size=50))
    assert top_block(model) is model.h[-1]
    model.extra = torch.nn.ModuleList([type(model.h[0])(model.config) for _ in range(3)])  # ambiguous: give up
    assert top_block(model) is None
    path = make_tiny(tmp_path / "m", "qwen2")
    clf = llmhead.from_pretrained(path, dtype="float32")
    assert top_block(clf.model.backbone) is clf.model.backbone.layers[-1]

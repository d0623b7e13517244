"""The head-swapping model on tiny random Llama, Qwen2 and Gemma3 decoders, loaded as users load them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny, sentiment_rows

import llmhead


def fitted(model_path: str, **options):
    clf = llmhead.from_pretrained(model_path, dtype="float32", **options)
    clf.fit(sentiment_rows(), sentiment_rows(1), epochs=3, patience=0)
    return clf


def test_backbone_has_no_lm_head(tiny_model):
    clf = fitted(tiny_model)
    names = [n for n, _ in clf.model.backbone.named_parameters()]
    assert names and not any("lm_head" in n for n in names)
    assert clf.model.backbone.__class__.__name__.endswith("Model")  # AutoModel, not *ForCausalLM


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
def test_padding_side_does_not_change_logits(tiny_model, pooling):
    clf = fitted(tiny_model, pooling=pooling)
    texts = ["short", "a much longer text with many more words in it than the first", "mid length text"]
    clf.tokenizer.padding_side = "right"
    right = clf.logits(texts)
    clf.tokenizer.padding_side = "left"
    left = clf.logits(texts)
    alone = torch.cat([clf.logits([t]) for t in texts])  # no padding at all
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone, right, atol=1e-5, rtol=1e-4)


def test_padding_invariance_when_pad_is_eos(tmp_path):
    """A tokenizer without a pad token gets pad = eos; a real EOS inside the text must still be pooled."""
    path = make_tiny(tmp_path / "nopad", "llama", with_pad=False)
    clf = fitted(path)
    assert clf.extractor.pad_note and "eos" in clf.extractor.pad_note
    eos = clf.tokenizer.eos_token
    texts = [f"ends with eos {eos}", "no eos here at all but longer than the other one"]
    clf.tokenizer.padding_side = "left"
    left = clf.logits(texts)
    clf.tokenizer.padding_side = "right"
    right = clf.logits(texts)
    alone = torch.cat([clf.logits([t]) for t in texts])
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone, right, atol=1e-5, rtol=1e-4)


def test_save_load_is_exact(tiny_model, tmp_path):
    clf = fitted(tiny_model)
    texts = [r["text"] for r in sentiment_rows(1)]
    before = clf.predict_proba(texts)
    clf.save(tmp_path / "saved")
    again = llmhead.load(tmp_path / "saved")
    np.testing.assert_array_equal(again.predict_proba(texts), before)
    assert again.predict(texts) == clf.predict(texts)
    assert again.labels.names == ["neg", "pos"]


def test_head_training_leaves_backbone_unchanged(tiny_llama):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32")
    before = {k: v.clone() for k, v in clf.model.backbone.state_dict().items()}
    clf.fit(sentiment_rows(), epochs=5, patience=0)
    after = clf.model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in clf.model.backbone.parameters())


@pytest.mark.parametrize(
    "task,label,rows",
    [
        ("classification", "label", [{"text": r["text"], "label": r["label"]} for r in sentiment_rows(2)]),
        (
            "multilabel",
            "tags",
            [
                {"text": r["text"], "tags": [r["label"]] + (["film"] if "film" in r["text"] else [])}
                for r in sentiment_rows(2)
            ],
        ),
        (
            "regression",
            "score",
            [{"text": r["text"], "score": 1.5 if r["label"] == "pos" else -2.0} for r in sentiment_rows(2)],
        ),
        (
            "regression",
            ["a", "b"],
            [
                {"text": r["text"], "a": float(len(r["text"])), "b": 3.0 if r["label"] == "pos" else 0.0}
                for r in sentiment_rows(2)
            ],
        ),
    ],
)
def test_each_task_trains_and_loss_falls(tiny_llama, task, label, rows):
    clf = llmhead.from_pretrained(tiny_llama, task=task, dtype="float32", dropout=0.0)
    clf.fit(rows, rows, label=label, epochs=60, lr=3e-3, patience=0, batch_size=8)
    losses = [h["train_loss"] for h in clf.history]
    assert losses[-1] < 0.5 * losses[0], losses
    preds = clf.predict([r["text"] for r in rows])
    assert len(preds) == len(rows)
    metrics = clf.evaluate(rows, label=label)
    if task == "classification":
        assert metrics["accuracy"] == 1.0  # a tiny model overfits sixteen examples
        assert set(preds) <= {"pos", "neg"}
    elif task == "multilabel":
        assert metrics["micro_f1"] > 0.9
        assert clf.predict_proba([rows[0]["text"]]).shape == (1, 3)
    else:
        assert metrics["pearson"] > 0.9
        with pytest.raises(ValueError, match="regression has no probabilities"):
            clf.predict_proba(["x"])


def test_head_stays_float32_on_a_bf16_backbone(tiny_llama):
    clf = llmhead.from_pretrained(tiny_llama, dtype="bfloat16").fit(sentiment_rows(1), epochs=2)
    assert next(clf.model.backbone.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in clf.model.head.parameters())
    assert clf.logits(["some text"]).dtype == torch.float32
    report = llmhead.check(clf)
    assert report["tolerance"] == 5e-2 and report["passed"], report


def test_float32_trained_weights_are_cast_once_per_extraction(tiny_llama):
    """After full fine-tuning the backbone is float32 with gradients on, and prediction runs under bf16 autocast:
    each weight is cast once for all batches, not once per batch."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from llmhead.features.extract import extract

    clf = llmhead.from_pretrained(tiny_llama, dtype="float32")
    weights = {p.data_ptr() for p in clf.model.backbone.parameters() if p.dim() == 2}
    clf.model.backbone.requires_grad_(True)
    casts: list[int] = []

    class Casts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            cast = func in (torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype)
            if cast and isinstance(args[0], torch.Tensor) and args[0].data_ptr() in weights:
                casts.append(args[0].data_ptr())
            return func(*args, **(kwargs or {}))

    ids = clf.tokenizer([f"text number {i} " * (i + 1) for i in range(6)])["input_ids"]
    with Casts():
        extract(clf.model, clf.tokenizer, ids, batch_size=2, dtype=torch.bfloat16, progress=False)
    assert casts, "no weight was cast: the check would pass vacuously"
    assert len(casts) == len(set(casts)), f"{len(casts)} casts of {len(set(casts))} weights over 3 batches"


def test_batch_size_reaches_the_feature_pass(tiny_llama, monkeypatch):
    """fit's and logits' batch_size is the one the frozen feature pass runs with (not the default 32)."""
    from llmhead.features import extractor

    seen, real = [], extractor.extract
    monkeypatch.setattr(
        extractor, "extract", lambda model, tok, ids, bs, *a, **k: seen.append(bs) or real(model, tok, ids, bs, *a, **k)
    )
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32")
    clf.fit(sentiment_rows(1), epochs=1, batch_size=4, progress=False)
    clf.logits(["a new text", "another one"], batch_size=2)
    assert seen and set(seen[:-1]) == {4} and seen[-1] == 2


def test_cross_validation_tokenizes_each_text_once(tiny_llama, monkeypatch):
    """The folds share one FeatureExtractor: each distinct text is tokenized once however many folds read it."""
    from llmhead.features import extractor

    seen = []
    real = extractor.FeatureExtractor.tokenizer.fget

    class Counting:
        def __init__(self, tokenizer):
            self.tokenizer = tokenizer

        def __call__(self, texts, *args, **kwargs):
            seen.extend(texts if isinstance(texts, list) else [texts])
            return self.tokenizer(texts, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.tokenizer, name)

    monkeypatch.setattr(extractor.FeatureExtractor, "tokenizer", property(lambda self: Counting(real(self))))
    rows = sentiment_rows(2)
    result = llmhead.cross_validate(rows, tiny_llama, folds=3, dtype="float32", fit={"epochs": 1})
    assert len(result.folds) == 3
    texts = {r["text"] for r in rows}
    assert set(seen) >= texts and len([t for t in seen if t in texts]) == len(texts)  # no text twice

"""Export to AutoModelForSequenceClassification and the parity check, on Llama, Qwen2 and Gemma3."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sentiment_rows

import llmhead

EXPORTABLE = dict(head_hidden=[], head_bias=False, input_norm="scale", pooling="last", dtype="float32")


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_export_gives_the_same_predictions(tiny_model, tmp_path, task):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = sentiment_rows(2)
    label = "label"
    if task == "multilabel":
        rows = [{"text": r["text"], "tags": [r["label"]] + (["film"] if "film" in r["text"] else [])} for r in rows]
        label = "tags"
    clf = llmhead.from_pretrained(tiny_model, task=task, layer=-1, **EXPORTABLE)
    clf.fit(rows, label=label, epochs=20, patience=0, lr=3e-3)
    folder = clf.export(tmp_path / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.id2label == dict(enumerate(map(str, clf.labels.names)))
    assert (
        model.config.problem_type
        == {"classification": "single_label_classification", "multilabel": "multi_label_classification"}[task]
    )
    texts = [r["text"] for r in rows[:8]]
    with torch.inference_mode():
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        exported = model(**batch).logits
    torch.testing.assert_close(exported, clf.logits(texts), atol=1e-4, rtol=1e-4)
    if task == "classification":
        assert [model.config.id2label[i] for i in exported.argmax(-1).tolist()] == clf.predict(texts)


def test_export_of_a_truncated_model_keeps_k_blocks(tiny_llama, tmp_path):
    from transformers import AutoModelForSequenceClassification

    clf = llmhead.from_pretrained(tiny_llama, layer=1, **EXPORTABLE).fit(sentiment_rows(1), epochs=2)
    model = AutoModelForSequenceClassification.from_pretrained(clf.export(tmp_path / "hf"))
    assert model.config.num_hidden_layers == 1 and len(model.model.layers) == 1
    assert llmhead.check(clf)["checks"]["export_transformers"] < 1e-4


@pytest.mark.parametrize(
    "options,reason",
    [
        ({"head_hidden": [16]}, "hidden layers"),
        ({"head_hidden": [], "head_bias": True}, "has a bias"),
        ({"head_hidden": [], "head_bias": False}, "input_norm='standardize'"),
        ({**EXPORTABLE, "pooling": "mean"}, "pooling='mean'"),
    ],
)
def test_other_heads_get_a_clear_error(tiny_llama, tmp_path, options, reason):
    clf = llmhead.from_pretrained(tiny_llama, **{"dtype": "float32", **options}).fit(sentiment_rows(1), epochs=1)
    with pytest.raises(ValueError, match=reason) as err:
        clf.export(tmp_path / "hf")
    assert "clf.save()" in str(err.value)
    assert not (tmp_path / "hf").exists()


def test_regression_export_is_refused(tiny_llama, tmp_path):
    rows = [{"text": r["text"], "y": float(i)} for i, r in enumerate(sentiment_rows(1))]
    clf = llmhead.from_pretrained(tiny_llama, task="regression", **EXPORTABLE).fit(rows, label="y", epochs=1)
    with pytest.raises(ValueError, match="regression targets"):
        clf.export(tmp_path / "hf")


@pytest.mark.parametrize("exportable", [True, False])
def test_parity_check_passes(tiny_model, exportable):
    options = EXPORTABLE if exportable else {"dtype": "float32", "pooling": "mean", "layers": [1, -1]}
    clf = llmhead.from_pretrained(tiny_model, **options).fit(sentiment_rows(2), epochs=5)
    report = llmhead.check(clf)
    assert report["passed"], report
    checks = report["checks"]
    assert set(checks) == {
        "left_vs_right_padding",
        "one_at_a_time_vs_batched",
        "save_load",
        "merge",
        "export_transformers",
    }
    assert checks["save_load"] == 0.0
    if exportable:
        assert isinstance(checks["export_transformers"], float)
    else:
        assert checks["export_transformers"].startswith("skipped")


def test_parity_check_catches_a_broken_pooling(tiny_llama, monkeypatch):
    """The check must be able to fail: pooling the last position regardless of the mask breaks left padding."""
    from llmhead.model import headmodel as model_module

    clf = llmhead.from_pretrained(tiny_llama, **EXPORTABLE).fit(sentiment_rows(1), epochs=2)
    monkeypatch.setattr(model_module, "pool", lambda hidden, mask, how: hidden[:, -1])
    report = llmhead.check(clf)
    assert not report["passed"]
    assert report["checks"]["left_vs_right_padding"] > 1e-3
    np.testing.assert_equal(report["tolerance"], 1e-4)

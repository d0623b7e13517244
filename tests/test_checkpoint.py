"""Saving never damages what is already there."""

from __future__ import annotations

import pytest
import torch
from conftest import sentiment_rows

import llmhead
from llmhead import checkpoint


def test_refuses_to_overwrite_a_folder_that_is_not_a_model(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=1)
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a saved llmhead model"):
        clf.save(precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_failed_save_keeps_the_previous_model(tiny_llama, tmp_path, monkeypatch):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=1)
    clf.save(tmp_path / "m")
    before = (tmp_path / "m" / "head.safetensors").read_bytes()

    def broken(folder, manifest):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_manifest", broken)
    clf.fit(sentiment_rows(1), epochs=2, lr=0.1)
    with pytest.raises(OSError, match="disk full"):
        clf.save(tmp_path / "m")
    assert (tmp_path / "m" / "head.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folders left behind
    assert llmhead.load(tmp_path / "m").labels.names == ["neg", "pos"]


def test_non_finite_weights_are_never_saved(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=1)
    with torch.no_grad():
        clf._model.head.mlp[-1].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        clf.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_load_refuses_different_backbone_weights(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=1)
    clf.save(tmp_path / "m")
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "llama-copy"
    import shutil

    shutil.copytree(tiny_llama, weights)
    state = load_file(weights / "model.safetensors")
    key = next(k for k in state if "embed_tokens" in k)
    state[key] = state[key] + 1.0
    save_file(state, weights / "model.safetensors", metadata={"format": "pt"})
    manifest = (tmp_path / "m" / "llmhead.json").read_text().replace(tiny_llama, str(weights))
    (tmp_path / "m" / "llmhead.json").write_text(manifest)
    with pytest.raises(ValueError, match="differ from those this classifier was trained on"):
        llmhead.load(tmp_path / "m")

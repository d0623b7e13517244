"""``llmhead.check(clf)`` measures a classifier; it must leave it as it was: a LoRA classifier checked and then
saved still saves its adapters (not a merged full backbone), and predicts exactly as before the check."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CORPUS, sentiment_rows

import llmhead


def saved_files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def saved_as(folder) -> str:
    return json.loads((folder / "llmhead.json").read_text())["backbone"]["saved_as"]


@pytest.mark.parametrize(
    "head",
    [{}, {"head_hidden": [], "head_bias": False, "input_norm": "scale"}],
    ids=["mlp-head", "exportable-head"],  # the second one also runs check's export to transformers
)
def test_check_leaves_a_lora_classifier_as_it_was(tiny_llama, tmp_path, head):
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4, **head)
    clf.fit(sentiment_rows(2), epochs=1, batch_size=4, lr=1e-2, warm_start=False, progress=False)
    before = clf.logits(CORPUS)
    clf.save(tmp_path / "before")
    report = llmhead.check(clf)
    assert report["passed"], report
    clf.save(tmp_path / "after")
    assert saved_as(tmp_path / "before") == "adapter"
    assert saved_as(tmp_path / "after") == "adapter", "check() changed what clf.save() writes"
    assert saved_files(tmp_path / "after") == saved_files(tmp_path / "before")
    torch.testing.assert_close(clf.logits(CORPUS), before, atol=0, rtol=0, msg="check() changed clf's predictions")
    reloaded = llmhead.load(tmp_path / "after")
    torch.testing.assert_close(reloaded.logits(CORPUS), before, atol=0, rtol=0)

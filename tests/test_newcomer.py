"""What a newcomer trips over (issue 20): a template that survives export, files others can read, an unknown model
named at once, predict's edge cases, useful reprs."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from conftest import sentiment_rows

import llmhead

EXPORTABLE = dict(head_hidden=[], head_bias=False, input_norm="scale", dtype="float32")
TEMPLATE = "Review: {text}\nSentiment:"


@pytest.fixture(scope="module")
def templated(tiny_llama):
    """A fitted, exportable head on a template, as every README example has."""
    return llmhead.from_pretrained(tiny_llama, template=TEMPLATE, **EXPORTABLE).fit(sentiment_rows(1), epochs=3)


def test_export_keeps_the_template_and_the_parity_check_compares_like_with_like(templated, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from llmhead.io.export import templated_inputs

    folder = templated.export(tmp_path / "hf")
    texts = ["a fine film", "dull and slow", "it was great fun"]
    inputs = templated_inputs(folder, texts)
    assert inputs == [TEMPLATE.replace("{text}", t) for t in texts]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        exported = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits for t in inputs])
        raw = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits for t in texts])
    torch.testing.assert_close(exported, templated.logits(texts), atol=1e-4, rtol=1e-4)
    assert (raw - exported).abs().max() > 1e-3  # without the template the exported model would answer differently
    report = llmhead.check(templated)
    assert report["passed"] and report["checks"]["export_transformers"] < 1e-4, report


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_saves_and_exports_honour_the_umask(templated, tmp_path, mask):
    """safetensors writes 0600 and temporary folders are 0700: a save must give the permissions of any new file."""
    previous = os.umask(mask)
    try:
        saved = templated.save(tmp_path / "model")
        exported = templated.export(tmp_path / "hf")
        headmodel = templated.model.save_pretrained(tmp_path / "headmodel")
    finally:
        os.umask(previous)
    for folder in (saved, exported, headmodel):
        for path in [folder, *folder.rglob("*")]:
            want = (0o777 if path.is_dir() else 0o666) & ~mask
            assert stat.S_IMODE(path.stat().st_mode) == want, (path, oct(path.stat().st_mode))

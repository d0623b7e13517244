"""What a newcomer trips over (issue 20): a template that survives export, files others can read, an unknown model
named at once, predict's edge cases, useful reprs."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from conftest import sentiment_rows

import llmhead

EXPORTABLE = dict(head_hidden=[], head_bias=False, input_norm="scale", pooling="last", dtype="float32")
TEMPLATE = "Review: {text}\nSentiment:"


@pytest.fixture(scope="module")
def templated(tiny_llama):
    """A fitted, exportable head on a template, as every README example has."""
    return llmhead.from_pretrained(tiny_llama, template=TEMPLATE, **EXPORTABLE).fit(sentiment_rows(1), epochs=3)


def test_export_keeps_the_template_and_the_parity_check_compares_like_with_like(templated, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = templated.export(tmp_path / "hf")
    texts = ["a fine film", "dull and slow", "it was great fun"]
    inputs = llmhead.templated_inputs(folder, texts)
    assert inputs == [TEMPLATE.replace("{text}", t) for t in texts]
    assert llmhead.templated_inputs(folder, [("a", "b")]) == [TEMPLATE.replace("{text}", "a\nb")]  # pairs joined
    assert AutoTokenizer.from_pretrained(folder).model_max_length == templated.config.max_length
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
def test_saves_exports_checkpoints_and_caches_honour_the_umask(templated, tiny_llama, tmp_path, mask):
    """safetensors writes 0600 and temporary folders are 0700: what llmhead writes gets the permissions of any new
    file, and the user's own files beside it keep theirs."""
    mine = tmp_path / "headmodel"
    mine.mkdir()
    (mine / "run.sh").write_text("#!/bin/sh\n")
    (mine / "run.sh").chmod(0o755)
    (mine / "key").write_text("secret")
    (mine / "key").chmod(0o600)
    previous = os.umask(mask)
    try:
        saved = templated.save(tmp_path / "model")
        exported = templated.export(tmp_path / "hf")
        templated.model.save_pretrained(mine)
        lora = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", head_hidden=[])
        lora.fit(sentiment_rows(1), epochs=1, run_dir=str(tmp_path / "run"), checkpoint_every=1, progress=False)
        cache = tmp_path / "features"
        llmhead.from_pretrained(tiny_llama, dtype="float32").fit(
            sentiment_rows(1), epochs=1, feature_cache=str(cache), progress=False
        )
    finally:
        os.umask(previous)
    written = [saved, exported, mine / "backbone", mine / "head.safetensors", tmp_path / "run" / "checkpoints", cache]
    for top in written:
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            want = (0o777 if path.is_dir() else 0o666) & ~mask
            assert stat.S_IMODE(path.stat().st_mode) == want, (path, oct(path.stat().st_mode))
    assert stat.S_IMODE((mine / "run.sh").stat().st_mode) == 0o755  # not ours: left as it was
    assert stat.S_IMODE((mine / "key").stat().st_mode) == 0o600


def test_an_unknown_name_is_refused_at_once_when_the_hub_cannot_be_reached(monkeypatch):
    """Not an alias, not a path, and the hub unreachable (a closed local port stands for no network): one quick
    request, then an error naming the id and the built-in aliases, instead of retries and a generic hub error."""
    import huggingface_hub.constants

    from llmhead.model import backbone as bb

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(bb.HubModelError) as err:
        llmhead.from_pretrained("qwen2.5-0.5b")
    message = str(err.value)
    assert "'qwen2.5-0.5b' is not a built-in alias" in message and "cannot be reached" in message
    assert "Built-in aliases: smollm2-135m, gemma3-270m" in message


def test_predict_edge_cases(templated, tiny_llama):
    """Nothing to predict gives an empty result without loading weights; an empty text is predicted like any other
    (the template gives it tokens); a text that gives the model no token at all is refused naming its row."""
    assert templated.predict([]) == [] and templated.predict_proba([]).shape == (0, 2)
    assert templated.logits([]).shape == (0, 2)
    both = templated.predict(["", "a fine film"])
    assert both == [templated.predict([""])[0], templated.predict(["a fine film"])[0]]
    plain = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=1, progress=False)
    with pytest.raises(llmhead.DataError, match=r"give the model no token at all \(rows \[2\]"):
        plain.predict(["a fine film", ""])
    import pandas as pd

    assert templated.predict(pd.DataFrame({"text": []})) == templated.predict({"text": []}) == []
    scored = templated.evaluate([{"text": "", "label": "pos"}, {"text": "a fine film", "label": "pos"}])
    assert scored["n"] == 2  # evaluate predicts an empty text as predict does


def test_reprs_say_what_a_classifier_is(tiny_llama, templated):
    fresh = llmhead.from_pretrained(tiny_llama, mode="probe")
    assert repr(fresh) == f"Classifier(model={tiny_llama!r}, mode='probe', task='classification'; not fitted; " + (
        "weights not loaded yet)"
    )
    assert "mode='head'" in repr(templated) and "fitted, labels ['neg', 'pos']; weights loaded" in repr(templated)


def test_a_fit_ends_with_one_summary_line_and_quiet_means_quiet(tiny_llama, capsys, caplog, monkeypatch):
    """A line after each fit (mode, sizes, best evaluation, time); small predictions print nothing; transformers'
    load report of the unused LM head is dropped; progress=False and LLMHEAD_QUIET=1 silence everything."""
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=2)
    clf.predict(["a fine film", "a dull one"])
    err = capsys.readouterr().err
    assert err.count("fit: mode=head, 7 training examples, 1 validation; best at epoch") == 1, err
    assert "features" not in err and "Loading weights" not in err, err
    assert not [r for r in caplog.records if "LOAD REPORT" in str(r.msg)]  # the checkpoint's LM head is expected
    from llmhead import progress

    monkeypatch.setattr(progress, "DELAY", 0)  # every bar shows at once: what the quiet switches hide
    llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=2)
    assert "head:" in capsys.readouterr().err
    llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=2, progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("LLMHEAD_QUIET", "1")
    llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=2)
    assert capsys.readouterr().err == ""


def test_threads_apply_inside_fit_and_predict_and_are_put_back(tiny_llama, monkeypatch):
    seen = []
    before = torch.get_num_threads()
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", threads=1)
    from llmhead.strategies.frozen import FrozenHead

    original = FrozenHead.fit
    monkeypatch.setattr(FrozenHead, "fit", lambda self, *a: seen.append(torch.get_num_threads()) or original(self, *a))
    clf.fit(sentiment_rows(1), epochs=1, progress=False)
    assert seen == [1] and torch.get_num_threads() == before
    from llmhead.strategies.base import Strategy

    original_logits = Strategy.logits
    monkeypatch.setattr(
        Strategy, "logits", lambda self, *a: seen.append(torch.get_num_threads()) or original_logits(self, *a)
    )
    clf.predict(["a fine film"])
    assert seen == [1, 1] and torch.get_num_threads() == before
    assert llmhead.from_pretrained(tiny_llama, dtype="float32", threads=1).fit(sentiment_rows(1), epochs=1).config
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        llmhead.from_pretrained(tiny_llama, threads=0)

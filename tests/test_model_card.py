"""The model card every save writes (README.md): Hugging Face's format, kept up to date by re-saves, never sealed."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from conftest import sentiment_rows

import llmhead
from llmhead.io.card import HUB_METRICS
from llmhead.io.save import CARD


def front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    pd.DataFrame(sentiment_rows(3)).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(sentiment_rows(1)).to_csv(folder / "test.csv", index=False)
    return folder


def test_every_save_writes_a_card_in_the_hub_format_and_a_resave_updates_it(tiny_llama, data, tmp_path):
    from huggingface_hub import ModelCard

    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", template="Review: {text}")
    clf.fit(data / "train.csv", epochs=2, progress=False)
    folder = clf.save(tmp_path / "sentiment")
    meta, body = front_matter((folder / CARD).read_text())
    assert meta["library_name"] == "llmhead" and meta["pipeline_tag"] == "text-classification"
    assert "base_model" not in meta  # a local folder is no hub id
    assert {"llmhead", "head", "classification"} <= set(meta["tags"]) and "model-index" not in meta
    assert "`neg`, `pos`" in body and "train.csv: 22 examples (2 more held out for validation)" in body
    assert "template: 'Review: {text}'" in body and "epochs: 2" in body and "lora_r" not in body  # what acts
    assert "llmhead.load('sentiment')" in body and "None measured yet" in body
    assert str(data) not in body  # a card is meant to be shared: data files by name only

    metrics = clf.evaluate(data / "test.csv")
    clf.save(folder)  # re-saving records the evaluation
    text = (folder / CARD).read_text()
    meta, body = front_matter(text)
    (entry,) = meta["model-index"]
    assert entry["name"] == "sentiment" and entry["results"][0]["dataset"]["name"] == "test.csv"
    values = {m["name"]: m["value"] for m in entry["results"][0]["metrics"]}
    expected = {HUB_METRICS[k][1]: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
    assert values == expected and {"Accuracy", "Macro F1", "Expected calibration error"} <= set(values)
    # huggingface_hub reads it back as the same evaluation results
    card = ModelCard(text)
    assert card.data.library_name == "llmhead" and card.data.model_name == "sentiment"
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == values
    assert "On `test.csv` (8 examples)" in body
    assert clf.calibration is None or "Probabilities are " in body  # calibrated, or why not

    loaded = llmhead.load(folder)  # what describes the model survives a load and a re-save
    assert loaded.metrics == clf.metrics and loaded.trained_on == clf.trained_on
    loaded.save(tmp_path / "copy")
    copied = front_matter((tmp_path / "copy" / CARD).read_text())[0]["model-index"][0]
    assert copied["name"] == "copy" and copied["results"] == entry["results"]


def test_an_edited_card_is_kept_and_never_stops_a_load(tiny_llama, tmp_path, caplog):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(1), epochs=1, progress=False)
    folder = clf.save(tmp_path / "m")
    (folder / CARD).write_text("---\nlicense: mit\n---\n# My model\nWritten by hand.\n")
    assert llmhead.load(folder).predict(["a fine film"]) == clf.predict(["a fine film"])  # the card is not sealed
    clf.save(folder)
    assert (folder / CARD).read_text().endswith("Written by hand.\n") and "kept as it is" in caplog.text
    (folder / CARD).unlink()  # deleting it asks for a new one
    clf.save(folder)
    assert front_matter((folder / CARD).read_text())[0]["library_name"] == "llmhead"


def test_a_recipe_on_a_packaged_corpus_names_its_splits_in_the_card(tiny_llama, tmp_path, monkeypatch):
    import datasets

    from llmhead.cli import recipe

    split = {k: [r[k] for r in sentiment_rows(2)] for k in ("text", "label")}
    corpus = datasets.DatasetDict({s: datasets.Dataset.from_dict(split) for s in ("train", "validation", "test")})
    monkeypatch.setitem(recipe.CORPORA, "rotten_tomatoes", lambda: corpus)
    raw = recipe.read_raw(None, [f"model.model={tiny_llama}", "model.dtype=float32", f"output_dir={tmp_path}"])
    raw["data"] = {"dataset": "rotten_tomatoes"}
    raw["train"] = {"epochs": 1, "progress": False}
    result = recipe.train(raw)
    meta, body = front_matter((tmp_path / "model" / CARD).read_text())
    (entry,) = meta["model-index"][0]["results"]
    assert entry["dataset"]["name"] == "rotten_tomatoes (test split)"
    assert entry["metrics"][0]["value"] == round(result["test"]["accuracy"], 4)
    assert "rotten_tomatoes (train split): 16 examples" in body and "rotten_tomatoes (validation split): 16" in body


def test_regression_and_packaged_base_cards(tiny_llama, tmp_path):
    from llmhead.io.card import base_model, render

    rows = [{"text": r["text"], "score": float(i % 5)} for i, r in enumerate(sentiment_rows(1))]
    clf = llmhead.from_pretrained(tiny_llama, task="regression", dtype="float32")
    clf.fit(rows, label="score", epochs=1, progress=False).evaluate(rows, label="score")
    meta, body = front_matter((clf.save(tmp_path / "r") / CARD).read_text())
    assert meta["pipeline_tag"] == "text-classification" and "regression" in meta["tags"]
    types = {m["type"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert {"mse", "mae"} <= types and "predict_proba" not in body and "--proba" not in body
    assert base_model({"source": "smollm2-135m", "kind": "alias"}) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_model({"source": "Qwen/Qwen2.5-0.5B", "kind": "pretrained"}) == "Qwen/Qwen2.5-0.5B"
    manifest = {**yaml.safe_load("{}"), "model": {"mode": "head"}, "labels": {"task": "classification", "names": []}}
    manifest["backbone"] = {"source": "smollm2-135m", "kind": "alias"}
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in render(manifest, "m")

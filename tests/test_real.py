"""Integration on real weights and real data: the packaged SmolLM2 (its first 8 real blocks, for speed)
on Rotten Tomatoes, kaomoji and VADER tweets, and the GGUF conversion cache on the full model."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import llmhead
from llmhead.data import corpora
from llmhead.model import backbone

pytestmark = pytest.mark.real
ROOT = Path(__file__).resolve().parents[1]


def subset(split, n: int, seed: int = 0):
    return split.shuffle(seed=seed).select(range(min(n, len(split))))


def test_classification_on_rotten_tomatoes(tmp_path):
    """The whole packaged model, through its alias, as users call it."""
    data = corpora.rotten_tomatoes()
    train, test = subset(data["train"], 600), subset(data["test"], 300)
    clf = llmhead.from_pretrained("smollm2-135m", template="Review: {text}\nSentiment:")
    clf.fit(train, epochs=40)
    metrics = clf.evaluate(test)
    print({k: v for k, v in metrics.items() if not isinstance(v, dict)})
    majority = max(np.mean(np.array(test["label"]) == c) for c in ("fresh", "rotten"))
    assert metrics["accuracy"] > majority + 0.2, (metrics["accuracy"], majority)
    assert set(metrics["per_class"]) == {"fresh", "rotten"}
    clf.save(tmp_path / "m")
    again = llmhead.load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict_proba(test["text"][:50]), clf.predict_proba(test["text"][:50]))


def test_multilabel_on_kaomoji(smollm2_8layers):
    data = corpora.kaomoji()
    train, test = subset(data["train"], 800), subset(data["test"], 300)
    clf = llmhead.from_pretrained(smollm2_8layers, task="multilabel", dtype="float32")
    clf.fit(train, label="labels", epochs=40)
    metrics = clf.evaluate(test, label="labels")
    print({k: v for k, v in metrics.items() if not isinstance(v, dict)})
    # Always predicting the most frequent tag set scores the same micro-F1 as the prior; beat it clearly.
    names = clf.labels.names
    truth = np.array([[n in row for n in names] for row in test["labels"]])
    prior = truth.mean(0) >= 0.5
    baseline = (2 * (truth & prior).sum()) / (truth.sum() + prior.sum() * len(truth))
    assert metrics["micro_f1"] > baseline + 0.1, (metrics["micro_f1"], baseline)
    assert all(isinstance(p, list) for p in clf.predict(test["text"][:5]))


def test_regression_on_vader_tweets(smollm2_8layers):
    data = corpora.vader_tweets()
    train, test = subset(data["train"], 800), subset(data["test"], 300)
    clf = llmhead.from_pretrained(smollm2_8layers, task="regression", dtype="float32")
    clf.fit(train, label="rating", epochs=40)
    metrics = clf.evaluate(test, label="rating")
    print({k: v for k, v in metrics.items() if not isinstance(v, dict)})
    assert metrics["pearson"] > 0.4, metrics
    mean_baseline = float(np.mean((np.array(test["rating"]) - np.mean(train["rating"])) ** 2))
    assert metrics["mse"] < mean_baseline, (metrics["mse"], mean_baseline)
    preds = clf.predict(test["text"][:3])
    assert all(isinstance(p, float) and -6 < p < 6 for p in preds)


def test_gguf_conversion_is_cached_and_exact(monkeypatch):
    """The converted safetensors model gives the GGUF model's hidden states, and later loads skip conversion."""
    from transformers import AutoModel

    source = backbone.resolve("smollm2-135m")
    converted = source.pretrained_path()
    monkeypatch.setattr(backbone, "convert_gguf", lambda *_: pytest.fail("converted twice"))
    assert llmhead.from_pretrained("smollm2-135m").source.pretrained_path() == converted
    monkeypatch.undo()

    start = time.perf_counter()
    fast = backbone.load_backbone(source, "float32")
    load_s = time.perf_counter() - start
    gguf = AutoModel.from_pretrained(str(source.gguf.parent), gguf_file=source.gguf.name, dtype=torch.float32)
    ids = torch.tensor([[1, 420, 3, 9000, 77]])
    with torch.inference_mode():
        torch.testing.assert_close(fast(ids).last_hidden_state, gguf(ids).last_hidden_state, atol=0, rtol=0)
    assert not any("lm_head" in n for n, _ in fast.named_parameters())
    print(f"load from the safetensors cache: {load_s:.2f} s")


def test_readme_examples_run(tmp_path, monkeypatch):
    """The quick start (on a train.csv and test.csv of real snippets, as a user brings them) and the first Python
    example of README.md, executed as written."""
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    data = corpora.rotten_tomatoes()
    subset(data["train"], 80).to_pandas()[["text", "label"]].to_csv("train.csv", index=False)  # small: it runs
    subset(data["test"], 40).to_pandas()[["text", "label"]].to_csv("test.csv", index=False)  # as written
    assert list(pd.read_csv("train.csv").columns) == ["text", "label"]
    readme = (ROOT / "README.md").read_text()
    quick_start, example = re.findall(r"```python\n(.*?)```", readme, re.S)[:2]
    assert 'clf.fit("train.csv")' in quick_start and "corpora.rotten_tomatoes()" in example
    for code in (quick_start, example):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert llmhead.load("my_model").predict(["A moving, funny triumph."])[0] in ("fresh", "rotten")


def test_gemma3_alias_pads_left_and_pools_the_same(tmp_path):
    """The second packaged family: its tokenizer pads on the left and prepends BOS; logits do not
    depend on the padding side or on batching."""
    from conftest import sentiment_rows

    clf = llmhead.from_pretrained("gemma3-270m", dtype="float32")
    tok = clf.tokenizer
    assert tok.padding_side == "left" and tok("hello")["input_ids"][0] == tok.bos_token_id
    clf.fit(sentiment_rows(2), epochs=3, patience=0)
    texts = ["short", "a considerably longer text, with commas and several more words", "mid length text"]
    left = clf.logits(texts)
    tok.padding_side = "right"
    right = clf.logits(texts)
    alone = torch.cat([clf.logits([t]) for t in texts])
    torch.testing.assert_close(left, right, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(alone, left, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "options",
    [
        {"layer": 18},
        {"layer": 18, "pooling": "mean"},
        {"layer": 18, "pooling": "max"},
        {"layer": 18, "pooling": "attention"},
        {"layers": [12, 18]},
        {"layers": [12, 18], "layer_mix": "weighted"},
    ],
    ids=[
        "layer18-last",
        "layer18-mean",
        "layer18-max",
        "layer18-attention",
        "layers12+18-concat",
        "layers12+18-weighted",
    ],
)
def test_pooling_and_layer_choices_on_real_data(options):
    """Each pooling mode and layer setting trains and predicts on the packaged SmolLM2, truncated to 18 of
    its 30 blocks as the option asks."""
    data = corpora.rotten_tomatoes()
    train, test = subset(data["train"], 400), subset(data["test"], 200)
    clf = llmhead.from_pretrained("smollm2-135m", template="Review: {text}\nSentiment:", **options)
    clf.fit(train, epochs=40)
    assert len(clf.model.backbone.layers) == 18
    metrics = clf.evaluate(test)
    print(options, {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    assert metrics["accuracy"] > 0.6, metrics  # chance is 0.5; 0.6 is ~3 standard errors above it at n=200


@pytest.fixture(scope="module")
def rt_small():
    data = corpora.rotten_tomatoes()
    return subset(data["train"], 500), data["test"]


def test_probe_on_500_examples_beats_tfidf(rt_small, tmp_path_factory):
    """The playbook's < 1,000-example route: frozen features + logistic regression, vs TF-IDF on the same 500."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, test = rt_small
    cache = str(tmp_path_factory.getbasetemp() / "rt-features")
    probe = llmhead.from_pretrained("smollm2-135m", mode="probe", template="Review: {text}\nSentiment:")
    probe.fit(train, feature_cache=cache, progress=False)
    accuracy = probe.evaluate(test, cache=True)["accuracy"]  # the test features kept for the hybrid test below
    vectorizer = TfidfVectorizer().fit(train["text"])
    tfidf = LogisticRegression(max_iter=2000).fit(vectorizer.transform(train["text"]), train["label"])
    baseline = float(np.mean(tfidf.predict(vectorizer.transform(test["text"])) == np.array(test["label"])))
    print(f"probe {accuracy:.4f} vs TF-IDF {baseline:.4f} on {len(test)} test snippets")
    # bf16 rounding moves this by about a point: 0.803 with SDPA's attention kernel, 0.793 with llmhead's
    # (both 1.6% from float32 features), through the cross-validated choice of C.
    assert accuracy >= 0.78 and accuracy > baseline + 0.1


def test_hybrid_on_500_examples_matches_the_probe_and_beats_the_baseline(rt_small, tmp_path_factory):
    """Frozen features and TF-IDF in one linear model against the probe alone (the features cached by the test
    above): level with it, within one standard error of an accuracy on 973 snippets (~0.012); and
    evaluate(baseline=True)'s TF-IDF baseline trained on the same 500 snippets, well below."""
    train, test = rt_small
    cache = str(tmp_path_factory.getbasetemp() / "rt-features")
    scores = {}
    for mode in ("probe", "hybrid"):
        clf = llmhead.from_pretrained("smollm2-135m", mode=mode, template="Review: {text}\nSentiment:")
        clf.fit(train, feature_cache=cache, progress=False)
        scores[mode] = clf.evaluate(test, baseline=mode == "hybrid", cache=True)  # the test features once
    hybrid, probe = scores["hybrid"]["accuracy"], scores["probe"]["accuracy"]
    baseline = scores["hybrid"]["baseline"]["accuracy"]
    print(f"hybrid {hybrid:.4f}, probe {probe:.4f}, TF-IDF baseline {baseline:.4f} on {len(test)} test snippets")
    # measured here: 0.8284, 0.8314 and 0.6249 (with the last token of the final output: 0.8078, 0.7986)
    assert hybrid >= probe - 0.012 and scores["hybrid"]["over_baseline"]["accuracy"] > 0.1


def test_verbalizer_head_is_above_chance_before_training(rt_small, tmp_path_factory):
    train, test = rt_small
    clf = llmhead.from_pretrained(
        "smollm2-135m",
        mode="lmhead",
        template="Review: {text}\nSentiment:",
        verbalizers={"fresh": "positive", "rotten": "negative"},
    )
    clf.fit(train, epochs=0, feature_cache=str(tmp_path_factory.getbasetemp() / "rt-features"), progress=False)
    accuracy = clf.evaluate(test)["accuracy"]
    print(f"zero-shot verbalizer head: {accuracy:.4f}")
    assert accuracy > 0.65


def test_icl_with_calibration_beats_the_majority_class(rt_small):
    train, test = rt_small
    test = subset(test, 300)
    clf = llmhead.from_pretrained(
        "smollm2-135m",
        mode="icl",
        icl_shots=8,
        icl_template="Review: {text}\nSentiment: {label}",
        verbalizers={"fresh": "positive", "rotten": "negative"},
    )
    clf.fit(train, progress=False)
    accuracy = clf.evaluate(test)["accuracy"]
    majority = max(np.mean(np.array(test["label"]) == c) for c in ("fresh", "rotten"))
    print(f"icl 8/class + calibration: {accuracy:.4f}, majority {majority:.4f}, {clf.history}")
    assert accuracy >= majority + 0.10


def test_temperature_scaling_on_rotten_tomatoes(tmp_path):
    """Temperature scaling on real features: the validation ECE falls, predictions (so accuracy) do not change, a
    save keeps the calibration bit for bit, and the evaluation's report renders in Chromium with every picture."""
    from browser import rendered

    data = corpora.rotten_tomatoes()
    train, val, test = subset(data["train"], 300), subset(data["validation"], 200), subset(data["test"], 100)
    # A linear head on block 8: overconfident here (T ~ 1.9). The default MLP head, stopped early on this same
    # validation loss, is already near its best temperature (T ~ 0.7; the ECE then moves within its noise).
    clf = llmhead.from_pretrained("smollm2-135m", layer=8, head_hidden=[], template="Review: {text}\nSentiment:")
    clf.fit(train, val, epochs=40, progress=False)
    cal = clf.calibration
    print(cal)
    assert cal["method"] == "temperature" and cal["examples"] == 200
    assert cal["val_ece_after"] < cal["val_ece_before"] and cal["val_nll_after"] <= cal["val_nll_before"]
    texts = list(test["text"])
    raw = clf.labels.probabilities(clf.logits(texts), calibrated=False)
    names = np.array(clf.labels.names)
    assert clf.predict(texts) == names[raw.argmax(1)].tolist()
    metrics = clf.evaluate(test, report=tmp_path / "report")
    print({k: v for k, v in metrics.items() if not isinstance(v, dict)})
    assert metrics["accuracy"] == pytest.approx(np.mean(names[raw.argmax(1)] == np.array(test["label"])))
    clf.save(tmp_path / "m")
    again = llmhead.load(tmp_path / "m")
    assert again.calibration == cal
    np.testing.assert_array_equal(again.predict_proba(texts), clf.predict_proba(texts))
    record, _ = rendered(tmp_path / "report" / "report.html")
    assert record["images"] == record["loaded"] == 7 and record["broken"] == []


def test_default_features_read_a_long_article_better_than_its_last_token():
    """The frozen modes' default features (last token and mean side by side, 3/4 of the depth) against the earlier
    default (the last token of the final output) on BBC News, where the last token is the weakest summary
    (benchmarks/head_features.py: 0.955 against 0.885 on 500 articles): the same 200 training and 200 test articles,
    cut at 128 tokens, one head each; and the default runs 23 of the 30 blocks."""
    data = corpora.bbc_news()
    train, test = subset(data["train"], 200), subset(data["test"], 200)
    scores = {}
    for name, options in (("default", {}), ("last token, final output", {"pooling": "last", "layer": -1})):
        clf = llmhead.from_pretrained("smollm2-135m", max_length=128, **options)
        clf.fit(train, progress=False)
        scores[name] = clf.evaluate(test)["accuracy"]
        if name == "default":
            assert len(clf.model.backbone.layers) == 23
    print(scores)
    assert scores["default"] > scores["last token, final output"] + 0.05, scores

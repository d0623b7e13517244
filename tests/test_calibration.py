"""Calibrated probabilities (llmhead/calibration.py): the fits against brute force and scikit-learn, the options
refused where they mean nothing, predictions unchanged, multilabel decisions consistent with the calibrated
probabilities, and save -> load exact. On the packaged SmolLM2: tests/test_real.py -k temperature_scaling.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CORPUS, sentiment_rows

import llmhead
from llmhead import calibration, metrics
from llmhead.model import loading  # noqa: F401  (imported before no_model_load patches what it imports by name)

FIT = dict(epochs=30, lr=1e-2, batch_size=8, progress=False)


def noisy(rows: list[dict], every: int = 4) -> list[dict]:
    """Every ``every``-th label flipped: a validation set that no model classifies without errors."""
    flip = {"pos": "neg", "neg": "pos"}
    return [{**r, "label": flip[r["label"]] if i % every == 0 else r["label"]} for i, r in enumerate(rows)]


def tags(n_repeat: int, noise: bool = False) -> list[dict]:
    """Multilabel rows: 'positive' for the upbeat sentences, 'film' for those about a film or a script."""
    rows = []
    for i in range(n_repeat):
        for j, text in enumerate(CORPUS):
            labels = (["positive"] if j % 2 == 0 else []) + (["film"] if j < 4 else [])
            if noise and (i + j) % 5 == 0:
                labels = [t for t in ("positive", "film") if t not in labels]  # wrong on both labels
            rows.append({"text": text, "labels": labels})
    return rows


def test_temperature_minimises_nll_and_keeps_the_argmax():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(500, 3)) * 2
    p = np.exp(true) / np.exp(true).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])  # drawn from softmax(true)
    z = 3 * true  # a model three times too confident: T = 3 undoes it
    record = calibration.fit("temperature", torch.tensor(z, dtype=torch.float32), torch.tensor(y))
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    best = grid[np.argmin([calibration._nll(1 / t, z.astype(np.float32).astype(np.float64), y) for t in grid])]
    assert record["temperature"] == pytest.approx(best, rel=2e-3)
    assert record["temperature"] == pytest.approx(3, rel=0.15)
    assert record["val_nll_after"] < record["val_nll_before"] and record["val_ece_after"] < record["val_ece_before"]


def test_platt_matches_scikit_learn():
    from sklearn.calibration import _sigmoid_calibration

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 2)) * 3
    y = (rng.random((300, 2)) < 1 / (1 + np.exp(-0.4 * z - 0.5))).astype(float)
    record = calibration.fit("platt", torch.tensor(z, dtype=torch.float32), torch.tensor(y))
    for k in range(2):
        a, b = _sigmoid_calibration(z[:, k].astype(np.float32).astype(np.float64), y[:, k])  # p = 1 / (1 + e^(a z + b))
        assert record["a"][k] == pytest.approx(-a, abs=2e-3) and record["b"][k] == pytest.approx(-b, abs=2e-3)
    assert record["val_ece_after"] < record["val_ece_before"]


def test_what_cannot_be_fitted_says_why():
    z = torch.tensor([[2.0, -1.0], [-1.0, 3.0]] * 15)
    assert "classified correctly" in calibration.fit("temperature", z, torch.tensor([0, 1] * 15))["reason"]
    assert "has 4 examples" in calibration.fit("temperature", z[:4], torch.tensor([1, 1, 0, 0]))["reason"]
    record = calibration.fit("platt", z, torch.tensor([[1.0, 0.0], [0.0, 0.0]] * 15))
    assert record["unfitted"] == [1] and (record["a"][1], record["b"][1]) == (1.0, 0.0)  # no positive to fit


def test_ece_and_brier_are_scikit_learns():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    rng = np.random.default_rng(2)
    p, y = rng.random(500), (rng.random(500) < 0.5).astype(int)
    frequency, confidence = calibration_curve(y, p, n_bins=metrics.ECE_BINS)
    bins = metrics.reliability_bins(p, y)
    np.testing.assert_allclose(bins["frequency"], frequency)
    np.testing.assert_allclose(bins["confidence"], confidence)
    assert bins["ece"] == pytest.approx(np.sum(bins["count"] * np.abs(frequency - confidence)) / 500)
    proba = np.stack([1 - p, p], 1)
    assert metrics.brier("classification", proba, y) == pytest.approx(brier_score_loss(y, p))


@pytest.mark.parametrize(
    ("task", "calibrate", "says"),
    [
        ("classification", "platt", "would change which class wins"),
        ("multilabel", "temperature", "one temperature for every label"),
        ("regression", "temperature", "predicts values, not probabilities"),
    ],
)
def test_a_method_the_task_cannot_use_is_refused_before_loading(tiny_llama, no_model_load, task, calibrate, says):
    clf = llmhead.from_pretrained(tiny_llama, task=task)
    with pytest.raises(ValueError, match=says):
        clf.fit([{"text": "a", "label": 1.0}] * 4, calibrate=calibrate)


@pytest.mark.parametrize("mode", ["probe", "icl"])
def test_modes_without_a_validation_split_refuse_calibrate(tiny_llama, no_model_load, mode):
    clf = llmhead.from_pretrained(tiny_llama, mode=mode)
    with pytest.raises(ValueError, match=f"calibrate is not used by mode='{mode}'"):
        clf.fit(sentiment_rows(2), calibrate="none")


def test_temperature_changes_probabilities_not_predictions_and_survives_save(tiny_llama, tmp_path):
    train, val, test = sentiment_rows(4), noisy(sentiment_rows(3)), [r["text"] for r in sentiment_rows(1)]
    plain = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(train, val, calibrate="none", **FIT)
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(train, val, **FIT)
    cal = clf.calibration
    assert plain.calibration is None and cal["method"] == "temperature" and cal["examples"] == 24
    assert cal["val_nll_after"] <= cal["val_nll_before"]
    torch.testing.assert_close(clf.logits(test), plain.logits(test), rtol=0, atol=0)  # the same head
    assert clf.predict(test) == plain.predict(test)
    assert not np.allclose(clf.predict_proba(test), plain.predict_proba(test))
    expected = torch.softmax(clf.logits(test) / cal["temperature"], -1).numpy()
    np.testing.assert_array_equal(clf.predict_proba(test), expected)
    scores = clf.evaluate(val)
    assert {"ece", "brier", "ece_uncalibrated", "brier_uncalibrated"} <= set(scores)
    assert scores["ece"] == pytest.approx(cal["val_ece_after"], abs=1e-5)  # evaluate on the same split agrees
    assert "ece_uncalibrated" not in plain.evaluate(val)
    clf.save(tmp_path / "m")
    again = llmhead.load(tmp_path / "m")
    assert again.calibration == cal
    np.testing.assert_array_equal(again.predict_proba(test), clf.predict_proba(test))


def test_platt_multilabel_decisions_follow_the_calibrated_probabilities(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, task="multilabel", dtype="float32")
    clf.fit(tags(4), tags(4, noise=True), label="labels", **FIT)
    cal = clf.calibration
    assert cal["method"] == "platt" and len(cal["a"]) == 2 and cal["unfitted"] == []
    texts = [r["text"] for r in tags(1)]
    proba, thresholds = clf.predict_proba(texts), np.asarray(clf.labels.thresholds)
    raw = torch.sigmoid(clf.logits(texts)).numpy()
    expected = torch.sigmoid(clf.logits(texts) * torch.tensor(cal["a"]) + torch.tensor(cal["b"])).numpy()
    np.testing.assert_array_equal(proba, expected)
    assert not np.allclose(proba, raw)
    decided = [[n for n, p, t in zip(clf.labels.names, row, thresholds) if p >= t] for row in proba]
    assert clf.predict(texts) == decided  # the thresholds are on the calibrated scale
    clf.save(tmp_path / "m")
    again = llmhead.load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict_proba(texts), proba)
    assert again.predict(texts) == clf.predict(texts)


def test_a_small_validation_split_is_left_uncalibrated_and_says_so(tiny_llama):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(2), noisy(sentiment_rows(1)), **FIT)
    assert clf.calibration == {"method": "none", "reason": "the validation split has 8 examples; calibration needs 20"}
    texts = CORPUS[:3]
    np.testing.assert_array_equal(clf.predict_proba(texts), torch.softmax(clf.logits(texts), -1).numpy())

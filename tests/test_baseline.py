"""The classic baseline (mode='tfidf': TF-IDF + a linear model, no LLM) and the hybrid (frozen features and
TF-IDF in one linear model): exact save/load without pickle, no weights for the baseline, the rare-token task
where words beat frozen features, evaluate(baseline=True), and the options they read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CORPUS, sentiment_rows

import llmhead
from llmhead.config import ModelConfig, build
from llmhead.features.tfidf import TfidfFeaturizer

PICKLES = (".pkl", ".pickle", ".joblib", ".bin", ".pt", ".pth", ".npy", ".npz")


def saved_files(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def three_class_rows(n_repeat: int = 4) -> list[dict]:
    return [{"text": t, "label": ["pos", "neg", "mid"][i % 3]} for _ in range(n_repeat) for i, t in enumerate(CORPUS)]


@pytest.mark.parametrize(
    "task, rows, options",
    [
        ("classification", sentiment_rows(3), {}),
        ("classification", three_class_rows(), {"probe": "svm"}),
        (
            "regression",
            [{"text": t, "label": float(i % 4) - 1.5} for i, t in enumerate(CORPUS * 3)],
            {"probe": "ridge"},
        ),
        (
            "multilabel",
            [{"text": t, "label": [["a"], ["b"], ["a", "b"], []][i % 4]} for i, t in enumerate(CORPUS * 3)],
            {},
        ),
    ],
    ids=["binary", "3-class-svm", "ridge", "multilabel"],
)
def test_tfidf_reloads_bit_identically_with_no_weights_and_no_pickle(no_model_load, tmp_path, task, rows, options):
    """no_model_load: any weight or tokenizer load fails the test, through fit, predict, save and load."""
    clf = llmhead.from_pretrained("no/such-model", mode="tfidf", task=task, **options)  # needs no model installed
    clf.fit(rows)
    assert not clf.loaded
    assert clf.history[0]["C"] is not None and clf.history[0]["tfidf_features"] > len(CORPUS)
    out = clf.logits([r["text"] for r in rows] + ["an unseen sentence entirely"])
    clf.save(tmp_path / "m")
    files = saved_files(tmp_path / "m")
    assert files == ["README.md", "head.safetensors", "llmhead.json", "tfidf.json"], files  # README.md: the card
    again = llmhead.load(tmp_path / "m")
    assert torch.equal(again.logits([r["text"] for r in rows] + ["an unseen sentence entirely"]), out)
    assert again.predict([r["text"] for r in rows]) == clf.predict([r["text"] for r in rows])
    if task != "regression":
        assert np.array_equal(again.predict_proba(rows), clf.predict_proba(rows))
    with pytest.raises(ValueError, match="no LLM to export"):
        again.export(tmp_path / "exported")


def test_tfidf_head_computes_what_scikit_learn_does(no_model_load):
    from sklearn.linear_model import LogisticRegression

    rows = three_class_rows()
    clf = llmhead.from_pretrained(mode="tfidf", probe_c=3.0).fit(rows)
    texts = [r["text"] for r in rows]
    featurizer = clf.model.head.featurizer()
    x = featurizer.transform(texts)
    reference = LogisticRegression(C=3.0, max_iter=5000).fit(x, clf.labels.encode([r["label"] for r in rows]).numpy())
    np.testing.assert_allclose(clf.predict_proba(texts), reference.predict_proba(x), atol=1e-6)


def test_featurizer_state_round_trips_exactly():
    texts = [*CORPUS, "Unicode: café naïve, ÉCOLE"]
    fitted = TfidfFeaturizer.fit(texts)
    again = TfidfFeaturizer.from_state(fitted.to_json(), fitted.idf_tensors())
    assert (fitted.transform(texts) != again.transform(texts)).nnz == 0


def test_hybrid_reloads_bit_identically_without_pickle(tiny_llama, tmp_path):
    rows = three_class_rows()
    clf = llmhead.from_pretrained(tiny_llama, mode="hybrid", template="Text: {text}\nLabel:", dtype="float32")
    clf.fit(rows, progress=False)
    assert clf.history[0]["llm_weight"] in (0.5, 1.0, 2.0)
    proba = clf.predict_proba(rows)
    clf.save(tmp_path / "h")
    files = saved_files(tmp_path / "h")
    assert "tfidf.json" in files and not [f for f in files if f.endswith(PICKLES)], files
    again = llmhead.load(tmp_path / "h")
    assert np.array_equal(again.predict_proba(rows), proba)


def rare_token_rows(n: int, seed: int) -> list[dict]:
    """Label 'flag' exactly when the text holds the rare word 'zq' (about 1 text in 4); every other word is drawn
    from the same vocabulary for both labels, so meaning carries nothing."""
    rng = np.random.default_rng(seed)
    words = " ".join(CORPUS).split()
    rows = []
    for _ in range(n):
        text = list(rng.choice(words, size=rng.integers(5, 9)))
        flag = rng.random() < 0.25
        if flag:
            text.insert(int(rng.integers(0, len(text))), "zq")
        rows.append({"text": " ".join(text), "label": "flag" if flag else "plain"})
    return rows


def test_words_beat_frozen_features_on_a_rare_token_task(tiny_llama):
    train, test = rare_token_rows(160, 0), rare_token_rows(120, 1)
    scores = {}
    for mode in ("tfidf", "hybrid", "head"):
        options = {} if mode == "tfidf" else {"dtype": "float32"}
        clf = llmhead.from_pretrained(tiny_llama, mode=mode, **options)
        clf.fit(train, progress=False, **({"epochs": 30} if mode == "head" else {}))
        scores[mode] = clf.evaluate(test)["macro_f1"]
    print(scores)
    assert scores["tfidf"] > 0.95 and scores["hybrid"] > 0.95, scores
    # the head's default features hold the mean over tokens, which carries some of the rare word (0.92 here; the
    # last token alone: 0.58), yet words still decide better
    assert min(scores["tfidf"], scores["hybrid"]) > scores["head"] + 0.03, scores


def test_evaluate_reports_the_baseline_beside_the_model(tiny_llama):
    train, test = rare_token_rows(120, 0), rare_token_rows(60, 1)
    clf = llmhead.from_pretrained(tiny_llama, mode="probe", dtype="float32").fit(train, progress=False)
    report = clf.evaluate(test, baseline=True)
    assert report["baseline"]["mode"] == "tfidf" and report["baseline"]["n"] == len(test)
    assert report["over_baseline"]["accuracy"] == pytest.approx(report["accuracy"] - report["baseline"]["accuracy"])
    assert clf.baseline.train_examples is not None and len(clf.baseline.train_examples) == len(train)
    first = clf.baseline
    assert clf.evaluate(test, baseline=True)["baseline"] == report["baseline"] and clf.baseline is first  # fitted once
    with pytest.raises(TypeError, match="baseline must be"):
        clf.evaluate(test, baseline="yes")


def test_evaluate_baseline_needs_training_data_on_a_loaded_classifier(no_model_load, tmp_path):
    clf = llmhead.from_pretrained(mode="tfidf").fit(sentiment_rows(3))
    clf.save(tmp_path / "m")
    again = llmhead.load(tmp_path / "m")
    with pytest.raises(ValueError, match="training data"):
        again.evaluate(sentiment_rows(1), baseline=True)
    assert again.evaluate(sentiment_rows(1), baseline=clf)["over_baseline"]["accuracy"] == 0.0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "tfidf", "template": "Review: {text}"}, "template is not used by mode='tfidf'"),
        ({"mode": "tfidf", "dtype": "float32"}, "dtype is not used by mode='tfidf'"),
        ({"mode": "tfidf", "pooling": "mean"}, "pooling is not used by mode='tfidf'"),
        ({"mode": "tfidf", "task": "regression", "probe": "svm"}, "ridge is for regression"),
        ({"mode": "hybrid", "pooling": "attention"}, "fixed pooled vectors"),
        ({"mode": "hybrid", "head_hidden": []}, "head_hidden is not used by mode='hybrid'"),
    ],
)
def test_options_the_baseline_and_hybrid_do_not_read_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        build(ModelConfig, options)


def test_ladder_runs_the_baseline_and_the_hybrid_and_never_picks_below_the_baseline(tiny_llama, monkeypatch):
    from llmhead.selection import ladder

    # the playbook's rungs cut to the probe: the baseline and the hybrid join it whatever the playbook says
    monkeypatch.setattr(ladder, "_by_size", lambda n: (("probe",), ("probe",), "test"))
    options = {"dtype": "float32", "probe_c": 1.0, "progress": False}  # a fixed C: no inner search, a quicker test
    result = ladder.run_ladder(rare_token_rows(100, 0), tiny_llama, folds=3, **options)
    rows = {r["rung"]: r for r in result.rows}
    assert rows["tfidf"]["status"] == rows["hybrid"]["status"] == rows["probe"]["status"] == "ran"
    assert rows["head"]["status"].startswith("skipped: playbook")
    assert result.rows[0]["rung"] == "tfidf" and "| vs baseline |" in result.format()
    assert rows[result.winner]["mean"] >= rows["tfidf"]["mean"]
    assert f"| {rows['probe']['mean'] - rows['tfidf']['mean']:+.4f} |" in result.format()


def test_the_winner_is_never_below_the_baseline_even_when_cheaper():
    from llmhead.selection.ladder import _choose

    def row(rung, mean, std, cost, trainable):
        return {
            "rung": rung,
            "mean": mean,
            "std": std,
            "predict_per_1000": cost,
            "trainable": trainable,
            "status": "ran",
        }

    # probe is within one standard error of the best and the cheapest, but below the baseline
    rows = [
        row("tfidf", 0.84, 0.01, 50.0, 10_000),
        row("probe", 0.83, 0.1, 5.0, 100),
        row("hybrid", 0.86, 0.1, 60.0, 10_100),
    ]
    winner, _ = _choose(rows, folds=5)
    assert winner["rung"] == "tfidf"
    rows[0]["mean"] = 0.80  # now the probe is above the baseline: the cheapest within one standard error wins
    assert _choose(rows, folds=5)[0]["rung"] == "probe"


def test_ladder_on_regression_runs_the_linear_rungs_with_ridge(tiny_llama):
    from llmhead.selection.ladder import run_ladder

    rows = [{"text": t, "label": float(i % 4) + ("great" in t)} for i, t in enumerate(CORPUS * 6)]
    result = run_ladder(rows, tiny_llama, task="regression", folds=3, dtype="float32", progress=False)
    status = {r["rung"]: r["status"] for r in result.rows}
    assert result.metric == "pearson" and status["tfidf"] == status["hybrid"] == status["probe"] == "ran", status
    assert status["icl"].startswith("skipped: scores label words")
    assert result.classifier.config.probe == "ridge" or result.winner == "head"

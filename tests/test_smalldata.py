"""The small-data toolbox on tiny in-process models: probes, ICL, verbalizer heads, cross-validation,
feature cache, augmentation, the layer sweep and the ladder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import CORPUS, make_tiny, sentiment_rows

import llmhead
from llmhead.selection.cv import cross_validate, fold_indices

THREE = ["pos", "neg", "mid"]


def three_class_rows(n_repeat: int = 4) -> list[dict]:
    return [{"text": t, "label": THREE[i % 3]} for _ in range(n_repeat) for i, t in enumerate(CORPUS)]


def _sklearn_inputs(clf, rows):
    head = clf.model.head
    x = (
        clf.embed([r["text"] for r in rows], batch_size=8, cache=False, templated=True)
        .values.flatten(1)
        .double()
        .numpy()
    )
    return (x - head.mean.numpy()) / head.std.numpy(), head.sklearn


@pytest.mark.parametrize("probe", ["logreg", "svm"])
@pytest.mark.parametrize("rows", [sentiment_rows(3), three_class_rows()], ids=["binary", "3-class"])
def test_probe_matches_sklearn_and_reloads_exactly_without_pickle(tiny_llama, tmp_path, probe, rows):
    clf = llmhead.from_pretrained(tiny_llama, mode="probe", probe=probe, dtype="float32")
    clf.fit(rows, progress=False)
    proba = clf.predict_proba(rows)
    x, model = _sklearn_inputs(clf, rows)
    np.testing.assert_allclose(proba, model.predict_proba(x), atol=1e-6)  # the tensors compute what sklearn does
    assert clf.history[0]["C"] in list(np.logspace(-4, 1, 11))  # chosen by cross-validation
    clf.save(tmp_path / "probe")
    files = sorted(p.name for p in (tmp_path / "probe").rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib", ".bin", ".pt"))], files
    again = llmhead.load(tmp_path / "probe")
    assert np.array_equal(again.predict_proba(rows), proba)


def test_ridge_probe_regression_matches_sklearn(tiny_llama, tmp_path):
    rows = [{"text": t, "score": float(i % 4) + 0.5 * (i % 3)} for i, t in enumerate(CORPUS * 3)]
    clf = llmhead.from_pretrained(tiny_llama, mode="probe", task="regression", dtype="float32")  # ridge: the default
    clf.fit(rows, label="score", progress=False)
    assert clf.config.probe == "ridge"
    x, model = _sklearn_inputs(clf, rows)
    np.testing.assert_allclose(
        np.ravel(clf.predict(rows)), np.ravel(clf.labels.values(torch.from_numpy(model.predict(x)))), atol=1e-6
    )
    clf.save(tmp_path / "ridge")
    assert llmhead.load(tmp_path / "ridge").predict(rows) == clf.predict(rows)


def test_probe_configuration_errors_are_named():
    with pytest.raises(ValueError, match=r"pooling last, mean, max or last\+mean"):
        llmhead.ModelConfig(mode="probe", pooling="attention")
    with pytest.raises(ValueError, match="ridge is for regression"):
        llmhead.ModelConfig(mode="probe", probe="ridge")
    with pytest.raises(ValueError, match="task='classification' only"):
        llmhead.ModelConfig(mode="icl", task="regression")
    with pytest.raises(ValueError, match="needs a linear head"):
        llmhead.ModelConfig(head_init="lmhead", head_hidden=[8])
    with pytest.raises(ValueError, match="must end with \\{label\\}"):
        llmhead.ModelConfig(mode="icl", icl_template="{label}: {text}")


def test_disk_cache_is_hit_by_a_second_run(tiny_llama, tmp_path):
    first = llmhead.from_pretrained(tiny_llama, mode="probe", dtype="float32")
    first.fit(sentiment_rows(3), feature_cache=str(tmp_path / "cache"), progress=False)
    assert first.extractor.cache.misses == len(sentiment_rows(3)) and first.extractor.cache.hits == 0
    second = llmhead.from_pretrained(tiny_llama, mode="head", dtype="float32")  # another mode, same features
    second.fit(sentiment_rows(3), feature_cache=str(tmp_path / "cache"), epochs=2, progress=False)
    assert second.extractor.cache.misses == 0 and second.extractor.cache.hits == len(sentiment_rows(3))
    other = llmhead.from_pretrained(tiny_llama, mode="probe", dtype="float32", pooling="mean")  # other settings
    other.fit(sentiment_rows(3), feature_cache=str(tmp_path / "cache"), progress=False)
    assert other.extractor.cache.hits == 0


def test_fold_indices_are_disjoint_complete_and_stratified():
    targets = np.array([0] * 30 + [1] * 15 + [2] * 10)
    folds = fold_indices("classification", targets, None, 5, seed=0)
    joined = np.concatenate(folds)
    assert sorted(joined.tolist()) == list(range(len(targets)))  # every row held out exactly once
    for fold in folds:
        assert np.bincount(targets[fold], minlength=3).tolist() == [6, 3, 2]  # class shares kept per fold
    groups = [i // 5 for i in range(len(targets))]  # 11 groups of 5 rows
    grouped = fold_indices("classification", targets, groups, 5, seed=0)
    owners = [{groups[i] for i in fold} for fold in grouped]
    assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1 :])  # no group split across folds
    with pytest.raises(llmhead.DataError, match="needs >= 5 examples of every class"):
        fold_indices("classification", np.array([0] * 10 + [1] * 3), None, 5, seed=0)


def test_cross_validate_costs_one_feature_pass_and_writes_out_of_fold_predictions(tiny_llama, tmp_path):
    labels = {r["text"]: r["label"] for r in sentiment_rows(1)}
    rows = [{"text": f"{a} {b}", "label": labels[a]} for a in CORPUS for b in CORPUS[:4]]  # 32 distinct texts
    result = cross_validate(
        rows, tiny_llama, folds=4, mode="probe", dtype="float32", out_dir=str(tmp_path), ensemble=True
    )
    assert len(result.folds) == 4 and 0.0 <= result.mean <= 1.0
    oof = [json.loads(line) for line in (tmp_path / "oof.jsonl").read_text().splitlines()]
    assert [r["row"] for r in oof] == list(range(1, len(rows) + 1))
    assert {r["fold"] for r in oof} == {1, 2, 3, 4}
    assert json.loads((tmp_path / "cv.json").read_text())["metric"] == "accuracy"
    cache = result.models[0].extractor.cache
    assert cache.computed == len(rows)  # four folds, each example's features computed once
    assert result.predict(["a joyful bright funny story"])[0] in ("pos", "neg")


def test_augmentation_touches_training_texts_only(tiny_llama, monkeypatch):
    seen = []
    original = llmhead.Classifier.embed

    def spy(self, texts, *args, **kwargs):
        seen.append(list(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(llmhead.Classifier, "embed", spy)
    train, evaluation = sentiment_rows(2), sentiment_rows(1)
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", template="Review: {text}")
    clf.fit(train, evaluation, augment=2, augment_p=0.5, epochs=1, progress=False)
    train_texts, eval_texts = seen
    assert len(train_texts) == 3 * len(train) and len(eval_texts) == len(evaluation)
    assert eval_texts == [f"Review: {r['text']}" for r in evaluation]  # untouched, in order
    assert any(t not in eval_texts for t in train_texts[len(train) :])  # the copies were perturbed
    assert all(t.startswith("Review: ") for t in train_texts)  # the template is applied after perturbing
    seen.clear()
    clf.fit(train, augment=1, epochs=1, progress=False)  # validation carved from train: split first, then augment
    carved_train, carved_val = seen
    assert all(t in {f"Review: {r['text']}" for r in train} for t in carved_val)
    assert len(carved_train) == 2 * (len(train) - len(carved_val))


def _causal_lm_scores(path, texts, word_ids):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    out = []
    with torch.inference_mode():
        for t in texts:
            ids = tok(t, return_tensors="pt")
            out.append(lm(**ids).logits[0, -1, word_ids])
    return torch.stack(out)


def _label_word_ids(path, words):
    """The first token of each label word after a space (the template does not end in whitespace): the row of the
    LM head that scores it."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    return [tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in words]


def test_lmhead_starts_from_the_lm_heads_label_scores(tmp_path):
    path = make_tiny(tmp_path / "m", "llama")
    verbalizers = {"pos": "wonderful", "neg": "awful"}
    clf = llmhead.from_pretrained(
        path, mode="lmhead", dtype="float32", template="{text} it was", verbalizers=verbalizers
    )
    validation = sentiment_rows(1)[:5]  # not the training rows' label mix: its loss is its own
    clf.fit(sentiment_rows(2), validation, epochs=0, progress=False)  # no training step: the zero-shot classifier
    texts = [f"{r['text']} it was" for r in validation]
    expected = _causal_lm_scores(path, texts, _label_word_ids(path, ["awful", "wonderful"]))  # sorted: neg, pos
    targets = torch.tensor([["neg", "pos"].index(r["label"]) for r in validation])
    # the recorded validation loss is that of the causal LM's label scores, computed here from the LM itself
    expected_loss = torch.nn.functional.cross_entropy(expected, targets).item()
    assert len(clf.history) == 1 and {"best", "epoch", "val_loss", "accuracy"} <= set(clf.history[0])
    assert clf.history[0]["accuracy"] == pytest.approx((expected.argmax(-1) == targets).double().mean().item())
    assert clf.history[0]["epoch"] == 0 and clf.history[0]["best"] is True
    assert clf.history[0]["val_loss"] == pytest.approx(expected_loss, abs=1e-4)
    torch.testing.assert_close(clf.logits(validation), expected, atol=1e-4, rtol=1e-4)


def test_verbalizer_init_folds_the_input_standardization(tmp_path):
    path = make_tiny(tmp_path / "m", "qwen2")  # untied LM head: rows are read from the checkpoint
    clf = llmhead.from_pretrained(
        path, dtype="float32", head_hidden=[], head_init="lmhead", verbalizers={"pos": "great", "neg": "dull"}
    )
    clf.fit(sentiment_rows(2), epochs=0, progress=False)
    expected = _causal_lm_scores(path, CORPUS[:3], clf.label_token_ids(["dull", "great"]))
    torch.testing.assert_close(clf.logits(CORPUS[:3]), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_icl_prefix_cache_scores_equal_full_forward(tmp_path, family):
    """Scores with the demonstrations' cached keys/values equal a plain forward of the whole prompt,
    including multi-token label words and a prompt longer than Gemma3's sliding window."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_tiny(tmp_path / family, family)
    verbalizers = {"pos": "wonderful and moving", "neg": "dull"}
    clf = llmhead.from_pretrained(
        path, mode="icl", dtype="float32", icl_shots=2, verbalizers=verbalizers, icl_calibrate=False
    )
    clf.fit(sentiment_rows(2), progress=False)
    scorer = clf.strategy.scorer(clf)
    assert len(scorer.prefix_ids) > 16  # longer than the tiny Gemma3's sliding window
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    texts = CORPUS[:3]
    got = scorer.scores(texts, progress=False)
    for i, text in enumerate(texts):
        query = tok(text + scorer.prompt.suffix, add_special_tokens=False)["input_ids"]
        for c, label_ids in enumerate(scorer.label_ids):
            ids = torch.tensor([scorer.prefix_ids + query + label_ids])
            with torch.inference_mode():
                logp = lm(input_ids=ids).logits.float().log_softmax(-1)[0]
            start = len(scorer.prefix_ids) + len(query)
            expected = sum(logp[start - 1 + j, t] for j, t in enumerate(label_ids))
            torch.testing.assert_close(got[i, c], expected, atol=2e-4, rtol=1e-4)


def test_icl_calibration_save_and_load(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(
        tiny_llama, mode="icl", dtype="float32", icl_shots=1, verbalizers={"pos": "great", "neg": "awful"}
    )
    clf.fit(sentiment_rows(2), progress=False)
    log_cf = clf.model.head.log_cf
    assert torch.isclose(log_cf.exp().sum(), torch.tensor(1.0)) and not torch.allclose(log_cf, log_cf.mean())
    assert len(clf.strategy.demos) == 2 and {y for _, y in clf.strategy.demos} == {0, 1}  # one per class
    clf.save(tmp_path / "icl")
    again = llmhead.load(tmp_path / "icl")
    torch.testing.assert_close(again.logits(CORPUS[:3]), clf.logits(CORPUS[:3]), atol=0, rtol=0)


def test_layer_sweep_builds_the_best_layer_with_blocks_dropped(tiny_llama):
    from llmhead.selection.sweep import layer_sweep

    result = layer_sweep(sentiment_rows(4), tiny_llama, folds=3, dtype="float32")
    assert [r["layer"] for r in result.table] == [1, 2]
    assert result.best_layer == max(result.table, key=lambda r: r["mean"])["layer"]
    clf = result.classifier
    assert clf.config.layer == result.best_layer and len(clf.model.backbone.layers) == result.best_layer
    assert "| layer |" in result.format()


def test_ladder_runs_end_to_end_and_auto_becomes_the_winner(tiny_llama, tmp_path):
    from llmhead.selection.ladder import run_ladder

    rows = sentiment_rows(8)  # 64 examples: the playbook's < 100 regime
    options = dict(dtype="float32", verbalizers={"pos": "great", "neg": "awful"})
    result = run_ladder(rows, tiny_llama, budget_s=600, folds=3, out_dir=str(tmp_path / "ladder"), test=rows, **options)
    status = {r["rung"]: r["status"] for r in result.rows}
    assert status["icl"] == status["lmhead"] == status["probe"] == "ran"
    assert status["head"].startswith("skipped: playbook") and status["lora"].startswith("skipped: playbook")
    assert result.playbook_pick == ("icl", "lmhead") and result.agreed == (result.winner in ("icl", "lmhead"))
    table = (tmp_path / "ladder" / "ladder.md").read_text()
    assert f"winner: {result.winner}" in table and "| probe |" in table or "| **probe** |" in table
    saved = llmhead.load(tmp_path / "ladder" / "model")
    assert saved.config.mode == result.winner and saved.predict(["a fine film"])[0] in ("pos", "neg")
    clf = llmhead.auto(rows, tiny_llama, budget_s=600, folds=3, fit={"progress": False}, **options)
    assert clf.config.mode == clf.ladder.winner and clf.predict(["a fine film"])[0] in ("pos", "neg")


def test_ladder_skips_rungs_over_budget(tiny_llama):
    from llmhead.budget import BudgetExceeded
    from llmhead.selection.ladder import run_ladder

    rows = sentiment_rows(8)
    result = run_ladder(rows, tiny_llama, folds=2, rungs=["probe", "lora"], fit={"epochs": 10**6}, dtype="float32")
    status = {r["rung"]: r["status"] for r in result.rows}
    assert status["probe"] == "ran" and status["lora"].startswith("skipped: estimated") and result.winner == "probe"
    with pytest.raises(BudgetExceeded, match="budget ran out during the feature pass over the 64 examples"):
        run_ladder(rows, tiny_llama, budget_s=1e-3, folds=2, rungs=["probe", "lora"], dtype="float32")


def test_ladder_abandons_a_rung_at_its_budget_and_writes_its_table_as_it_goes(
    tiny_llama, tmp_path, monkeypatch, capsys
):
    """A rung that runs past the budget stops within a step (its estimate was wrong: here forced to 0), the table on
    disk already holds the rungs that ended, each rung is reported as it ends, and rungs left out of ``rungs=`` are
    "not requested"."""
    import time

    from llmhead.selection import ladder

    monkeypatch.setattr(ladder, "_estimate", lambda *args: 0.0)
    out = tmp_path / "ladder"
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="no rung fitted the budget.*lora: abandoned: the time budget ran out"):
        ladder.run_ladder(
            sentiment_rows(8), tiny_llama, budget_s=6, folds=2, rungs=["lora"], out_dir=str(out),
            fit={"epochs": 10_000, "eval_every": 10_000}, dtype="float32",
        )  # fmt: skip
    assert time.perf_counter() - start < 60  # 10,000 epochs would take hours: the rung stopped at the budget
    table = (out / "ladder.md").read_text()
    assert "| lora |" in table and "abandoned" in table and "| probe |  | - | - | - | - | - | not requested |" in table
    err = capsys.readouterr().err
    assert "lora: running" in err and "lora: abandoned" in err and "probe" not in err


def test_ladder_result_shows_its_table(tiny_llama):
    from llmhead.selection.ladder import run_ladder

    result = run_ladder(sentiment_rows(4), tiny_llama, folds=2, rungs=["probe"], dtype="float32", progress=False)
    assert repr(result) == result.format() and "| **probe** |" in repr(result)
    assert {r["rung"]: r["status"] for r in result.rows}["icl"] == "not requested"
    assert "playbook pick: icl / lmhead; none of them ran, so the data could not say." in repr(result)


def test_neftune_noise_only_while_training(tiny_llama, tmp_path):
    """NEFTune perturbs the input embeddings in training forward passes only. From one seed, a run without it is
    repeatable to the bit, so a first step (same weights, same batch) whose loss differs with neftune_alpha differs
    by the noise; the validation loss the same run recorded equals the loss of its final weights' predictions, which
    are deterministic: no noise at evaluation or prediction."""
    train, evaluation = sentiment_rows(2), sentiment_rows(1)

    def run(alpha: float, name: str):
        clf = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32", head_hidden=[], dropout=0.0)
        # float32 evaluations (no bf16 autocast), so that the recorded validation loss can be recomputed exactly
        options = dict(epochs=1, warm_start=False, progress=False, batch_size=4, mixed_precision="no")
        clf.fit(train, evaluation, neftune_alpha=alpha, run_dir=str(tmp_path / name), **options)
        log = (tmp_path / name / "train_log.jsonl").read_text().splitlines()
        return clf, [json.loads(line)["loss"] for line in log if '"loss"' in line]

    _, plain = run(0.0, "plain")
    _, again = run(0.0, "again")
    noisy, noisy_losses = run(5.0, "noisy")
    assert again == plain  # deterministic without noise ...
    assert noisy_losses[0] != plain[0]  # ... so the noise changed the first training forward pass
    assert not noisy.model.backbone.get_input_embeddings()._forward_hooks  # the hook is removed after training
    logits = noisy.logits(evaluation)
    torch.testing.assert_close(noisy.logits(evaluation), logits, atol=0, rtol=0)
    targets = torch.tensor([noisy.labels.names.index(r["label"]) for r in evaluation])
    recorded = noisy.history[-1]["val_loss"]  # 1 epoch: one evaluation, of the final weights
    assert torch.nn.functional.cross_entropy(logits, targets).item() == pytest.approx(recorded, abs=1e-5)
    with pytest.raises(ValueError, match="neftune_alpha perturbs embeddings"):
        llmhead.from_pretrained(tiny_llama).fit(sentiment_rows(1), neftune_alpha=5.0)


def test_perturbations_are_seeded_and_label_preserving():
    from llmhead.data.augment import augment, perturb

    texts = ["one two three four five six seven eight"] * 3
    out, y = augment(texts, torch.tensor([0, 1, 0]), 2, ["dropout", "mask", "swap"], 0.3, seed=1)
    again, _ = augment(texts, torch.tensor([0, 1, 0]), 2, ["dropout", "mask", "swap"], 0.3, seed=1)
    assert out == again and out[:3] == texts and y.tolist() == [0, 1, 0] * 3
    assert all(o != texts[0] for o in out[3:])
    assert perturb("single", ["dropout"], 0.9, np.random.default_rng(0)) == "single"


def test_ladder_scales_each_rungs_pass_to_the_blocks_it_runs(tmp_path):
    """The timed pass is the head rung's (3 of 4 blocks by default): the rungs that read the final output cost 4/3
    of it per example, and lmhead's last token needs a pass of its own unless the head rung's features are that."""
    from conftest import make_tiny

    from llmhead.config import ModelConfig, build, used_options
    from llmhead.features.extractor import FeatureExtractor
    from llmhead.model import backbone as bb
    from llmhead.selection.ladder import _pass_cost, _rung_options

    path = make_tiny(tmp_path / "m", "llama", layers=4)
    extractor = FeatureExtractor(bb.resolve(path))
    for user, expected in (
        ({}, {"probe": (1.0, False), "hybrid": (1.0, False), "lmhead": (4 / 3, True), "lora": (4 / 3, False)}),
        ({"pooling": "last", "layer": -1}, {"probe": (1.0, False), "lmhead": (1.0, False), "full": (1.0, False)}),
    ):
        options = {"model": path, **user}
        base = build(ModelConfig, {**used_options(ModelConfig, options, "head"), "mode": "head"})
        for rung, (ratio, own) in expected.items():
            cost, own_pass = _pass_cost(_rung_options(rung, base, options), base, 0.3, extractor)
            assert (cost, own_pass) == (pytest.approx(0.3 * ratio), own), (user, rung)

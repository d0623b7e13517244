"""Training modes on tiny in-process models: exactly which parameters change, QLoRA is 4-bit while the
head is not, the playbook options, save -> load of adapters and fine-tuned weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import make_tiny, sentiment_rows

import llmhead
from llmhead.cli.info import describe


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory) -> str:
    """Hidden size 64: bitsandbytes' 4-bit blocks need widths that are multiples of 64."""
    return make_tiny(tmp_path_factory.mktemp("llama64"), "llama", hidden=64)


def snapshot(clf) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().float() for k, v in clf.model.backbone.state_dict().items()}


def changed(before: dict, clf) -> set[str]:
    after = clf.model.backbone.state_dict()
    return {k for k in after if k in before and not torch.equal(before[k], after[k].float())}


def base_names(names) -> set[str]:
    return {n.replace("base_model.model.", "").replace(".base_layer", "") for n in names}


FIT = dict(epochs=2, lr=1e-2, batch_size=4, warm_start=False, progress=False)


def test_lora_changes_only_adapters_and_head(tiny_llama):
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4)
    base = snapshot(clf)
    clf.fit(sentiment_rows(2), **FIT)
    head_before = clf.new_head().state_dict()  # the same seeded initialisation fit started from
    state = clf.model.backbone.state_dict()
    lora = {k for k in state if "lora_" in k}
    assert lora and all("lora_" in n for n, p in clf.model.backbone.named_parameters() if p.requires_grad)
    for name, tensor in state.items():
        if "lora_" not in name:
            plain = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(tensor.float(), base[plain]), f"base weight {plain} changed"
    assert any(not torch.equal(state[k], torch.zeros_like(state[k])) for k in lora if "lora_B" in k)
    head_after = clf.model.head.state_dict()
    assert not torch.equal(head_after["mlp.4.weight"], head_before["mlp.4.weight"])


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_finetuning_heads_read_last_and_mean_of_the_final_output_by_default(tiny_llama, mode):
    clf = llmhead.from_pretrained(tiny_llama, mode=mode, dtype="float32")
    clf.fit(sentiment_rows(1), **FIT)
    hidden = clf.model.backbone.get_input_embeddings().embedding_dim
    assert clf.model.pooling == "last+mean" and clf.model.layers is None  # the final output: every block runs
    assert next(m for m in clf.model.head.modules() if isinstance(m, torch.nn.Linear)).in_features == 2 * hidden


def test_lora_respects_freeze_blocks(tiny_llama):
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", freeze_blocks=1)
    clf.fit(sentiment_rows(1), **FIT)
    adapted = {n for n, p in clf.model.backbone.named_parameters() if p.requires_grad}
    assert adapted and all(".layers.1." in n for n in adapted)


def test_full_changes_everything_but_frozen_blocks(tiny_llama):
    clf = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32", freeze_blocks=1)
    before = snapshot(clf)
    clf.fit(sentiment_rows(2), **FIT)
    moved = changed(before, clf)
    frozen = {k for k in before if k.startswith(("embed_tokens", "layers.0."))}
    assert not (moved & frozen), moved & frozen
    assert moved == set(before) - frozen - {k for k in before if "rotary" in k}


def test_full_without_freezing_changes_every_weight(tiny_llama):
    clf = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32", freeze_blocks=0)
    before = snapshot(clf)
    clf.fit(sentiment_rows(2), **FIT)
    assert changed(before, clf) == {k for k in before if "rotary" not in k}


def test_full_freezes_the_bottom_half_by_default(tiny_llama, tmp_path):
    """The default (FULL_FROZEN = 0.5) trains the top half: tiny_llama's block 1 of 2; a share of the depth and a
    count of blocks name the same blocks; the saved model says which blocks trained, and reloads the same."""
    clf = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32")
    assert clf.config.freeze_blocks == 0.5
    before = snapshot(clf)
    clf.fit(sentiment_rows(2), **FIT)
    moved = changed(before, clf)
    assert moved and not any(k.startswith(("embed_tokens", "layers.0.")) for k in moved)
    assert {k for k in moved if k.startswith("layers.")} == {k for k in before if k.startswith("layers.1.")} - {
        k for k in before if "rotary" in k
    }
    clf.save(tmp_path / "m")
    assert describe(tmp_path / "m")["trains"] == "block 2 of 2 (the embeddings and block 1 frozen)"
    again, texts = llmhead.load(tmp_path / "m"), [r["text"] for r in sentiment_rows(1)]
    assert again.config.freeze_blocks == 0.5 and again.predict(texts) == clf.predict(texts)


def test_qlora_base_is_4bit_and_head_is_float32(tiny64, tmp_path):
    import bitsandbytes as bnb

    clf = llmhead.from_pretrained(tiny64, mode="qlora", lora_r=4)
    clf.fit(sentiment_rows(2), **FIT)
    linears = [m for m in clf.model.backbone.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linears and all(m.weight.dtype == torch.uint8 for m in linears)
    assert all(p.dtype == torch.float32 for p in clf.model.head.parameters())
    assert all(not isinstance(m, bnb.nn.Linear4bit) for m in clf.model.head.modules())
    texts = [r["text"] for r in sentiment_rows(1)]
    clf.save(tmp_path / "q")
    torch.testing.assert_close(llmhead.load(tmp_path / "q").logits(texts), clf.logits(texts), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="4-bit"):
        clf.merge()


def test_lora_fit_and_load_raise_no_peft_deprecation_warning(tiny_llama, tmp_path):
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` in every ``get_peft_model``: users of
    llmhead would see a FutureWarning they cannot act on, at every LoRA fit and every load of an adapter."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4)
        clf.fit(sentiment_rows(1), **{**FIT, "epochs": 1})
        clf.save(tmp_path / "m")
        llmhead.load(tmp_path / "m").predict(["a text"])
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_save_load_merge_and_export_after_finetuning(tiny_llama, tmp_path, mode):
    clf = llmhead.from_pretrained(  # a transformers export is a linear score on the last token
        tiny_llama, mode=mode, dtype="float32", head_hidden=[], head_bias=False, input_norm="scale", pooling="last"
    )
    clf.fit(sentiment_rows(2), **FIT)
    texts = [r["text"] for r in sentiment_rows(1)]
    reference = clf.logits(texts)
    clf.save(tmp_path / "m")
    saved = {p.name for p in (tmp_path / "m").iterdir()}
    assert ("adapter.safetensors" in saved) == (mode == "lora") and ("backbone" in saved) == (mode == "full")
    torch.testing.assert_close(llmhead.load(tmp_path / "m").logits(texts), reference, atol=0, rtol=0)
    report = llmhead.check(clf)
    assert report["passed"], report
    assert isinstance(report["checks"]["export_transformers"], float)
    clf.merge()
    torch.testing.assert_close(clf.logits(texts), reference, atol=1e-5, rtol=1e-5)
    clf.save(tmp_path / "merged")
    assert (tmp_path / "merged" / "backbone").is_dir()
    torch.testing.assert_close(llmhead.load(tmp_path / "merged").logits(texts), reference, atol=1e-5, rtol=1e-5)


def test_backbone_learning_rate_is_a_tenth_and_layer_decay(tiny_llama):
    from llmhead.config import TrainConfig, for_mode
    from llmhead.finetuning.optim import param_groups

    clf = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32", freeze_blocks=0)
    clf.model.backbone = clf.strategy.adapt(clf.model.backbone)
    groups = param_groups(clf.model, for_mode(TrainConfig(lr=1e-3, layer_decay=0.5), "full"))
    by_name = {}
    for group in groups:
        for p in group["params"]:
            by_name[id(p)] = group["lr"]
    named = dict(clf.model.named_parameters())
    head_weight = next(p for n, p in named.items() if n.startswith("head.") and p.ndim == 2)
    assert by_name[id(head_weight)] == pytest.approx(1e-3)
    assert by_name[id(named["backbone.layers.1.mlp.up_proj.weight"])] == pytest.approx(1e-4)
    assert by_name[id(named["backbone.layers.0.mlp.up_proj.weight"])] == pytest.approx(0.5e-4)
    assert by_name[id(named["backbone.embed_tokens.weight"])] == pytest.approx(1e-4 * 0.25)


def test_lora_adapters_learn_at_the_head_rate(tiny_llama):
    """Adapters are new weights (B starts at zero) on a frozen base: by default they learn at the head's rate; the
    playbook's tenth is for pretrained weights (full), and an explicit ratio still applies."""
    from llmhead.config import TrainConfig, for_mode
    from llmhead.finetuning.optim import param_groups

    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32")
    clf.model.backbone = clf.strategy.adapt(clf.model.backbone)
    for ratio, expected in ((None, 1e-3), (0.1, 1e-4)):
        groups = param_groups(clf.model, for_mode(TrainConfig(lr=1e-3, backbone_lr_ratio=ratio), "lora"))
        named = {id(p): n for n, p in clf.model.named_parameters()}
        rates = {named[id(p)].split(".")[0]: group["lr"] for group in groups for p in group["params"]}
        assert rates == {"head": pytest.approx(1e-3), "backbone": pytest.approx(expected)}


def _ab_rows(rows: list[dict], minority_every: int | None = None) -> list[dict]:
    """Distinct texts labelled 'a'/'b': alternating, or 'b' for every ``minority_every``-th row only."""

    def label(i: int) -> str:
        return ("b" if i % minority_every == 0 else "a") if minority_every else "ab"[i % 2]

    return [{"text": f"{r['text']} {i}", "label": label(i)} for i, r in enumerate(rows)]


def _first_step_loss(model, run_dir, train, evaluation, **options) -> float:
    clf = llmhead.from_pretrained(model, mode="lora", dtype="float32", lora_r=4)
    clf.fit(train, evaluation, **{**FIT, "epochs": 1, "run_dir": str(run_dir), **options})
    return json.loads((run_dir / "train_log.jsonl").read_text().splitlines()[0])["loss"]


def test_class_weights_weigh_each_class_mean_loss(tiny_llama, tmp_path):
    """One optimizer step over the whole imbalanced training set (9 'a', 3 'b'), so its logged loss is that of the
    same 12 rows under the same initial weights in every run: class_weights=[1, 0] gives the 'a' rows' mean loss,
    [0, 1] the 'b' rows', any [w_a, w_b] their mean weighted by w * count, and 'auto' (inverse frequency) the plain
    mean of the two classes' mean losses."""
    train, evaluation = _ab_rows(sentiment_rows(2)[:12], minority_every=4), _ab_rows(sentiment_rows(1))
    loss = {
        str(w): _first_step_loss(tiny_llama, tmp_path / str(w), train, evaluation, batch_size=12, class_weights=w)
        for w in (None, [1, 0], [0, 1], [2, 1], "auto")
    }
    only_a, only_b = loss["[1, 0]"], loss["[0, 1]"]
    assert abs(only_a - only_b) > 1e-3, loss  # the classes' losses differ, so every weighting below is told apart
    assert loss["None"] == pytest.approx((9 * only_a + 3 * only_b) / 12, rel=1e-5)
    assert loss["[2, 1]"] == pytest.approx((2 * 9 * only_a + 3 * only_b) / (2 * 9 + 3), rel=1e-5)
    assert loss["auto"] == pytest.approx((only_a + only_b) / 2, rel=1e-5)


def test_a_zero_class_weight_makes_head_training_blind_to_that_class(tiny_llama):
    """Head mode, no input statistics (input_norm='none'): with class_weights=[1, 0] the 'pos' rows add nothing to
    the loss, so rewriting their texts leaves the trained head as it was; without weights it does not."""
    base, held_out = sentiment_rows(2), sentiment_rows(1)
    rewritten = [dict(r, text=f"not at all {r['text']} or so") if r["label"] == "pos" else r for r in base]

    def proba(train, weights):
        clf = llmhead.from_pretrained(tiny_llama, dtype="float32", input_norm="none")
        clf.fit(train, held_out, class_weights=weights, epochs=5, lr=1e-2, progress=False)
        assert clf.labels.names == ["neg", "pos"]  # weights [1, 0]: 'neg' counts, 'pos' does not
        return clf.predict_proba(held_out)

    blind = np.abs(proba(base, [1, 0]) - proba(rewritten, [1, 0])).max()
    seeing = np.abs(proba(base, None) - proba(rewritten, None)).max()
    assert blind < 1e-5 and seeing > 1e-3, (blind, seeing)


def test_auto_class_weights_raise_the_minority_class(tiny_llama):
    train, evaluation = _ab_rows(sentiment_rows(5), minority_every=4), _ab_rows(sentiment_rows(1))  # 30 'a', 10 'b'
    texts = [r["text"] for r in train]
    minority = np.array([r["label"] == "b" for r in train])
    seen = {}
    for weights in (None, "auto"):
        clf = llmhead.from_pretrained(tiny_llama, dtype="float32")
        clf.fit(train, evaluation, class_weights=weights, epochs=20, lr=1e-2, progress=False)
        p_b = clf.predict_proba(texts)[:, clf.labels.names.index("b")]
        recall = float(np.mean(np.array(clf.predict(texts))[minority] == "b"))
        seen[weights] = (float(p_b[minority].mean()), recall)
    assert seen["auto"][0] > seen[None][0] + 1e-3, seen  # the minority's probability rises on its own rows
    assert seen["auto"][1] >= seen[None][1], seen  # and its recall does not fall


def test_focal_loss_scales_each_examples_loss_by_its_error(tiny_llama, tmp_path):
    """Batches of one example: the first step's logged loss is one example's cross-entropy ce under the initial
    weights, the same in every run, and the focal loss with gamma=2 is (1 - p)^2 * ce, p = exp(-ce) the
    probability of its label. Focal runs repeat to the bit and end elsewhere than cross-entropy runs."""
    rows = sentiment_rows(1)[:4]

    def run(gamma: float, name: str):
        clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4)
        clf.fit(rows, rows, **{**FIT, "epochs": 1, "batch_size": 1, "run_dir": str(tmp_path / name)}, focal_gamma=gamma)
        log = (tmp_path / name / "train_log.jsonl").read_text().splitlines()
        return clf, [json.loads(line)["loss"] for line in log if '"loss"' in line]

    plain, plain_losses = run(0.0, "ce")
    focal, focal_losses = run(2.0, "focal")
    again, again_losses = run(2.0, "again")
    ce = plain_losses[0]
    assert focal_losses[0] == pytest.approx((1 - math.exp(-ce)) ** 2 * ce, rel=1e-5)
    assert again_losses == focal_losses and np.array_equal(again.predict_proba(rows), focal.predict_proba(rows))
    assert np.abs(focal.predict_proba(rows) - plain.predict_proba(rows)).max() > 1e-4


@pytest.mark.parametrize("mode", ["head", "lora"])
def test_a_batch_of_zero_weight_classes_only_does_not_stop_training(tiny_llama, mode):
    """class_weights may give a class weight 0 (numbers >= 0 are allowed). A batch holding only examples of such
    classes has nothing to learn from: its loss is 0 (no gradient), not 0 / 0, a NaN that stops the training."""
    extra = {"lora_r": 4} if mode == "lora" else {}
    clf = llmhead.from_pretrained(tiny_llama, mode=mode, dtype="float32", **extra)
    options = {"warm_start": False} if mode == "lora" else {}
    rows = sentiment_rows(1)
    clf.fit(rows, rows, class_weights=[1, 0], batch_size=1, epochs=1, lr=1e-2, progress=False, **options)
    assert len(clf.predict(rows)) == len(rows)


def test_multilabel_thresholds_are_tuned_on_validation(tiny_llama):
    """Each label's threshold reaches the best F1 any threshold of 0.05, 0.10, ..., 0.95 reaches on the validation
    predictions (scikit-learn's F1, computed here), where 0.5 would not for some label; predictions use them."""
    from sklearn.metrics import f1_score

    rows = [
        {"text": r["text"], "tags": [r["label"]] + (["film"] if "film" in r["text"] else [])} for r in sentiment_rows(3)
    ]
    # the last token alone: a fit imperfect enough that 0.5 is not every label's best threshold (the default
    # last+mean features separate these rows at any threshold)
    clf = llmhead.from_pretrained(tiny_llama, task="multilabel", dtype="float32", pooling="last")
    clf.fit(rows, rows, label="tags", epochs=5, progress=False)
    names, thresholds = clf.labels.names, clf.labels.thresholds
    assert len(thresholds) == len(names) == 3
    proba = clf.predict_proba(rows)
    truth = np.array([[name in r["tags"] for name in names] for r in rows], dtype=int)

    def f1(k: int, threshold: float) -> float:
        return f1_score(truth[:, k], proba[:, k] >= threshold, zero_division=0)

    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    best = [max(f1(k, t) for t in grid) for k in range(len(names))]
    assert any(b > f1(k, 0.5) for k, b in enumerate(best)), best  # here a fixed 0.5 is not the best choice
    for k, name in enumerate(names):
        assert f1(k, thresholds[k]) >= best[k], f"{name}: threshold {thresholds[k]} is not the best on validation F1"
    assert clf.predict(rows) == [[n for n, p, t in zip(names, row, thresholds) if p >= t] for row in proba]
    untuned = llmhead.from_pretrained(tiny_llama, task="multilabel", dtype="float32")
    untuned.fit(rows, rows, label="tags", epochs=5, progress=False, tune_thresholds=False)
    assert all(t == 0.5 for t in untuned.labels.thresholds or [0.5])


def test_unloadable_hub_metric_fails_before_the_model_loads(tiny_llama, monkeypatch):
    from llmhead.model import backbone

    monkeypatch.setattr(backbone, "load_backbone", lambda *a, **k: pytest.fail("model loaded first"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="could not load the evaluate metric 'no_such_metric_xyz'"):
        llmhead.from_pretrained(tiny_llama, mode="lora").fit(sentiment_rows(1), metrics=["no_such_metric_xyz"])


def test_full_save_with_a_negative_layer_reloads_without_its_source(tmp_path):
    import shutil

    source = make_tiny(tmp_path / "src", "llama")
    clf = llmhead.from_pretrained(source, mode="full", dtype="float32", layer=-2)
    clf.fit(sentiment_rows(1), **FIT)
    assert len(clf.model.backbone.layers) == 1
    texts = [r["text"] for r in sentiment_rows(1)]
    reference = clf.logits(texts)
    clf.save(tmp_path / "m")
    shutil.rmtree(source)  # a full save carries its weights and tokenizer
    again = llmhead.load(tmp_path / "m")
    assert len(again.model.backbone.layers) == 1
    torch.testing.assert_close(again.logits(texts), reference, atol=0, rtol=0)


def test_length_grouped_sampler_is_a_seeded_permutation_of_similar_length_batches():
    from llmhead.finetuning.batches import EpochSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, 203).tolist()
    sampler = EpochSampler(203, seed=3, lengths=lengths, batch_size=8, mega=5)
    first = list(sampler)
    assert sorted(first) == list(range(203)) and first == list(sampler)  # a permutation, deterministic
    sampler.use_epoch(1)
    assert list(sampler) != first  # another order next epoch
    batches = [first[i : i + 8] for i in range(0, 203, 8)]
    assert len(batches[-1]) == 203 % 8  # the short batch comes last
    assert max(lengths[i] for i in batches[0]) == max(lengths[i] for b in batches[:-1] for i in b)  # longest first
    second = list(sampler)
    assert max(lengths[i] for i in second[:8]) == max(lengths[i] for i in second[:200])  # in every epoch
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    random_order = list(EpochSampler(203, seed=3))
    padded_random = sum(max(lengths[i] for i in random_order[j : j + 8]) * 8 for j in range(0, 200, 8))
    assert padded < 0.8 * padded_random  # far less padding than random batches


@pytest.mark.parametrize("examples", [10, None])
def test_warm_start_fits_the_head_on_a_sample_of_frozen_features(tiny_llama, monkeypatch, examples):
    """LoRA's warm start: frozen features of ``warm_start_examples`` training texts only (its last fifth stops
    it), or of every training and validation text with None; the head moves before any adapter trains."""
    import llmhead.strategies.finetune as strategy

    rows, val = sentiment_rows(4), sentiment_rows(1)
    computed, heads = [], []
    real_features, real_finetune = llmhead.Classifier.embed, strategy.finetune

    def spy_features(self, texts, *args, **kwargs):
        computed.append(len(texts))
        return real_features(self, texts, *args, **kwargs)

    def spy_finetune(model, *args, **kwargs):  # the head as the warm start left it
        heads.append({k: v.clone() for k, v in model.head.state_dict().items()})
        return real_finetune(model, *args, **kwargs)

    monkeypatch.setattr(llmhead.Classifier, "embed", spy_features)
    monkeypatch.setattr(strategy, "finetune", spy_finetune)
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4, head_hidden=[])
    clf.fit(rows, val, **{**FIT, "warm_start": True, "warm_start_examples": examples, "epochs": 1})
    assert computed == ([10] if examples else [len(rows), len(val)])
    fresh = clf.new_head().state_dict()
    assert not torch.equal(heads[0]["mlp.1.weight"], fresh["mlp.1.weight"])


def test_warm_start_examples_is_checked():
    with pytest.raises(ValueError, match="warm_start_examples must be an int >= 10"):
        llmhead.from_pretrained("smollm2-135m", mode="lora").fit(sentiment_rows(1), warm_start_examples=3)


@pytest.mark.parametrize("losses, best", [([0.5, 0.3, 0.9], 1), ([0.5, 0.3, 0.2], 2)])
def test_finetuning_ends_on_the_best_validated_weights(tiny_llama, monkeypatch, losses, best):
    """The weights after fit are those of the best evaluation: an earlier one is restored from its copy; when the
    final one is best, they are already in place and no copy of them is made."""
    from llmhead.data.labels import LabelSpace
    from llmhead.finetuning import best as best_weights
    from llmhead.finetuning import loop as ft
    from llmhead.finetuning.adapters import trainable_state

    scripted, real_loss = iter(losses), LabelSpace.loss

    def loss(self, logits, targets, *args, **kwargs):  # validation (no grad) reads the scripted values
        out = real_loss(self, logits, targets, *args, **kwargs)
        return out if torch.is_grad_enabled() else torch.tensor(next(scripted))

    seen, copies, real_evaluate, real_state = [], [], ft.evaluate, trainable_state
    real_keep = best_weights.BestWeights.keep

    def evaluate(accelerator, model, *args, **kwargs):
        out = real_evaluate(accelerator, model, *args, **kwargs)
        seen.append(real_state(accelerator.unwrap_model(model)))
        return out

    monkeypatch.setattr(LabelSpace, "loss", loss)
    monkeypatch.setattr(ft, "evaluate", evaluate)
    monkeypatch.setattr(best_weights.BestWeights, "keep", lambda self, m: copies.append(1) or real_keep(self, m))
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4)
    clf.fit(sentiment_rows(2), sentiment_rows(1), **{**FIT, "epochs": 3})
    assert [r["best"] for r in clf.history] == [True, True, best == 2]
    final = real_state(clf.model)
    assert all(torch.equal(final[k], seen[best][k]) for k in final)
    assert not all(torch.equal(final[k], seen[0][k]) for k in final)
    assert len(copies) == 2  # the copies of evaluations 1 and 2; never of the final one


def test_lora_has_no_dropout_by_default(tiny_llama):
    """peft's default: dropout masks made CPU LoRA fits ~1.4x as long (benchmarks/lora_dropout.py)."""
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4)
    clf.fit(sentiment_rows(1), **{**FIT, "epochs": 1})
    dropouts = [m for name, m in clf.model.backbone.named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(isinstance(m, torch.nn.Identity) for m in dropouts)
    assert llmhead.from_pretrained(tiny_llama, mode="lora", lora_dropout=0.1).config.lora_dropout == 0.1


def test_lora_adapts_the_attention_projections_by_default(tiny_llama):
    """lora_targets='attention' (the default): q/k/v/o of every block, none of the MLP; 'all-linear' takes both."""
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4)
    clf.fit(sentiment_rows(1), **{**FIT, "epochs": 1})
    adapted = {
        n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in clf.model.backbone.named_parameters() if "lora_" in n
    }
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}
    every = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=4, lora_targets="all-linear")
    every.fit(sentiment_rows(1), **{**FIT, "epochs": 1})
    names = {
        n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in every.model.backbone.named_parameters() if "lora_" in n
    }
    assert names == adapted | {"gate_proj", "up_proj", "down_proj"}


def test_attention_targets_by_architecture():
    """GPT-2 names its attention output c_proj, as its MLP's: only attn.c_proj is matched. A model without an
    attention module is refused with what to do instead."""
    from transformers import GPT2Config, GPT2Model

    from llmhead.finetuning.adapters import attention_names

    gpt2 = GPT2Model(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0))
    assert attention_names(gpt2) == ["attn.c_attn", "attn.c_proj"]
    mlp_only = torch.nn.ModuleDict(
        {"layers": torch.nn.ModuleList([torch.nn.ModuleDict({"mlp": torch.nn.Linear(2, 2)})])}
    )
    with pytest.raises(ValueError, match="found no attention projections.*lora_targets='all-linear'"):
        attention_names(mlp_only)

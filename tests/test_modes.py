"""Training modes on tiny in-process models: exactly which parameters change, QLoRA is 4-bit while the
head is not, the playbook options, save -> load of adapters and fine-tuned weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny, sentiment_rows

import llmhead


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
    clf = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32")
    before = snapshot(clf)
    clf.fit(sentiment_rows(2), **FIT)
    assert changed(before, clf) == {k for k in before if "rotary" not in k}


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
    clf = llmhead.from_pretrained(
        tiny_llama, mode=mode, dtype="float32", head_hidden=[], head_bias=False, input_norm="scale"
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
    from llmhead.config import TrainConfig
    from llmhead.finetuning.optim import param_groups

    clf = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32")
    clf.model.backbone = clf.strategy.adapt(clf.model.backbone)
    groups = param_groups(clf.model, TrainConfig(lr=1e-3, layer_decay=0.5))
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


def test_class_weights_and_focal_loss(tiny_llama):
    from llmhead.data.labels import LabelSpace

    space = LabelSpace("classification", ["a", "b"])
    targets = torch.tensor([0, 0, 0, 1])
    weights = space.class_weights(targets)
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 2.0]))
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    plain = space.loss(logits, torch.tensor([0, 1]))
    assert space.loss(logits, torch.tensor([0, 1]), focal_gamma=2.0) < plain  # easy examples count less
    rows = sentiment_rows(2)[:10]
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32")
    clf.fit(rows, class_weights="auto", focal_gamma=1.0, **FIT)
    assert len(clf.predict(["x"])) == 1


def test_multilabel_thresholds_are_tuned_on_validation(tiny_llama):
    rows = [
        {"text": r["text"], "tags": [r["label"]] + (["film"] if "film" in r["text"] else [])} for r in sentiment_rows(3)
    ]
    clf = llmhead.from_pretrained(tiny_llama, task="multilabel", dtype="float32")
    clf.fit(rows, rows, label="tags", epochs=5)
    assert len(clf.labels.thresholds) == 3 and all(0.05 <= t <= 0.95 for t in clf.labels.thresholds)


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
    from llmhead.finetuning import evaluation
    from llmhead.finetuning import loop as ft

    scripted, real_loss = iter(losses), LabelSpace.loss

    def loss(self, logits, targets, *args, **kwargs):  # validation (no grad) reads the scripted values
        out = real_loss(self, logits, targets, *args, **kwargs)
        return out if torch.is_grad_enabled() else torch.tensor(next(scripted))

    seen, copies, real_evaluate, real_state = [], [], ft.evaluate, evaluation.trainable_state

    def evaluate(accelerator, model, *args, **kwargs):
        out = real_evaluate(accelerator, model, *args, **kwargs)
        seen.append(real_state(accelerator.unwrap_model(model)))
        return out

    monkeypatch.setattr(LabelSpace, "loss", loss)
    monkeypatch.setattr(ft, "evaluate", evaluate)
    monkeypatch.setattr(evaluation, "trainable_state", lambda m: copies.append(1) or real_state(m))
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

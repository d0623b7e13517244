"""Training options on tiny in-process models, through the public API only (``from_pretrained``, ``fit``, the
predictions, ``clf.history``, ``clf.model``, ``run_dir/train_log.jsonl``, ``cross_validate``): grad_accum, the
learning-rate schedule and its warmup, max_grad_norm, select_by, lora_dora, peft_config, grouped
cross-validation and a second fit. Each assertion fails if its option is ignored."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import CORPUS, sentiment_rows

import llmhead

LR = 1e-2
EVAL = sentiment_rows(1)  # 8 rows, an explicit eval set: training uses every training row, none is carved off


def rows(n: int, invert: bool = False) -> list[dict]:
    """``n`` distinct texts, labels alternating (``invert``: the other way round)."""
    return [{"text": f"{CORPUS[i % 8]} {i}", "label": ["pos", "neg"][(i + invert) % 2]} for i in range(n)]


def fit(model: str, train: list[dict], mode: str = "lora", model_options: dict | None = None, **options):
    """A classifier fit with a linear head, the backbone at the head's learning rate (so every parameter group
    has the same base lr, and the logged lr is that of all groups) and no warm start."""
    model_options = model_options or {}
    built = {"lora_r": 2} if mode == "lora" and "peft_config" not in model_options else {}
    clf = llmhead.from_pretrained(
        model, mode=mode, dtype="float32", head_hidden=[], dropout=0.0, **{**built, **model_options}
    )
    settings = dict(epochs=1, batch_size=4, lr=LR, backbone_lr_ratio=1.0, warm_start=False, progress=False)
    return clf.fit(train, EVAL, **{**settings, **options})


def logged_steps(run_dir) -> list[dict]:
    """The per-optimizer-step records of ``run_dir/train_log.jsonl`` (evaluations are logged as {"eval": ...})."""
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [r for r in records if "lr" in r]


def scheduler_lrs(name: str, lr: float, warmup: int, total: int) -> list[float]:
    """The learning rate after each of ``total`` optimizer steps of transformers' schedule ``name``."""
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    out = []
    for _ in range(total):
        optimizer.step()
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def state(clf) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in clf.model.state_dict().items()}


# ---- grad_accum ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grad_accum", [1, 2, 3])
def test_grad_accum_schedule_counts_optimizer_steps(tiny_llama, tmp_path, grad_accum):
    # 20 examples in batches of 2: 10 micro-batches per epoch; grad_accum=3 leaves a 1-batch step at each epoch's end
    n, batch_size, epochs = 20, 2, 2
    per_epoch = math.ceil(math.ceil(n / batch_size) / grad_accum)
    total = per_epoch * epochs  # 20, 10, 8: warmup_ratio 0.5 makes a whole number of warmup steps of each
    run_dir = tmp_path / "run"
    fit(
        tiny_llama,
        rows(n),
        batch_size=batch_size,
        grad_accum=grad_accum,
        epochs=epochs,
        schedule="linear",
        warmup_ratio=0.5,
        run_dir=str(run_dir),
    )
    steps = logged_steps(run_dir)
    assert [s["step"] for s in steps] == list(range(1, total + 1))  # one record per optimizer step
    assert [s["epoch"] for s in steps] == [e for e in range(1, epochs + 1) for _ in range(per_epoch)]
    lrs = [s["lr"] for s in steps]
    # a scheduler stepped on every micro-batch runs through the schedule grad_accum times too fast
    np.testing.assert_allclose(lrs, scheduler_lrs("linear", LR, total // 2, total), rtol=1e-6, atol=1e-12)
    assert lrs[-1] == 0 and min(lrs[:-1]) > 0, lrs  # the schedule ends exactly at the last optimizer step


def test_grad_accum_2_of_batches_of_2_trains_as_batches_of_4(tiny_llama, tmp_path):
    # float32 throughout and one data order for every batch size (no length grouping): two accumulated
    # micro-batches of 2 are then the same optimizer step as one batch of 4, up to float rounding
    common = dict(group_by_length=False, mixed_precision="no")
    four = state(fit(tiny_llama, rows(16), batch_size=4, **common))
    accumulated = state(fit(tiny_llama, rows(16), batch_size=2, grad_accum=2, **common))
    twos = state(fit(tiny_llama, rows(16), batch_size=2, **common))  # twice the optimizer steps: not the same
    assert max_difference(four, accumulated) < 1e-5
    assert max_difference(four, twos) > 1e-3


def test_grad_accum_logs_the_loss_of_the_whole_optimizer_step(tiny_llama, tmp_path):
    # The loss logged for an optimizer step is that of its examples: with two micro-batches of 2, the mean of their
    # two losses, which is the loss of the same 4 examples in one batch (same data order, float32).
    common = dict(group_by_length=False, mixed_precision="no", epochs=2)
    fit(tiny_llama, rows(16), batch_size=4, run_dir=str(tmp_path / "four"), **common)
    fit(tiny_llama, rows(16), batch_size=2, grad_accum=2, run_dir=str(tmp_path / "accumulated"), **common)
    four, accumulated = logged_steps(tmp_path / "four"), logged_steps(tmp_path / "accumulated")
    assert len(four) == len(accumulated) == 8
    np.testing.assert_allclose(
        [s["loss"] for s in accumulated], [s["loss"] for s in four], rtol=1e-4, err_msg="logged loss per step"
    )


# ---- schedule and warmup_ratio ------------------------------------------------------------------------------------
def formula_lr(schedule: str, step: int, warmup: int, total: int) -> float:
    """The learning rate after ``step`` optimizer steps: a linear ramp over ``warmup`` steps, then linear decay to
    0, half a cosine to 0, or constant."""
    if step < warmup:
        return LR * step / warmup
    progress = (step - warmup) / (total - warmup)
    if schedule == "linear":
        return LR * (1 - progress)
    if schedule == "cosine":
        return LR * 0.5 * (1 + math.cos(math.pi * progress))
    return LR


@pytest.mark.parametrize(
    "schedule,warmup_ratio",
    [("linear", 0.25), ("cosine", 0.25), ("constant", 0.25), ("linear", 0.0), ("cosine", 0.0)],
)
def test_schedule_and_warmup_follow_their_formulas(tiny_llama, tmp_path, schedule, warmup_ratio):
    total = 8  # 16 examples, batches of 4, 2 epochs
    warmup = int(warmup_ratio * total)  # 2 or 0, exactly
    run_dir = tmp_path / "run"
    fit(
        tiny_llama,
        rows(16),
        batch_size=4,
        epochs=2,
        schedule=schedule,
        warmup_ratio=warmup_ratio,
        run_dir=str(run_dir),
    )
    lrs = [s["lr"] for s in logged_steps(run_dir)]
    expected = [formula_lr(schedule, s, warmup, total) for s in range(1, total + 1)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6, atol=1e-12)
    if warmup:  # the first steps ramp up to the peak
        assert all(a < b for a, b in zip(lrs[: warmup - 1], lrs[1:warmup])) and lrs[warmup - 1] == pytest.approx(LR)
    else:  # no ramp: the first step already runs at the peak, and the decay starts at once
        assert 0.8 * LR < lrs[0] < LR
    if schedule == "constant":
        assert lrs[warmup:] == pytest.approx([LR] * (total - warmup))
    else:  # decays to 0 at the last step, never before
        assert lrs[-1] == pytest.approx(0, abs=1e-12) and min(lrs[:-1]) > 0


# ---- max_grad_norm ------------------------------------------------------------------------------------------------
def test_a_tiny_max_grad_norm_all_but_stops_the_weights(tiny_llama):
    # Gradients clipped to a norm of 1e-10 are far below AdamW's eps (1e-8): each update shrinks ~1e4-fold. Without
    # clipping the same run moves weights by ~lr per step. No weight decay, so only gradients move the weights.
    frozen = llmhead.from_pretrained(tiny_llama, dtype="float32").model.backbone
    pretrained = {k: v.detach().clone() for k, v in frozen.state_dict().items()}

    def moved(max_grad_norm) -> float:
        clf = fit(tiny_llama, rows(16), mode="full", max_grad_norm=max_grad_norm, weight_decay=0.0)
        return max_difference(clf.model.backbone.state_dict(), pretrained)

    free, clipped = moved(None), moved(1e-10)
    assert free > 1e-3, free
    assert 0 < clipped < 1e-3 * free, (clipped, free)


# ---- select_by ----------------------------------------------------------------------------------------------------
def best_flags(values: list[float], higher_is_better: bool) -> list[bool]:
    """For each evaluation: whether it beats every earlier one (by more than 1e-6, as the training loop counts)."""
    flags, best = [], None
    for v in values:
        better = best is None or (v > best + 1e-6 if higher_is_better else v < best - 1e-6)
        flags.append(better)
        best = v if better else best
    return flags


def eval_loss(clf) -> float:
    targets = torch.tensor([clf.labels.names.index(r["label"]) for r in EVAL])
    return float(torch.nn.functional.cross_entropy(clf.logits(EVAL), targets))


def test_default_patience_counts_epochs_not_evaluations(tiny_llama):
    # lr so small that the validation loss never improves after the first evaluation: every later one is stale.
    # Evaluated after every step, the default patience is 3 epochs' worth of evaluations (not 3 evaluations), so
    # the 2-epoch run makes all 8 of them; an explicit patience still counts evaluations.
    options = dict(epochs=2, eval_every=1, lr=1e-12)
    assert len(fit(tiny_llama, rows(16), **options).history) == 8
    assert len(fit(tiny_llama, rows(16), patience=2, **options).history) == 3


def test_select_by_marks_and_restores_the_best_evaluation_by_that_metric(tiny_llama):
    # An evaluation after every optimizer step and no early stopping: both runs train identically, and select_by
    # decides only which evaluation is best and whose weights are kept. float32 evaluations (no bf16 autocast), so
    # that the recorded losses can be recomputed from the final weights.
    options = dict(epochs=3, eval_every=1, patience=0, backbone_lr_ratio=0.1, mixed_precision="no")
    runs = {s: fit(tiny_llama, rows(16), select_by=s, **options) for s in ("loss", "accuracy")}
    by_loss, by_accuracy = runs["loss"].history, runs["accuracy"].history
    assert len(by_loss) == 12
    assert [(r["val_loss"], r["accuracy"]) for r in by_loss] == [(r["val_loss"], r["accuracy"]) for r in by_accuracy]
    loss_flags = best_flags([r["val_loss"] for r in by_loss], higher_is_better=False)
    accuracy_flags = best_flags([r["accuracy"] for r in by_loss], higher_is_better=True)
    assert loss_flags != accuracy_flags  # this run tells the two apart
    assert [r["best"] for r in by_loss] == loss_flags
    assert [r["best"] for r in by_accuracy] == accuracy_flags
    # the weights kept are those of the last evaluation marked best
    kept_by_loss = by_loss[max(i for i, f in enumerate(loss_flags) if f)]
    kept_by_accuracy = by_accuracy[max(i for i, f in enumerate(accuracy_flags) if f)]
    assert abs(kept_by_loss["val_loss"] - kept_by_accuracy["val_loss"]) > 1e-3  # different weights were kept
    assert eval_loss(runs["loss"]) == pytest.approx(kept_by_loss["val_loss"], abs=1e-4)
    assert eval_loss(runs["accuracy"]) == pytest.approx(kept_by_accuracy["val_loss"], abs=1e-4)
    assert runs["accuracy"].evaluate(EVAL)["accuracy"] == max(r["accuracy"] for r in by_accuracy)


# ---- lora_dora and peft_config ------------------------------------------------------------------------------------
def pretrained_weights(path: str) -> dict[str, torch.Tensor]:
    """The base model's weights as transformers loads them (names without any peft prefix)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(path, dtype=torch.float32).state_dict()


def adapted_module(name: str, part: str) -> str:
    """'base_model.model.layers.0.self_attn.q_proj.lora_A.default.weight' -> 'layers.0.self_attn.q_proj'."""
    return name.split(f".{part}")[0].removeprefix("base_model.model.")


def test_lora_dora_adds_magnitude_vectors_that_train(tiny_llama, tmp_path):
    base = pretrained_weights(tiny_llama)
    clf = fit(tiny_llama, rows(16), model_options={"lora_dora": True})
    params = dict(clf.model.backbone.named_parameters())
    magnitudes = {adapted_module(n, "lora_magnitude_vector"): p for n, p in params.items() if "lora_magnitude" in n}
    adapted = {adapted_module(n, "lora_A") for n in params if ".lora_A." in n}
    assert adapted and set(magnitudes) == adapted  # one magnitude vector per adapted projection
    for module, magnitude in magnitudes.items():
        # DoRA starts each magnitude at the row norms of the pretrained weight (lora_B is 0); training moves it
        initial = base[f"{module}.weight"].norm(dim=1)
        assert magnitude.requires_grad and magnitude.shape == initial.shape, module
        assert float((magnitude.detach() - initial).abs().max()) > 1e-4, f"{module}: magnitude did not train"
    plain = fit(tiny_llama, rows(16))
    assert not [n for n, _ in plain.model.backbone.named_parameters() if "lora_magnitude" in n]
    clf.save(tmp_path / "dora")
    again = llmhead.load(tmp_path / "dora")
    assert any("lora_magnitude" in n for n, _ in again.model.backbone.named_parameters())
    torch.testing.assert_close(again.logits(CORPUS), clf.logits(CORPUS), atol=1e-6, rtol=1e-6)


def test_peft_config_sets_rank_targets_and_scaling(tiny_llama, tmp_path):
    import peft

    config = peft.LoraConfig(r=3, lora_alpha=6, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    clf = fit(tiny_llama, rows(16), model_options={"peft_config": config})
    base = pretrained_weights(tiny_llama)
    expected = {}
    for name, weight in base.items():
        if name.endswith(("q_proj.weight", "v_proj.weight")):  # (out, in): A is (r, in), B is (out, r)
            module = name.removesuffix(".weight")
            expected[(module, "lora_A")] = (3, weight.shape[1])
            expected[(module, "lora_B")] = (weight.shape[0], 3)
    assert len(expected) == 8  # 2 blocks x (q_proj, v_proj) x (A, B)

    def adapter_shapes(backbone) -> dict:
        return {
            (adapted_module(n, part), part): tuple(p.shape)
            for n, p in backbone.named_parameters()
            for part in ("lora_A", "lora_B")
            if f".{part}." in n
        }

    assert adapter_shapes(clf.model.backbone) == expected  # r=3 (not lora_r), only q_proj and v_proj
    lora_layers = [m for m in clf.model.backbone.modules() if isinstance(getattr(m, "scaling", None), dict)]
    scalings = [m.scaling["default"] for m in lora_layers]
    assert len(scalings) == 4 and all(s == pytest.approx(6 / 3) for s in scalings)  # lora_alpha / r
    lora_b = [p for n, p in clf.model.backbone.named_parameters() if ".lora_B." in n]
    assert all(float(p.detach().abs().max()) > 0 for p in lora_b)  # the adapters trained (lora_B starts at 0)
    clf.save(tmp_path / "custom")
    again = llmhead.load(tmp_path / "custom")
    assert adapter_shapes(again.model.backbone) == expected
    torch.testing.assert_close(again.logits(CORPUS), clf.logits(CORPUS), atol=1e-6, rtol=1e-6)


# ---- grouped cross-validation -------------------------------------------------------------------------------------
def test_grouped_cross_validation_keeps_each_group_in_one_fold(tiny_llama):
    # 8 groups of 3 rows, each group holding both labels
    data = [{"text": f"{CORPUS[i % 8]} {i}", "label": ["pos", "neg"][i % 2], "g": f"g{i // 3}"} for i in range(24)]
    options = dict(folds=3, mode="probe", probe_c=1.0, dtype="float32")
    cv = llmhead.cross_validate(data, tiny_llama, group="g", **options)
    assert sorted(r["row"] for r in cv.oof) == list(range(1, 25))  # every row held out exactly once
    assert all(r["label"] == data[r["row"] - 1]["label"] for r in cv.oof)
    fold_of = {r["row"] - 1: r["fold"] for r in cv.oof}
    assert [f["fold"] for f in cv.folds] == [1, 2, 3]
    for f in cv.folds:
        held_out = {i for i, k in fold_of.items() if k == f["fold"]}
        trained_on = set(range(24)) - held_out
        assert f["n_heldout"] == len(held_out) and f["n_train"] == len(trained_on) == 24 - len(held_out)
        shared = {data[i]["g"] for i in held_out} & {data[i]["g"] for i in trained_on}
        assert not shared, f"fold {f['fold']}: groups {sorted(shared)} are in both its training and held-out rows"
    # the same folds without group= split some group: the grouping above is the option's doing
    plain = llmhead.cross_validate(data, tiny_llama, **options)
    folds_of_group = {}
    for r in plain.oof:
        folds_of_group.setdefault(data[r["row"] - 1]["g"], set()).add(r["fold"])
    assert any(len(folds) > 1 for folds in folds_of_group.values())


# ---- a second fit -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["lora", "full"])
def test_a_second_fit_starts_again_from_the_pretrained_weights(tiny_llama, mode):
    # fit on A, then on B (the same texts, labels swapped): the result is that of a fresh classifier fit on B once,
    # bit for bit, not B's training continued from A's weights (or adapters stacked on A's)
    first, second = rows(16), rows(16, invert=True)
    options = dict(epochs=1, batch_size=4, lr=LR, progress=False)
    clf = llmhead.from_pretrained(tiny_llama, mode=mode, dtype="float32")
    after_first = clf.fit(first, EVAL, **options).predict_proba(CORPUS)
    after_second = clf.fit(second, EVAL, **options).predict_proba(CORPUS)
    fresh = llmhead.from_pretrained(tiny_llama, mode=mode, dtype="float32").fit(second, EVAL, **options)
    assert np.array_equal(after_second, fresh.predict_proba(CORPUS))
    assert clf.history == fresh.history
    assert sorted(clf.model.state_dict()) == sorted(fresh.model.state_dict())
    assert np.abs(after_first - after_second).max() > 1e-2  # the second fit did train, on the second data


@pytest.mark.parametrize("mode", ["head", "lora"])
def test_the_seed_decides_a_fit_whatever_the_global_rng_holds(tiny_llama, mode):
    # Two fits from the same seed on the same data are the same model, whatever state the global torch RNG was in
    # (other code ran before): the head's initialisation and its training's dropout (head), LoRA's adapter
    # initialisation and the fine-tuning's dropout (lora) all come from the seed. Every test here that compares
    # two fits relies on it.
    options = dict(epochs=5, lr=LR) if mode == "head" else dict(epochs=1, batch_size=4, lr=LR, warm_start=False)
    probabilities = []
    for outside in (1, 2):
        torch.manual_seed(outside)
        clf = llmhead.from_pretrained(tiny_llama, mode=mode, dtype="float32")
        probabilities.append(clf.fit(rows(16), EVAL, progress=False, **options).predict_proba(CORPUS))
    assert np.array_equal(*probabilities)


@pytest.mark.parametrize("mode", ["head", "lora", "tfidf"])
def test_the_callers_torch_rng_is_left_as_it_was(tiny_llama, tmp_path, mode):
    # llmhead draws its random numbers from forks of the seed; the caller's generator gives none of them
    options = (
        dict(epochs=1) if mode == "head" else dict(epochs=1, batch_size=4, warm_start=False) if mode == "lora" else {}
    )
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    built = llmhead.from_pretrained(tiny_llama, mode=mode, **({} if mode == "tfidf" else {"dtype": "float32"}))
    clf = built.fit(rows(16), EVAL, progress=False, **options)
    clf.predict(CORPUS)
    llmhead.load(clf.save(tmp_path / "m")).predict(CORPUS)
    assert torch.equal(torch.random.get_rng_state(), before)


# ---- on_evaluate ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["head", "lora"])
def test_on_evaluate_hears_each_validation_record_as_it_is_made(tiny_llama, mode):
    # The callback gets every record of clf.history, in order, and the validation pass's time, with the
    # validation metrics of the task; the warm start's records (scored on a sample of the training
    # data) are not among them; nothing is left listening after the fit.
    heard = []
    clf = llmhead.from_pretrained(tiny_llama, mode=mode, dtype="float32", **({"lora_r": 2} if mode == "lora" else {}))

    def on_evaluate(record):
        heard.append(record)
        record["changed"] = True  # a copy: the history keeps its own

    options = dict(epochs=4, lr=LR, patience=0) if mode == "head" else dict(epochs=1, batch_size=4, eval_every=2)
    clf.fit(rows(16), EVAL, on_evaluate=on_evaluate, progress=False, **options)
    assert all(r.pop("eval_seconds") > 0 for r in heard)  # the validation pass's time, not kept in the history
    assert heard and [{k: v for k, v in r.items() if k != "changed"} for r in heard] == clf.history
    assert len(heard) == (4 if mode == "head" else 2)  # head: one per epoch; lora: steps 2 and 4 of 4
    assert all(0.0 <= r["accuracy"] <= 1.0 and "macro_f1" in r and "val_loss" in r for r in heard)
    assert not any("changed" in r for r in clf.history)
    clf.fit(rows(16), EVAL, progress=False, **options)  # no callback now: the old one hears nothing
    assert len(heard) == (4 if mode == "head" else 2)
    with pytest.raises(TypeError, match="on_evaluate must be a callable"):
        clf.fit(rows(16), EVAL, on_evaluate="print", progress=False, **options)


@pytest.mark.parametrize("mode", ["probe", "tfidf", "hybrid", "icl"])
def test_on_evaluate_is_refused_where_no_validation_pass_is_made(tiny_llama, mode):
    # refused, never ignored: these modes fit without validation passes, the callback would never be called
    clf = llmhead.from_pretrained(tiny_llama, mode=mode, **({} if mode == "tfidf" else {"dtype": "float32"}))
    with pytest.raises(ValueError, match=f"on_evaluate is not used by mode='{mode}'.*head, lmhead, lora"):
        clf.fit(rows(16), EVAL, on_evaluate=print, progress=False)
    assert clf.train_config is None and clf.history == []  # refused before anything was read or fit


# ---- max_pass_tokens ----------------------------------------------------------------------------------------------
def test_passes_cut_rows_evenly_and_drop_only_trailing_padding():
    from llmhead.finetuning.batches import passes

    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 2 + [0] * 4, [1] * 2 + [0] * 4, [1] + [0] * 5])
    batch = {"input_ids": torch.arange(30).reshape(5, 6), "attention_mask": mask, "targets": torch.arange(5)}
    assert passes(batch, None) == [batch] and passes(batch, 30) == [batch]
    cut = passes(batch, 18)  # 3 rows of 6 fit a pass: 5 rows go as 3 + 2
    assert [p["targets"].tolist() for p in cut] == [[0, 1, 2], [3, 4]]
    assert [p["input_ids"].shape for p in cut] == [(3, 6), (2, 2)]  # the second pass's longest row has 2 tokens
    assert torch.equal(cut[1]["input_ids"], batch["input_ids"][3:, :2])
    assert [p["targets"].tolist() for p in passes(batch, 24)] == [[0, 1, 2], [3, 4]]  # balanced: 4 fit, not 4 + 1
    assert [p["targets"].tolist() for p in passes(batch, 4)] == [[0], [1], [2], [3], [4]]  # one row over the cap
    left = {**batch, "attention_mask": mask.flip(1)}  # left padding: trimming would move every token
    assert all(p["input_ids"].shape[1] == 6 for p in passes(left, 12))


@pytest.mark.parametrize(
    "options", [{}, {"class_weights": [1.0, 3.0]}, {"grad_accum": 2}, {"task": "regression"}], ids=str
)
def test_passes_of_a_few_tokens_train_as_whole_batches(tiny_llama, options):
    # float32 and one data order: batches of 4 cut into passes of at most 12 tokens (one or two rows each) add up
    # to the whole batches' gradients, up to float rounding: with class weights (each pass weighted by its share),
    # accumulated over two batches, and for regression
    model = {"task": options.pop("task")} if "task" in options else {}
    data, evaluation = rows(16), EVAL
    if model:  # numeric targets
        data, evaluation = ([{**r, "label": float(i % 3)} for i, r in enumerate(d)] for d in (data, evaluation))
    trained = []  # the shapes of the training passes (feature and validation passes run without gradients)

    def record(module, args, kwargs):
        if torch.is_grad_enabled():
            trained.append(tuple(kwargs["input_ids"].shape))

    def run(max_pass_tokens):
        clf = llmhead.from_pretrained(
            tiny_llama, mode="lora", dtype="float32", head_hidden=[], dropout=0.0, lora_r=2, **model
        )
        clf.model.backbone.register_forward_pre_hook(record, with_kwargs=True)
        settings = dict(epochs=1, batch_size=4, lr=LR, backbone_lr_ratio=1.0, warm_start=False, progress=False)
        clf.fit(
            data,
            evaluation,
            max_pass_tokens=max_pass_tokens,
            group_by_length=False,
            mixed_precision="no",
            **settings,
            **options,
        )
        return state(clf)

    whole = run(None)
    assert all(r == 4 for r, _ in trained)
    trained.clear()
    cut = run(12)
    assert len(trained) > 4 and all(r * t <= 12 or r == 1 for r, t in trained), trained
    assert max_difference(whole, cut) < 1e-5


def test_auto_passes_on_the_cpu_and_a_number_is_refused_where_the_engine_accumulates_itself():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from llmhead.config.train import PASS_TOKENS
    from llmhead.finetuning.accel import accelerator_scope
    from llmhead.finetuning.loop import pass_tokens

    with accelerator_scope() as accelerator:
        assert (pass_tokens("auto", accelerator), pass_tokens(None, accelerator)) == (PASS_TOKENS, None)
        assert pass_tokens(300, accelerator) == 300
    # what pass_tokens reads of an Accelerator under DeepSpeed (no DeepSpeed run on a CPU machine)
    deepspeed = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, device=torch.device("cpu"))
    assert pass_tokens("auto", deepspeed) is None
    with pytest.raises(ValueError, match="max_pass_tokens=512 cannot split batches under DEEPSPEED"):
        pass_tokens(512, deepspeed)


def _split(targets, task="classification", seed=0, fraction=0.1):
    from types import SimpleNamespace

    from llmhead.strategies.splits import validation_split

    texts = [f"t{i}" for i in range(len(targets))]
    config = SimpleNamespace(task=task, seed=seed)
    train, val, y_train, y_val = validation_split(texts, torch.as_tensor(targets), fraction, config)
    return train, val, y_train, y_val


def test_the_validation_split_never_takes_the_only_example_of_a_class():
    from sklearn.model_selection import train_test_split

    from llmhead.data import DataError

    singleton = [0, 1] * 9 + [2]  # class 2 has one example: no stratified split, and a plain one can take it
    taken = [
        s for s in range(40) if "t18" in train_test_split([f"t{i}" for i in range(19)], test_size=2, random_state=s)[1]
    ]
    assert taken  # seeds where the plain split would have held class 2 out of training
    for seed in taken[:3] + [0, 1]:
        train, val, y_train, y_val = _split(singleton, seed=seed)
        assert "t18" in train and len(val) == 2 and set(y_train.tolist()) == {0, 1, 2}
    balanced = [0, 1, 2] * 10  # stratified as before: the same split as scikit-learn's
    train, val, _, _ = _split(balanced)
    expected = train_test_split([f"t{i}" for i in range(30)], test_size=3, random_state=0, stratify=balanced)
    assert (train, val) == (expected[0], expected[1])
    multi = [[1, 0]] * 9 + [[1, 1]]  # label 1 has one positive
    for seed in range(10):
        assert _split(multi, task="multilabel", seed=seed)[2][:, 1].sum() == 1
    with pytest.raises(DataError, match="without taking the only training example of a class: give an eval set"):
        _split([0, 1])


@pytest.mark.parametrize("call", ["predict", "predict_proba", "evaluate"])
def test_an_unfitted_classifier_says_so(tiny_llama, no_model_load, call):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32")
    with pytest.raises(RuntimeError, match=r"no trained head yet: call fit\(\) first"):
        getattr(clf, call)(rows(2) if call == "evaluate" else CORPUS)


@pytest.mark.parametrize(
    "model_options, fit_options, eval_given, message",
    [
        ({"task": "regression"}, {"focal_gamma": 2.0}, False, "focal_gamma=2.0 is a classification loss"),
        ({"task": "regression"}, {"class_weights": "auto"}, False, "class_weights is for classification and multi"),
        ({}, {"tune_thresholds": False}, False, "tune_thresholds chooses multilabel decision thresholds"),
        ({}, {"val_fraction": 0.4}, True, r"val_fraction=0.4 carves validation .* only when no eval set is given"),
        ({"pair_separator": " ### "}, {}, False, "pair_separator=' ### ' joins a text pair; text='text' is one column"),
    ],
)
def test_options_the_task_or_the_data_make_meaningless_are_refused(
    tiny_llama, no_model_load, model_options, fit_options, eval_given, message
):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", **model_options)
    regression = model_options.get("task") == "regression"
    data = [{"text": r["text"], "label": float(i)} for i, r in enumerate(rows(8))] if regression else rows(8)
    with pytest.raises(ValueError, match=message):
        clf.fit(data, data[:4] if eval_given else None, progress=False, **fit_options)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"task": "regression", "labels": ["a", "b"]}, "labels fixes the class order .* remove labels"),
        ({"layers": [1, 1]}, r"layers must not repeat, got \[1, 1\]"),
    ],
)
def test_model_options_that_would_be_ignored_are_refused(tiny_llama, options, message):
    with pytest.raises(ValueError, match=message):
        llmhead.from_pretrained(tiny_llama, dtype="float32", **options)


def test_keep_checkpoints_needs_checkpoint_every(tiny_llama, no_model_load, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32")
    with pytest.raises(ValueError, match="keep_checkpoints needs checkpoint_every"):
        clf.fit(rows(8), EVAL, run_dir=str(tmp_path / "r"), keep_checkpoints=3, progress=False)

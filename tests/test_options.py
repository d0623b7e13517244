"""Options are refused, never ignored: an option the chosen mode never reads, a value of the wrong type, a hub id
that cannot load; and the environment does not change how a head trains. All in-process and fast (no weights load,
except in the head-training tests at the end)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import sentiment_rows

import llmhead
from llmhead.config import (
    MODEL_FIELD_MODES,
    MODES,
    TRAIN_FIELD_MODES,
    FineTuneConfig,
    ModelConfig,
    TrainConfig,
    build,
    for_mode,
    options_table,
    upgrade,
    used_options,
)
from llmhead.model import backbone as bb

# ---- an option the mode never reads ---------------------------------------------------------------------------------
MODEL_UNUSED = [
    ("head", {"lora_r": 8}, r"lora_r is not used by mode='head' \(only by lora, qlora, auto\): remove it"),
    ("probe", {"lora_targets": ["q_proj"]}, r"lora_targets is not used by mode='probe'"),
    ("full", {"lora_dropout": 0.1}, r"lora_dropout is not used by mode='full' \(only by lora, qlora, auto\)"),
    ("head", {"probe": "svm"}, r"probe is not used by mode='head' \(only by probe, tfidf, hybrid, auto\)"),
    ("lora", {"probe_c": 1.0}, r"probe_c is not used by mode='lora'"),
    ("head", {"probe_alpha": 1.0}, r"probe_alpha is not used by mode='head' \(only by probe, tfidf, hybrid, auto\)"),
    ("head", {"icl_shots": 4}, r"icl_shots is not used by mode='head' \(only by icl, auto\)"),
    ("lmhead", {"icl_calibrate": False}, r"icl_calibrate is not used by mode='lmhead'"),
    ("probe", {"chat_template": "on"}, r"chat_template is not used by mode='probe'"),
    ("head", {"verbalizers": {"pos": "good"}}, r"verbalizers is not used by mode='head' .*head_init='lmhead'"),
    ("probe", {"verbalizers": {"pos": "good"}}, r"verbalizers is not used by mode='probe'"),
    ("head", {"freeze_blocks": 1}, r"freeze_blocks is not used by mode='head' \(only by lora, qlora, full, auto\)"),
    ("icl", {"pooling": "mean"}, r"pooling is not used by mode='icl'"),
    ("icl", {"max_length": 64}, r"max_length is not used by mode='icl'"),
    ("icl", {"layer": 1}, r"layer is not used by mode='icl'"),
    ("lmhead", {"head_hidden": [64]}, r"head_hidden is not used by mode='lmhead'"),
    ("probe", {"dropout": 0.3}, r"dropout is not used by mode='probe'"),
    ("probe", {"input_norm": "none"}, r"input_norm is not used by mode='probe'"),
    ("lora", {"long_inputs": "chunk"}, r"long_inputs is not used by mode='lora' \(only by head, probe, hybrid\)"),
    ("auto", {"long_inputs": "chunk"}, r"long_inputs is not used by mode='auto'.*rungs that truncate"),
    # an option that another option switches off
    ("head", {"head_hidden": [], "activation": "relu"}, r"activation='relu' is not used by a linear head"),
    ("head", {"layer_mix": "weighted"}, r"layer_mix='weighted' combines several blocks: set layers"),
    ("head", {"chunk_overlap": 16}, r"chunk_overlap is only used with long_inputs='chunk'"),
]

TRAIN_UNUSED = [
    ("head", {"run_dir": "r"}, r"run_dir is not used by mode='head' \(only by lora, qlora, full\): remove it"),
    ("head", {"run_dir": "r", "checkpoint_every": 2}, r"checkpoint_every is not used by mode='head'"),
    ("probe", {"run_dir": "r", "resume": True}, r"resume is not used by mode='probe'"),
    ("lmhead", {"run_dir": "r", "keep_checkpoints": 5}, r"keep_checkpoints is not used by mode='lmhead'"),
    ("auto", {"run_dir": "r"}, r"run_dir is not used by mode='auto'.*folds would share one run_dir"),
    ("head", {"grad_accum": 4}, r"grad_accum is not used by mode='head' \(only by lora, qlora, full, auto\)"),
    ("head", {"gradient_checkpointing": True}, r"gradient_checkpointing is not used by mode='head'"),
    ("probe", {"max_pass_tokens": 512}, r"max_pass_tokens is not used by mode='probe' \(only by lora, qlora, full"),
    ("head", {"neftune_alpha": 5.0}, r"neftune_alpha is not used by mode='head'.*neftune_alpha perturbs embeddings"),
    ("lmhead", {"backbone_lr_ratio": 0.5}, r"backbone_lr_ratio is not used by mode='lmhead'"),
    ("head", {"layer_decay": 0.9}, r"layer_decay is not used by mode='head'"),
    ("head", {"group_by_length": False}, r"group_by_length is not used by mode='head'"),
    ("head", {"warm_start": False}, r"warm_start is not used by mode='head'"),
    ("probe", {"warm_start_examples": 64}, r"warm_start_examples is not used by mode='probe'"),
    ("head", {"mixed_precision": "bf16"}, r"mixed_precision is not used by mode='head'.*always runs float32"),
    ("head", {"handle_sigterm": True}, r"handle_sigterm is not used by mode='head' \(only by lora, qlora, full\)"),
    ("auto", {"handle_sigterm": True}, r"handle_sigterm is not used by mode='auto'.*folds would share one run_dir"),
    ("head", {"schedule": "linear"}, r"schedule is not used by mode='head'"),
    ("head", {"select_by": "accuracy"}, r"select_by is not used by mode='head'"),
    ("head", {"eval_every": 10}, r"eval_every is not used by mode='head'"),
    ("head", {"max_grad_norm": None}, r"max_grad_norm is not used by mode='head'"),
    ("lmhead", {"metrics": ["f1"]}, r"metrics is not used by mode='lmhead'"),
    ("head", {"trackers": ["tensorboard"]}, r"trackers is not used by mode='head'"),
    ("icl", {"augment": 2}, r"augment is not used by mode='icl'.*only picks demonstrations"),
    ("icl", {"batch_size": 8}, r"batch_size is not used by mode='icl'"),
    ("icl", {"feature_cache": "cache"}, r"feature_cache is not used by mode='icl'"),
    ("probe", {"epochs": 5}, r"epochs is not used by mode='probe'"),
    ("probe", {"lr": 0.1}, r"lr is not used by mode='probe'"),
    ("icl", {"patience": 2}, r"patience is not used by mode='icl'"),
    ("probe", {"class_weights": "auto"}, r"class_weights is not used by mode='probe'"),
    ("icl", {"val_fraction": 0.2}, r"val_fraction is not used by mode='icl'"),
    ("lmhead", {"tune_thresholds": False}, r"tune_thresholds is not used by mode='lmhead'"),
    ("lora", {"epochs": 0}, r"epochs=0 \(the head as initialised\) is for modes head and lmhead, not 'lora'"),
]


@pytest.mark.parametrize("mode,options,message", MODEL_UNUSED, ids=lambda v: v if isinstance(v, str) else None)
def test_model_options_the_mode_never_reads_are_refused(mode, options, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(mode=mode, **options)


@pytest.mark.parametrize("mode,options,message", TRAIN_UNUSED, ids=lambda v: v if isinstance(v, str) else None)
def test_train_options_the_mode_never_reads_are_refused(mode, options, message):
    with pytest.raises(ValueError, match=r"^invalid configuration:(.|\n)*" + message):
        for_mode(build(TrainConfig, options), mode)


def test_the_same_options_pass_in_modes_that_read_them():
    ModelConfig(mode="lora", lora_r=8, lora_targets=["q_proj"], freeze_blocks=1)
    ModelConfig(mode="probe", probe="svm", probe_c=1.0)
    ModelConfig(mode="icl", icl_shots=4, chat_template="on", verbalizers={"pos": "good"})
    ModelConfig(mode="probe", probe="ridge", task="regression", probe_alpha=10.0)
    ModelConfig(mode="head", head_init="lmhead", head_hidden=[], verbalizers={"pos": "good"})
    ModelConfig(mode="head", layers=[1, 2], layer_mix="weighted", long_inputs="chunk", chunk_overlap=16)
    ModelConfig(mode="auto", lora_r=8, probe_c=1.0, icl_shots=2, verbalizers={"pos": "good"})
    ModelConfig(mode="lmhead", lora_alpha=32.0)  # equal to the default 32: not set
    for_mode(TrainConfig(run_dir="r", checkpoint_every=2, grad_accum=2, neftune_alpha=5.0), "lora")
    for_mode(TrainConfig(mixed_precision="bf16", handle_sigterm=True), "full")
    for_mode(TrainConfig(grad_accum=2, neftune_alpha=5.0, select_by="accuracy"), "auto")
    for_mode(TrainConfig(epochs=0), "lmhead")
    for_mode(TrainConfig(augment=2, augment_p=0.3), "probe")


@pytest.mark.parametrize("mode", MODES)
def test_defaults_pass_in_every_mode(mode):
    ModelConfig(mode=mode)
    for_mode(TrainConfig(), mode)


def test_the_table_names_real_fields_and_modes():
    from llmhead.config import LADDER_RUNGS
    from llmhead.selection.ladder import RUNGS

    assert LADDER_RUNGS == RUNGS
    for cls, table in ((ModelConfig, MODEL_FIELD_MODES), (TrainConfig, TRAIN_FIELD_MODES)):
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(table) <= names
        assert all(set(modes) <= set(MODES) - {"auto"} for modes in table.values())


def test_the_tables_follow_the_fields_order_and_the_readme_shows_them():
    """Fields are grouped by the modes that read them; README.md's tables are options_table's output."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for cls, table in ((ModelConfig, MODEL_FIELD_MODES), (TrainConfig, TRAIN_FIELD_MODES)):
        assert list(table) == [f.name for f in dataclasses.fields(cls) if f.name in table]
        assert options_table(cls) in readme, f"README.md: paste llmhead.config.options_table({cls.__name__})"


def test_head_warm_start_of_a_fine_tuning_run_keeps_its_options():
    """Classifier.fit derives the warm start as for_mode(replace(cfg, epochs=None, patience=None), 'head')."""
    lora = for_mode(TrainConfig(run_dir="r", checkpoint_every=2, grad_accum=2, gradient_checkpointing=True), "lora")
    # LoRA's defaults (config/train.py); patience stays None: the loop counts 3 epochs' worth of evaluations
    assert isinstance(lora, FineTuneConfig) and (lora.epochs, lora.batch_size, lora.patience) == (2, 16, None)
    warm = for_mode(dataclasses.replace(lora, epochs=None, patience=None), "head")
    assert (warm.epochs, warm.patience, warm.run_dir, warm.grad_accum, warm.batch_size) == (100, 10, "r", 2, 16)
    assert dataclasses.asdict(warm).keys() == dataclasses.asdict(TrainConfig()).keys()
    with pytest.raises(ValueError, match="run_dir is not used by mode='probe'"):  # only the head warm start
        for_mode(lora, "probe")


@pytest.mark.parametrize(
    "mode, expected",
    [("head", (100, 32, 10)), ("lmhead", (100, 32, 10)), ("lora", (2, 16, None)), ("full", (1, 32, None))],
)
def test_per_mode_defaults_and_what_a_user_sets_wins(mode, expected):
    cfg = for_mode(TrainConfig(), mode)
    assert (cfg.epochs, cfg.batch_size, cfg.patience) == expected
    mine = for_mode(TrainConfig(epochs=5, batch_size=8, patience=2), mode)
    assert (mine.epochs, mine.batch_size, mine.patience) == (5, 8, 2)
    assert TrainConfig().batch_size is None and for_mode(TrainConfig(), "auto").batch_size is None  # each rung's own


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("head", ("last+mean", 0.75)),
        ("probe", ("last+mean", 0.75)),
        ("hybrid", ("last+mean", 0.75)),
        ("lmhead", ("last", None)),
        ("lora", ("last+mean", None)),  # fine-tuning: every block, every token's state reaches the head
        ("full", ("last+mean", None)),
        ("icl", (None, None)),  # reads no pooled vector
        ("tfidf", (None, None)),
        ("auto", (None, None)),  # each rung fills its own
    ],
)
def test_per_mode_feature_defaults_and_what_a_user_sets_wins(mode, expected):
    c = ModelConfig(mode=mode, **({"probe": "logreg"} if mode in ("tfidf", "hybrid") else {}))
    assert (c.pooling, c.layer) == expected
    if expected[0] is not None and mode != "lmhead":  # lmhead reads the LM head's input, nothing else
        mine = ModelConfig(mode=mode, pooling="mean", layer=-2)
        assert (mine.pooling, mine.layer) == ("mean", -2)
        assert ModelConfig(mode=mode, layers=[1, 2]).layer is None  # layers instead of one layer
    head_from_lm = ModelConfig(mode="head", head_init="lmhead", head_hidden=[])  # reads the LM head's input
    assert (head_from_lm.pooling, head_from_lm.layer) == ("last", None)
    with pytest.raises(ValueError, match=r"layer must be .* or a fraction of the depth in \(0, 1\)"):
        ModelConfig(layer=1.0)


def test_a_save_from_before_the_feature_defaults_keeps_reading_the_final_output():
    old = {"mode": "head", "pooling": "last", "layer": None, "layers": None, "head_init": "default"}
    assert ModelConfig(**upgrade(ModelConfig, old)).layer == -1  # the final output, as when it was saved
    for kept in ({**old, "layers": [2, 4]}, {**old, "head_init": "lmhead"}, {**old, "mode": "lora"}):
        assert upgrade(ModelConfig, kept)["layer"] is None
    new = ModelConfig(mode="probe")
    assert upgrade(ModelConfig, dataclasses.asdict(new))["layer"] == 0.75
    # a fine-tuned head whose pooling was left unnamed read the last token; today's saves name last+mean
    unnamed = {"mode": "lora", "layer": None, "layers": None, "head_init": "default"}
    assert ModelConfig(**upgrade(ModelConfig, unnamed)).pooling == "last"
    assert upgrade(ModelConfig, dataclasses.asdict(ModelConfig(mode="full")))["pooling"] == "last+mean"


def test_the_linear_model_defaults_to_the_tasks():
    """probe=None gives regression ridge and the other tasks logreg (modes probe, tfidf, hybrid); a model the task
    cannot use is still refused; saves from before (probe='logreg' in every mode) load."""
    for mode in ("probe", "tfidf", "hybrid"):
        assert ModelConfig(mode=mode, task="regression").probe == "ridge"
        assert ModelConfig(mode=mode).probe == ModelConfig(mode=mode, task="multilabel").probe == "logreg"
    assert ModelConfig(mode="head", task="regression").probe is None  # no linear model to choose
    with pytest.raises(ValueError, match=r"probe='logreg' does not fit task='regression'"):
        ModelConfig(mode="probe", task="regression", probe="logreg")
    with pytest.raises(ValueError, match=r"probe is not used by mode='head'"):
        ModelConfig(mode="head", probe="logreg")
    with pytest.raises(ValueError, match=r"probe='logreg' does not fit task='regression'"):
        ModelConfig(mode="auto", task="regression", probe="logreg")  # refused before the ladder runs anything
    assert ModelConfig(mode="auto", task="regression", probe_alpha=3.0).probe_alpha == 3.0  # its rungs' ridge
    old = {**dataclasses.asdict(ModelConfig(mode="lora")), "probe": "logreg"}
    assert ModelConfig(**upgrade(ModelConfig, old)).probe is None
    old = {**dataclasses.asdict(ModelConfig(mode="probe")), "probe": "svm"}
    assert ModelConfig(**upgrade(ModelConfig, old)).probe == "svm"


def test_a_save_from_before_the_full_default_keeps_its_frozen_blocks():
    """Saves before FULL_FROZEN wrote freeze_blocks=0 for every mode: a full model trained every block and keeps 0;
    a mode that never reads it (0 is no longer its default) loads as if unset instead of being refused."""
    for mode in ("head", "probe", "lmhead"):
        old = {**dataclasses.asdict(ModelConfig(mode=mode)), "freeze_blocks": 0}
        assert ModelConfig(**upgrade(ModelConfig, old)).freeze_blocks is None
    for mode in ("full", "lora"):
        old = {**dataclasses.asdict(ModelConfig(mode=mode)), "freeze_blocks": 0}
        assert ModelConfig(**upgrade(ModelConfig, old)).freeze_blocks == 0
    assert ModelConfig(mode="full").freeze_blocks == 0.5 and ModelConfig(mode="lora").freeze_blocks == 0
    with pytest.raises(ValueError, match=r"freeze_blocks is not used by mode='head'"):
        ModelConfig(mode="head", freeze_blocks=0)  # set by the caller today: refused, as any unused option


def test_used_options_keeps_what_each_rung_reads():
    options = {"lora_r": 8, "verbalizers": {"pos": "good"}, "probe_c": 1.0, "template": "Review: {text}"}
    assert used_options(ModelConfig, options, "probe") == {"probe_c": 1.0, "template": "Review: {text}"}
    assert used_options(ModelConfig, options, "icl") == {"verbalizers": {"pos": "good"}, "template": "Review: {text}"}
    assert used_options(ModelConfig, {**options, "head_init": "lmhead"}, "head") == {
        "verbalizers": {"pos": "good"},
        "template": "Review: {text}",
        "head_init": "lmhead",
    }
    fit = {"run_dir": "r", "grad_accum": 2, "lr": 0.1, "batch_size": 8, "progress": False}
    assert used_options(TrainConfig, fit, "icl") == {"progress": False}
    assert used_options(TrainConfig, fit, "head") == {"lr": 0.1, "batch_size": 8, "progress": False}


def test_options_for_a_mode_are_refused_before_weights_load(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32")
    with pytest.raises(ValueError, match=r"checkpoint_every is not used by mode='head'"):
        clf.fit(sentiment_rows(1), run_dir=str(tmp_path / "run"), checkpoint_every=2, epochs=1)
    assert not clf.loaded and not (tmp_path / "run").exists()  # nothing loaded, nothing written
    with pytest.raises(ValueError, match=r"lora_r is not used by mode='head'"):
        llmhead.from_pretrained(tiny_llama, lora_r=4)


# ---- a value of the wrong type ------------------------------------------------------------------------------------
MODEL_TYPES = [
    ({"seed": "x"}, r"seed must be an int in \[0, 2\*\*32 - 1\].*got 'x'"),
    ({"seed": True}, r"seed must be an int .*got True"),
    ({"seed": -1}, r"seed must be an int .*got -1"),
    ({"seed": 2.0}, r"seed must be an int .*got 2.0"),
    ({"model": 3}, r"model must be a non-empty string .*got 3"),
    ({"mode": "lora", "lora_alpha": "32"}, r"lora_alpha must be a number > 0, got '32'"),
    ({"mode": "lora", "lora_r": True}, r"lora_r must be an int >= 1, got True"),
    ({"mode": "lora", "lora_targets": 5}, r"lora_targets must be 'attention', 'all-linear' or a non-empty list"),
    ({"mode": "lora", "lora_dropout": "0.1"}, r"lora_dropout must be a number in \[0, 1\), got '0.1'"),
    ({"mode": "lora", "peft_config": {"r": 8}}, r"peft_config must be a peft.PeftConfig"),
    ({"mode": "icl", "icl_instruction": 5}, r"icl_instruction must be a string or None, got 5"),
    ({"mode": "icl", "icl_separator": None}, r"icl_separator must be a string, got None"),
    ({"mode": "icl", "icl_shots": True}, r"icl_shots must be an int >= 0"),
    ({"pair_separator": 1}, r"pair_separator must be a string, got 1"),
    ({"mode": "probe", "probe_c": "0.1"}, r"probe_c must be a number > 0 or None, got '0.1'"),
    ({"mode": "probe", "probe_c": True}, r"probe_c must be a number > 0 or None, got True"),
    ({"mode": "probe", "probe": "ridge", "task": "regression", "probe_alpha": 0}, r"probe_alpha must be a number > 0"),
    ({"layer": True}, r"layer must be a non-zero int"),
    ({"layers": [True, 2]}, r"layers must be a non-empty list of ints"),
    ({"activation": ["gelu"]}, r"activation must be one of \['gelu', 'relu', 'silu', 'tanh'\], got \['gelu'\]"),
    ({"pooling": ["last"]}, r"pooling must be one of"),
    ({"dropout": "0.1"}, r"dropout must be a number in \[0, 1\), got '0.1'"),
    ({"dropout": float("nan")}, r"dropout must be a number in \[0, 1\), got nan"),
    ({"max_length": "512"}, r"max_length must be an int >= 2, got '512'"),
    (
        {"mode": "full", "freeze_blocks": False},
        r"freeze_blocks must be an int >= 0 \(blocks\) or a float in \[0, 1\) \(a share of the depth\), got False",
    ),
    ({"mode": "full", "freeze_blocks": 1.0}, r"freeze_blocks must be an int >= 0 .* got 1\.0"),
    ({"mode": "lora", "freeze_blocks": -1}, r"freeze_blocks must be an int >= 0 .* got -1"),
    ({"long_inputs": "chunk", "chunk_overlap": "8"}, r"chunk_overlap must be an int >= 0, got '8'"),
    ({"head_bias": "false"}, r"head_bias must be true or false, got 'false'"),
]

TRAIN_TYPES = [
    ({"lr": "1e-3"}, r"lr must be a positive number, got '1e-3'"),
    ({"lr": True}, r"lr must be a positive number, got True"),
    ({"lr": float("inf")}, r"lr must be a positive number, got inf"),
    ({"epochs": False}, r"epochs must be an int >= 0 .*got False"),
    ({"epochs": 2.5}, r"epochs must be an int >= 0 .*got 2.5"),
    ({"batch_size": "32"}, r"batch_size must be an int >= 1 or None, got '32'"),
    ({"max_pass_tokens": 0}, r"max_pass_tokens must be an int >= 1 \(tokens per forward pass\), 'auto' or None"),
    ({"max_pass_tokens": "many"}, r"max_pass_tokens must be an int >= 1 .*got 'many'"),
    ({"patience": True}, r"patience must be an int >= 0 .*got True"),
    ({"augment": True}, r"augment must be an int >= 0"),
    ({"augment": 1, "augment_ops": [["mask"]]}, r"augment_ops must be a non-empty list from"),
    ({"augment_p": 0.5}, r"augment_p is only used with augment > 0"),
    ({"class_weights": ["a", 1]}, r"class_weights must be None, 'auto' or a list of numbers >= 0"),
    ({"class_weights": "balanced"}, r"class_weights must be None, 'auto' or a list of numbers >= 0"),
    ({"metrics": "accuracy"}, r"metrics must be a list of names, got 'accuracy'"),
    ({"trackers": [1]}, r"trackers must be a list of names, got \[1\]"),
    ({"select_by": 5}, r"select_by must be 'loss' or a validation metric"),
    ({"feature_cache": 5}, r"feature_cache must be a directory path"),
    ({"run_dir": 5}, r"run_dir must be a directory path"),
    ({"warmup_ratio": "0.1"}, r"warmup_ratio must be a number in \[0, 1\), got '0.1'"),
    ({"max_grad_norm": "1"}, r"max_grad_norm must be a number > 0 or None, got '1'"),
    ({"schedule": ["cosine"]}, r"schedule must be one of"),
    ({"mixed_precision": 16}, r"mixed_precision must be one of"),
    ({"handle_sigterm": "yes"}, r"handle_sigterm must be true or false, got 'yes'"),
    ({"keep_checkpoints": 3}, r"keep_checkpoints needs run_dir"),
]


@pytest.mark.parametrize("options,message", MODEL_TYPES)
def test_model_values_of_the_wrong_type_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**options)


@pytest.mark.parametrize("options,message", TRAIN_TYPES)
def test_train_values_of_the_wrong_type_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_sections_that_are_not_mappings_and_keys_that_are_not_names():
    with pytest.raises(ValueError, match=r"the train section must be a mapping of key: value, got \[1, 2\]"):
        build(TrainConfig, [1, 2], where="train.")
    with pytest.raises(ValueError, match=r"key train.1 in the train section is not a name"):
        build(TrainConfig, {1: 2}, where="train.")
    with pytest.raises(ValueError, match=r"invalid configuration in model: seed must be an int"):
        build(ModelConfig, {"seed": "x"}, where="model.")


# ---- hub ids ------------------------------------------------------------------------------------------------------
def test_hub_id_offline_is_refused_at_from_pretrained_naming_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read when resolving, so no request is ever made
    with pytest.raises(bb.HubModelError) as err:
        llmhead.from_pretrained("nobody/does-not-exist-xyz")
    message = str(err.value)
    assert "'nobody/does-not-exist-xyz'" in message and "offline" in message
    assert "not a built-in alias, a .gguf file or a local transformers folder" in message
    assert "smollm2-135m" in message and "gemma3-270m" in message
    assert isinstance(err.value, OSError)


@pytest.mark.parametrize("what", ["config", "tokenizer"])
def test_hub_id_that_cannot_load_names_the_id_before_any_weights(monkeypatch, what):
    """A hub id whose files cannot be fetched when they are first needed (config and tokenizer load before weights)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # what transformers reads: no network
    source = bb.Source("nobody/does-not-exist-xyz", "pretrained")
    load = bb.model_config if what == "config" else bb.load_tokenizer
    with pytest.raises(bb.HubModelError, match=rf"cannot load the {what} of model 'nobody/does-not-exist-xyz'") as e:
        load(source)
    assert "offline" in str(e.value) and "smollm2-135m" in str(e.value)


@pytest.mark.parametrize("name", ["my model", "x--y/z", "-bad"])
def test_names_that_are_neither_a_path_nor_a_hub_id_are_refused_at_from_pretrained(name):
    with pytest.raises(ValueError, match=r"nor a hub id .*Built-in aliases: smollm2-135m"):
        llmhead.from_pretrained(name)


# ---- the environment does not change head training -------------------------------------------------------------
@pytest.mark.parametrize(
    "variable,value", [("ACCELERATE_MIXED_PRECISION", "bf16"), ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")]
)
def test_accelerate_environment_does_not_change_head_training(tiny_llama, monkeypatch, variable, value):
    def head_state() -> dict[str, torch.Tensor]:
        clf = llmhead.from_pretrained(tiny_llama, mode="head", dtype="float32")
        clf.fit(sentiment_rows(2), epochs=4, patience=0, lr=3e-3, progress=False)
        return {k: v.clone() for k, v in clf.model.head.state_dict().items()}

    monkeypatch.delenv(variable, raising=False)
    plain = head_state()
    monkeypatch.setenv(variable, value)
    with_env = head_state()
    assert plain.keys() == with_env.keys()
    for name in plain:
        assert torch.equal(plain[name], with_env[name]), name


def test_the_accelerator_ignores_the_environment(monkeypatch):
    from llmhead.finetuning.accel import accelerator_scope

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    with accelerator_scope() as accelerator:
        assert accelerator.mixed_precision == "no" and accelerator.gradient_accumulation_steps == 1
    with accelerator_scope(gradient_accumulation_steps=2) as accelerator:  # grad_accum, not the variable's 4
        assert accelerator.gradient_accumulation_steps == 2

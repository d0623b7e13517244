"""Which modes read which option. An option the chosen mode never reads is refused, never ignored:
``MODEL_FIELD_MODES`` and ``TRAIN_FIELD_MODES`` say which modes read each field (a field not listed is read by
every mode)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llmhead.config.checks import defaults, invalid, same
from llmhead.config.choices import MODES

# Read off Classifier.fit / _new_head / _backbone (classifier.py), finetune.py, training.py, modes.py, icl.py.
FINE_TUNING = ("lora", "qlora", "full")  # the backbone trains (finetune.py): checkpoints, mixed precision, ...
LORA = ("lora", "qlora")  # peft adapters (modes.lora_config)
MLP_HEAD = ("head", *FINE_TUNING)  # the head is the configurable MLPHead; lmhead's and probe's heads are fixed
TRAINED = ("head", "lmhead", *FINE_TUNING)  # a gradient-descent loop (training.py, finetune.py); probe and icl fit none
# pooled backbone states; icl scores label words instead, tfidf reads no model at all
FEATURES = ("head", "probe", "hybrid", "lmhead", *FINE_TUNING)
LINEAR = ("probe", "tfidf", "hybrid")  # a scikit-learn linear model, its penalty chosen by CV (strategies/probe.py)
POOLED = ("head", "probe", "hybrid")  # fixed pooled vectors of any block, long inputs chunked
LADDER_RUNGS = ("tfidf", "icl", "lmhead", "probe", "head", "hybrid", "lora", "full")  # llmhead.ladder.RUNGS
CONCRETE_MODES = tuple(m for m in MODES if m != "auto")
WITH_MODEL = tuple(m for m in CONCRETE_MODES if m != "tfidf")  # tfidf (strategies/tfidf.py) loads no weights

MODEL_FIELD_MODES: dict[str, tuple[str, ...]] = {  # in ModelConfig's order, by section
    # the model's weights and prompt (tfidf reads the texts as written and loads no weights)
    "template": WITH_MODEL,
    "dtype": WITH_MODEL,
    "speedups": WITH_MODEL,
    "trust_remote_code": WITH_MODEL,
    "threads": WITH_MODEL,  # torch's threads; tfidf runs scikit-learn only
    # features
    "pooling": FEATURES,  # (lmhead and head_init='lmhead' need 'last')
    "layer": (*POOLED, *FINE_TUNING),  # icl loads the whole causal LM; lmhead reads the LM head's input
    "layers": (*POOLED, *FINE_TUNING),
    "max_length": FEATURES,  # icl scores whole prompts, never truncated
    # long inputs
    "long_inputs": POOLED,
    "chunk_overlap": POOLED,  # (and only with long_inputs='chunk')
    "chunk_aggregate": POOLED,
    # MLP head
    "head_hidden": MLP_HEAD,
    "activation": MLP_HEAD,  # (and only with a hidden layer)
    "dropout": MLP_HEAD,
    "input_norm": MLP_HEAD,
    "head_bias": MLP_HEAD,
    "layer_mix": MLP_HEAD,  # (and only with layers)
    "head_init": MLP_HEAD,
    # label words
    "verbalizers": ("icl", "lmhead"),  # and the MLP_HEAD modes with head_init='lmhead'
    # probe (and the linear model of tfidf and hybrid)
    "probe": LINEAR,
    "probe_c": LINEAR,  # (and only with probe logreg or svm)
    "probe_alpha": LINEAR,  # (and only with probe='ridge')
    # icl
    "icl_shots": ("icl",),
    "icl_template": ("icl",),
    "icl_instruction": ("icl",),
    "icl_separator": ("icl",),
    "icl_calibrate": ("icl",),
    "chat_template": ("icl",),
    # LoRA
    "lora_r": LORA,  # (none of the lora_* fields is read when peft_config is given)
    "lora_alpha": LORA,
    "lora_dropout": LORA,
    "lora_targets": LORA,
    "lora_dora": LORA,
    "peft_config": LORA,
    # fine-tuning
    "freeze_blocks": FINE_TUNING,
}
TRAIN_FIELD_MODES: dict[str, tuple[str, ...]] = {  # in TrainConfig's order, by section
    # features
    "batch_size": FEATURES,  # icl scores with its own batches
    "feature_cache": FEATURES,
    # augmentation
    "augment": (*FEATURES, "tfidf"),  # icl trains nothing: it only picks demonstrations
    "augment_ops": (*FEATURES, "tfidf"),
    "augment_p": (*FEATURES, "tfidf"),
    # trained heads
    "epochs": TRAINED,
    "lr": TRAINED,
    "weight_decay": TRAINED,
    "warmup_ratio": TRAINED,
    "class_weights": TRAINED,
    "focal_gamma": TRAINED,
    "patience": TRAINED,
    "val_fraction": TRAINED,  # the linear models and icl carve no validation split
    "calibrate": TRAINED,  # fitted on the validation split, which the linear models and icl do not carve
    # multilabel thresholds (on the eval data, for the linear models)
    "tune_thresholds": ("head", *LINEAR, *FINE_TUNING),  # multilabel only; lmhead and icl are for classification
    # fine-tuning
    "backbone_lr_ratio": FINE_TUNING,
    "layer_decay": FINE_TUNING,
    "schedule": FINE_TUNING,  # head training (training.py) is always cosine after warmup
    "grad_accum": FINE_TUNING,
    "max_pass_tokens": FINE_TUNING,  # head training runs on cached features
    "max_grad_norm": FINE_TUNING,  # head training does not clip
    "mixed_precision": FINE_TUNING,  # head training runs float32 on cached features (training.py)
    "gradient_checkpointing": FINE_TUNING,
    "group_by_length": FINE_TUNING,
    "warm_start": FINE_TUNING,
    "warm_start_examples": FINE_TUNING,
    "select_by": FINE_TUNING,  # head training stops on the validation loss
    "metrics": FINE_TUNING,  # extra hub metrics are computed by finetune.py's evaluations only
    "eval_every": FINE_TUNING,  # head training evaluates once per epoch
    "neftune_alpha": FINE_TUNING,
    "trackers": FINE_TUNING,
    # checkpoints
    "run_dir": FINE_TUNING,
    "checkpoint_every": FINE_TUNING,
    "keep_checkpoints": FINE_TUNING,
    "resume": FINE_TUNING,
    "handle_sigterm": FINE_TUNING,  # head training is one process on cached features
}
# mode='auto' reads what any of its rungs reads, except: checkpointing (every fold of every rung would share run_dir)
# and chunked inputs (its other rungs truncate, and all of them share one feature pass).
NOT_FOR_AUTO = {
    "run_dir": "mode='auto' cross-validates, and its folds would share one run_dir",
    "checkpoint_every": "mode='auto' cross-validates, and its folds would share one run_dir",
    "keep_checkpoints": "mode='auto' cross-validates, and its folds would share one run_dir",
    "resume": "mode='auto' cross-validates, and its folds would share one run_dir",
    "handle_sigterm": "mode='auto' cross-validates, and its folds would share one run_dir",
    "long_inputs": "mode='auto' also runs rungs that truncate",
    "chunk_overlap": "mode='auto' also runs rungs that truncate",
    "chunk_aggregate": "mode='auto' also runs rungs that truncate",
}
WHY = {  # said after the list of modes, where the reason is not obvious
    "neftune_alpha": "neftune_alpha perturbs embeddings while fine-tuning",
    "augment": "icl trains nothing, it only picks demonstrations",
    "mixed_precision": "head training always runs float32 on cached float32 features",
    "calibrate": "probe and icl carve no validation split to calibrate on (probe='svm' and icl_calibrate calibrate "
    "in their own way)",
}


def modes_using(table: Mapping[str, tuple[str, ...]], name: str) -> tuple[str, ...]:
    """The modes that read field ``name`` according to ``table`` (MODEL_FIELD_MODES or TRAIN_FIELD_MODES), 'auto'
    included where one of its rungs reads it."""
    modes = table.get(name, CONCRETE_MODES)
    if name not in NOT_FOR_AUTO and any(m in modes for m in LADDER_RUNGS):
        modes = (*modes, "auto")
    return modes


def _unused_by_mode(cls, values: Mapping[str, Any], mode: str) -> dict[str, str]:
    """{field: problem} for each field in ``values`` that differs from its default while ``mode`` does not read it.
    Fields missing from ``values`` count as their defaults. ``cls.FIELD_MODES`` is the table to read."""
    base = defaults(cls)
    problems = {}
    for name, value in values.items():
        if name not in base or name == "mode" or same(value, base[name]):
            continue
        modes = modes_using(cls.FIELD_MODES, name)
        if mode in modes:
            continue
        head_init = values.get("head_init", base.get("head_init"))
        if name == "verbalizers" and head_init == "lmhead":
            if mode in MLP_HEAD:
                continue
            only = f"only by {', '.join(modes)}, and by {', '.join(MLP_HEAD)} with head_init='lmhead'"
        elif name == "verbalizers":
            only = f"only by {', '.join(modes)}, and with head_init='lmhead'"
        else:
            only = f"only by {', '.join(modes)}"
        why = f"; {WHY[name]}" if name in WHY else ""
        if mode == "auto" and name in NOT_FOR_AUTO:
            why = f"; {NOT_FOR_AUTO[name]}"
        problems[name] = f"{name} is not used by mode={mode!r} ({only}{why}): remove it"
    return problems


def unused_by_mode(config, mode: str) -> list[str]:
    """The problems of ``config``'s fields (ModelConfig or TrainConfig) that ``mode`` does not read."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return list(_unused_by_mode(type(config), values, mode).values())


def used_options(cls, options: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """``options`` (ModelConfig or TrainConfig fields) without those ``mode`` does not read: what a caller that
    runs several modes with one set of options (mode='auto', the ladder) passes to each of them."""
    unused = _unused_by_mode(cls, options, mode)
    return {k: v for k, v in options.items() if k not in unused}


def check(problems: list[str], config, mode: str | None = None) -> None:
    """Raise for ``problems``, after adding those every config shares: a boolean field that holds something else
    (a YAML "false" is a string, and truthy), and, with ``mode``, options that mode never reads."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.type in ("bool", bool) and not isinstance(value, bool):
            problems.append(f"{f.name} must be true or false, got {value!r}")
    if mode in MODES:  # options the mode never reads are refused, not ignored
        problems += unused_by_mode(config, mode)
    if problems:
        raise invalid(problems)


def options_table(cls) -> str:
    """A markdown table of which modes read the fields of ``cls`` (ModelConfig or TrainConfig): one row per set of
    modes, the fields in their order. README.md holds it (tests/test_options.py checks that it matches)."""
    rows: dict[tuple[str, ...], list[str]] = {}
    for f in dataclasses.fields(cls):
        if f.name != "mode":
            rows.setdefault(modes_using(cls.FIELD_MODES, f.name), []).append(f"`{f.name}`")
    lines = [f"| {cls.__name__} | {' | '.join(MODES)} |", "|---" * (len(MODES) + 1) + "|"]
    for modes, names in rows.items():
        lines.append(f"| {', '.join(names)} | " + " | ".join("✓" if m in modes else "" for m in MODES) + " |")
    return "\n".join(lines)

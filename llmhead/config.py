"""The schema: every option is a dataclass field that validates itself, with messages that name the
field, the value, what is allowed and how to fix it.

An option the chosen mode never reads is refused, never ignored: ``MODEL_FIELD_MODES`` and
``TRAIN_FIELD_MODES`` below say which modes read each field (a field not listed is read by every mode).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmhead.model.assets import DEFAULT_MODEL
from llmhead.model.heads import ACTIVATIONS, INITS, INPUT_NORMS, LAYER_MIXES
from llmhead.model.pooling import POOLINGS
from llmhead.model.precision import DTYPES
from llmhead.strategies.probe import PROBES

SPEEDUPS = ("short_attention", "fused_norms", "last_token_mlp", "mapped_load")  # llmhead/speedups/

TASKS = ("classification", "multilabel", "regression")
MODES = ("head", "lora", "qlora", "full", "probe", "icl", "lmhead", "auto")
FROZEN_MODES = ("head", "probe", "lmhead")  # the backbone is never trained: features are computed once, cached
CHAT = ("auto", "on", "off")
SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "no", "bf16", "fp16")

# ---- which modes read which option --------------------------------------------------------------------------------
# Read off Classifier.fit / _new_head / _backbone (classifier.py), finetune.py, training.py, modes.py, icl.py.
FINE_TUNING = ("lora", "qlora", "full")  # the backbone trains (finetune.py): checkpoints, mixed precision, ...
LORA = ("lora", "qlora")  # peft adapters (modes.lora_config)
MLP_HEAD = ("head", *FINE_TUNING)  # the head is the configurable MLPHead; lmhead's and probe's heads are fixed
TRAINED = ("head", "lmhead", *FINE_TUNING)  # a gradient-descent loop (training.py, finetune.py); probe and icl fit none
FEATURES = ("head", "probe", "lmhead", *FINE_TUNING)  # pooled backbone states; icl scores label words instead
LADDER_RUNGS = ("icl", "lmhead", "probe", "head", "lora", "full")  # what mode='auto' runs (llmhead.ladder.RUNGS)
CONCRETE_MODES = tuple(m for m in MODES if m != "auto")

MODEL_FIELD_MODES: dict[str, tuple[str, ...]] = {
    "pooling": FEATURES,  # (lmhead and head_init='verbalizer' need 'last')
    "layer": ("head", "probe", *FINE_TUNING),  # icl loads the whole causal LM; lmhead reads the LM head's input
    "layers": ("head", "probe", *FINE_TUNING),
    "layer_mix": MLP_HEAD,  # (and only with layers)
    "head_hidden": MLP_HEAD,
    "activation": MLP_HEAD,  # (and only with a hidden layer)
    "dropout": MLP_HEAD,
    "input_norm": MLP_HEAD,
    "head_bias": MLP_HEAD,
    "head_init": MLP_HEAD,
    "probe": ("probe",),
    "probe_c": ("probe",),
    "verbalizers": ("icl", "lmhead"),  # and the MLP_HEAD modes with head_init='verbalizer'
    "icl_shots": ("icl",),
    "icl_template": ("icl",),
    "icl_instruction": ("icl",),
    "icl_separator": ("icl",),
    "icl_calibrate": ("icl",),
    "chat_template": ("icl",),
    "max_length": FEATURES,  # icl scores whole prompts, never truncated
    "long_inputs": ("head", "probe"),
    "chunk_overlap": ("head", "probe"),  # (and only with long_inputs='chunk')
    "chunk_aggregate": ("head", "probe"),
    "lora_r": LORA,  # (none of the lora_* fields is read when peft_config is given)
    "lora_alpha": LORA,
    "lora_dropout": LORA,
    "lora_targets": LORA,
    "lora_dora": LORA,
    "peft_config": LORA,
    "freeze_blocks": FINE_TUNING,
}
TRAIN_FIELD_MODES: dict[str, tuple[str, ...]] = {
    "epochs": TRAINED,
    "batch_size": FEATURES,  # icl scores with its own batches
    "lr": TRAINED,
    "backbone_lr_ratio": FINE_TUNING,
    "layer_decay": FINE_TUNING,
    "weight_decay": TRAINED,
    "schedule": FINE_TUNING,  # head training (training.py) is always cosine after warmup
    "warmup_ratio": TRAINED,
    "grad_accum": FINE_TUNING,
    "max_grad_norm": FINE_TUNING,  # head training does not clip
    "precision": FINE_TUNING,  # head training runs float32 on cached features (training.py)
    "gradient_checkpointing": FINE_TUNING,
    "group_by_length": FINE_TUNING,
    "class_weights": TRAINED,
    "focal_gamma": TRAINED,
    "tune_thresholds": ("head", "probe", *FINE_TUNING),  # multilabel only; lmhead and icl are for classification
    "warm_start": FINE_TUNING,
    "warm_start_examples": FINE_TUNING,
    "patience": TRAINED,
    "select_by": FINE_TUNING,  # head training stops on the validation loss
    "metrics": FINE_TUNING,  # extra hub metrics are computed by finetune.py's evaluations only
    "eval_every": FINE_TUNING,  # head training evaluates once per epoch
    "val_fraction": TRAINED,  # probe and icl carve no validation split
    "feature_cache": FEATURES,
    "run_dir": FINE_TUNING,
    "checkpoint_every": FINE_TUNING,
    "keep_checkpoints": FINE_TUNING,
    "resume": FINE_TUNING,
    "trackers": FINE_TUNING,
    "augment": FEATURES,  # icl trains nothing: it only picks demonstrations
    "augment_ops": FEATURES,
    "augment_p": FEATURES,
    "neftune_alpha": FINE_TUNING,
}
# mode='auto' reads what any of its rungs reads, except: checkpointing (every fold of every rung would share run_dir)
# and chunked inputs (its other rungs truncate, and all of them share one feature pass).
NOT_FOR_AUTO = {
    "run_dir": "mode='auto' cross-validates, and its folds would share one run_dir",
    "checkpoint_every": "mode='auto' cross-validates, and its folds would share one run_dir",
    "keep_checkpoints": "mode='auto' cross-validates, and its folds would share one run_dir",
    "resume": "mode='auto' cross-validates, and its folds would share one run_dir",
    "long_inputs": "mode='auto' also runs rungs that truncate",
    "chunk_overlap": "mode='auto' also runs rungs that truncate",
    "chunk_aggregate": "mode='auto' also runs rungs that truncate",
}
WHY = {  # said after the list of modes, where the reason is not obvious
    "neftune_alpha": "neftune_alpha perturbs embeddings while fine-tuning",
    "augment": "icl trains nothing, it only picks demonstrations",
    "precision": "head training always runs float32 on cached float32 features",
}


def modes_using(table: Mapping[str, tuple[str, ...]], name: str) -> tuple[str, ...]:
    """The modes that read field ``name`` according to ``table`` (MODEL_FIELD_MODES or TRAIN_FIELD_MODES), 'auto'
    included where one of its rungs reads it."""
    modes = table.get(name, CONCRETE_MODES)
    if name not in NOT_FOR_AUTO and any(m in modes for m in LADDER_RUNGS):
        modes = (*modes, "auto")
    return modes


def _defaults(cls) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return out


def _same(a, b) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b  # lora_alpha=32.0 is the default 32
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # objects whose == is not a bool (arrays, ...) differ from a plain default
        return False


def _unused_by_mode(cls, values: Mapping[str, Any], mode: str) -> dict[str, str]:
    """{field: problem} for each field in ``values`` that differs from its default while ``mode`` does not read it.
    Fields missing from ``values`` count as their defaults."""
    table = MODEL_FIELD_MODES if cls is ModelConfig else TRAIN_FIELD_MODES
    defaults = _defaults(cls)
    problems = {}
    for name, value in values.items():
        if name not in defaults or name == "mode" or _same(value, defaults[name]):
            continue
        modes = modes_using(table, name)
        if mode in modes:
            continue
        head_init = values.get("head_init", defaults.get("head_init"))
        if name == "verbalizers" and head_init == "verbalizer":
            if mode in MLP_HEAD:
                continue
            only = f"only by {', '.join(modes)}, and by {', '.join(MLP_HEAD)} with head_init='verbalizer'"
        elif name == "verbalizers":
            only = f"only by {', '.join(modes)}, and with head_init='verbalizer'"
        else:
            only = f"only by {', '.join(modes)}"
        why = f"; {WHY[name]}" if name in WHY else ""
        if mode == "auto" and name in NOT_FOR_AUTO:
            why = f"; {NOT_FOR_AUTO[name]}"
        problems[name] = f"{name} is not used by mode={mode!r} ({only}{why}): remove it"
    return problems


def used_options(cls, options: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """``options`` (ModelConfig or TrainConfig fields) without those ``mode`` does not read: what a caller that
    runs several modes with one set of options (mode='auto', the ladder) passes to each of them."""
    unused = _unused_by_mode(cls, options, mode)
    return {k: v for k, v in options.items() if k not in unused}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A finite int or float; not a bool (True is an int to Python), not a string such as '1e-3'."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_str_list(value, allow_empty: bool = True) -> bool:
    return (
        isinstance(value, (list, tuple))
        and (allow_empty or len(value) > 0)
        and all(isinstance(v, str) and v for v in value)
    )


def _is_path(value) -> bool:
    return (isinstance(value, str) and value.strip() != "") or isinstance(value, os.PathLike)


def _choice(problems: list[str], config, name: str, allowed) -> None:
    value = getattr(config, name)
    if not (isinstance(value, str) and value in allowed):  # a str check first: a list is not hashable
        choices = sorted(allowed) if isinstance(allowed, Mapping) else tuple(allowed)
        problems.append(f"{name} must be one of {choices}, got {value!r}")


def invalid(problems: list[str]) -> ValueError:
    """The error for configuration ``problems``: one line for one problem, a list for several."""
    if len(problems) == 1:
        return ValueError(f"invalid configuration: {problems[0]}")
    return ValueError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _check(problems: list[str], config, mode: str | None = None) -> None:
    for f in dataclasses.fields(config):  # boolean options: a YAML "false" is a string, and truthy
        value = getattr(config, f.name)
        if f.type in ("bool", bool) and not isinstance(value, bool):
            problems.append(f"{f.name} must be true or false, got {value!r}")
    if mode in MODES:  # options the mode never reads are refused, not ignored
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        problems += [p for name, p in _unused_by_mode(type(config), values, mode).items()]
    if problems:
        raise invalid(problems)


@dataclass
class ModelConfig:
    """How the classifier is built. Defaults give a good model when nothing is set."""

    model: str = DEFAULT_MODEL  # alias, .gguf file, transformers directory or hub id
    task: str = "classification"  # classification | multilabel | regression
    labels: list | None = None  # fixed label order; learnt from training data when None
    # head: frozen backbone (cached features) + MLP | lora | qlora (4-bit NF4 base + LoRA) | full
    # probe: frozen features + a scikit-learn linear model | icl: in-context learning with the LM head
    # lmhead: train only the label words' LM-head rows | auto: the ladder picks one by cross-validation
    mode: str = "head"
    pooling: str = "last"  # last | mean | max | attention (a learned query), all masked by attention_mask
    layer: int | None = None  # feed the head from block k (negative: from the top); blocks above k are dropped
    layers: list[int] | None = None  # several blocks' pooled states (0 = embeddings); blocks above the top one dropped
    layer_mix: str = "concat"  # how `layers` combine: concat | weighted (learned softmax weights)
    head_hidden: list[int] = field(default_factory=lambda: [256])  # [] = a linear head
    activation: str = "gelu"
    dropout: float = 0.1
    input_norm: str = "standardize"  # standardize | scale | layernorm | none, on the pooled input
    head_bias: bool = True
    head_init: str = "default"  # default (PyTorch) | normal (std 0.02, as transformers' score) | verbalizer
    # (verbalizer: a linear head on the last token starts from the LM head's rows for the label words, i.e. from
    # the zero-shot classifier; give a `template` that ends where the label word would come)
    probe: str = "logreg"  # mode='probe': logreg | svm (calibrated probabilities) | ridge (regression)
    probe_c: float | None = None  # probe regularisation (C, or ridge alpha); None: chosen by cross-validation
    verbalizers: dict | None = None  # label -> the word(s) naming it, for icl / lmhead / verbalizer init
    icl_shots: int = 8  # mode='icl': demonstrations per class, drawn from the training data with `seed`
    icl_template: str = "Text: {text}\nLabel: {label}"  # one demonstration; the query ends before {label}
    icl_instruction: str | None = None  # None: "Classify each text as one of: <verbalizers>."
    icl_separator: str = "\n\n"  # between demonstrations
    icl_calibrate: bool = True  # contextual calibration (Zhao et al. 2021) with content-free inputs
    chat_template: str = "auto"  # icl: auto (use the tokenizer's chat template when it has one) | on | off
    max_length: int = 512  # tokens per forward pass
    long_inputs: str = "truncate"  # truncate (counted and reported) | chunk (overlapping windows, aggregated)
    chunk_overlap: int = 64  # tokens shared by consecutive chunks
    chunk_aggregate: str = "mean"  # mean | max over a text's chunk features
    dtype: str = "auto"  # auto: bfloat16 where the hardware runs it fast, else float32
    # CPU speed-ups in use (llmhead/speedups/): short_attention, fused_norms, last_token_mlp, mapped_load; [] = none
    speedups: list[str] = field(default_factory=lambda: list(SPEEDUPS))
    template: str = "{text}"  # text fed to the model; e.g. "Review: {text}\nSentiment:"
    pair_separator: str = "\n"  # between the two texts of a text pair
    seed: int = 0
    trust_remote_code: bool = False
    # LoRA / QLoRA (peft). Other peft methods: pass a peft config object as `peft_config`.
    lora_r: int = 16
    lora_alpha: int = 32
    # peft's default. 0.05 made CPU LoRA fits ~1.4x as long and ~15% larger in memory, for no accuracy over 3 seeds
    # (benchmarks/lora_dropout.py)
    lora_dropout: float = 0.0
    lora_targets: list[str] | str = "all-linear"  # every linear projection of the blocks
    lora_dora: bool = False  # weight-decomposed LoRA
    peft_config: Any = None  # a peft.PeftConfig; overrides the lora_* fields
    freeze_blocks: int = 0  # full: embeddings + the first k blocks stay frozen; LoRA: adapters on blocks >= k only

    def __post_init__(self):
        p = []
        if not (isinstance(self.model, str) and self.model.strip()):
            p.append(f"model must be a non-empty string (alias, .gguf path, directory or hub id), got {self.model!r}")
        if not (_is_int(self.lora_r) and self.lora_r >= 1):
            p.append(f"lora_r must be an int >= 1, got {self.lora_r!r}")
        if not (_is_number(self.lora_alpha) and self.lora_alpha > 0):
            p.append(f"lora_alpha must be a number > 0, got {self.lora_alpha!r}")
        if not (_is_number(self.lora_dropout) and 0 <= self.lora_dropout < 1):
            p.append(f"lora_dropout must be a number in [0, 1), got {self.lora_dropout!r}")
        if not (self.lora_targets == "all-linear" or _is_str_list(self.lora_targets, allow_empty=False)):
            p.append(
                f"lora_targets must be 'all-linear' or a non-empty list of module names, got {self.lora_targets!r}"
            )
        elif isinstance(self.lora_targets, tuple):
            self.lora_targets = list(self.lora_targets)
        if self.peft_config is not None:
            from peft import PeftConfig

            if not isinstance(self.peft_config, PeftConfig):
                p.append(
                    f"peft_config must be a peft.PeftConfig (e.g. peft.LoraConfig) or None, got {self.peft_config!r}"
                )
            elif self.mode in LORA:  # it replaces every lora_* field and freeze_blocks (modes.lora_config)
                defaults = _defaults(ModelConfig)
                for name in ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "lora_dora", "freeze_blocks"):
                    if not _same(getattr(self, name), defaults[name]):
                        p.append(
                            f"{name} is not used when peft_config is given (it replaces the lora_* fields): remove it"
                        )
        if not (_is_int(self.freeze_blocks) and self.freeze_blocks >= 0):
            p.append(f"freeze_blocks must be an int >= 0, got {self.freeze_blocks!r}")
        if not (isinstance(self.speedups, (list, tuple)) and set(self.speedups) <= set(SPEEDUPS)):
            p.append(f"speedups must be a list from {SPEEDUPS} ([] for none), got {self.speedups!r}")
        else:
            self.speedups = [s for s in SPEEDUPS if s in self.speedups]
        if not (_is_int(self.seed) and 0 <= self.seed < 2**32):
            p.append(f"seed must be an int in [0, 2**32 - 1] (numpy and scikit-learn seeds), got {self.seed!r}")
        for name, allowed in (
            ("task", TASKS),
            ("mode", MODES),
            ("pooling", POOLINGS),
            ("layer_mix", LAYER_MIXES),
            ("activation", ACTIVATIONS),
            ("input_norm", INPUT_NORMS),
            ("head_init", INITS),
            ("long_inputs", ("truncate", "chunk")),
            ("chunk_aggregate", ("mean", "max")),
            ("probe", PROBES),
            ("chat_template", CHAT),
            ("dtype", DTYPES),
        ):
            _choice(p, self, name, allowed)
        if self.mode in ("icl", "lmhead") and self.task != "classification":
            p.append(f"mode={self.mode!r} scores label words, so it is for task='classification' only")
        if self.mode == "probe" and self.pooling == "attention":
            p.append("mode='probe' fits a linear model on fixed pooled vectors: use pooling last, mean or max")
        if self.mode == "probe" and (self.task == "regression") != (self.probe == "ridge"):
            p.append(f"probe={self.probe!r} does not fit task={self.task!r}: ridge is for regression, logreg/svm not")
        if self.head_init == "verbalizer" or self.mode == "lmhead":
            if self.pooling != "last" or self.layer is not None or self.layers is not None:
                p.append("verbalizer heads read the LM head's input: pooling='last', no layer / layers")
            if self.mode != "lmhead" and self.head_hidden:
                p.append("head_init='verbalizer' needs a linear head: head_hidden=[]")
            if self.mode != "lmhead" and self.input_norm == "standardize" and not self.head_bias:
                p.append("head_init='verbalizer' with input_norm='standardize' needs head_bias=True")
            if self.mode != "lmhead" and self.input_norm == "layernorm":
                p.append("head_init='verbalizer' works with input_norm standardize, scale or none, not layernorm")
        if self.verbalizers is not None and not (
            isinstance(self.verbalizers, dict)
            and all(isinstance(v, str) and v.strip() for v in self.verbalizers.values())
        ):
            p.append(f"verbalizers must map each label to a non-empty string, got {self.verbalizers!r}")
        if not (_is_int(self.icl_shots) and self.icl_shots >= 0):
            p.append(f"icl_shots must be an int >= 0 (0 = zero-shot), got {self.icl_shots!r}")
        if not (isinstance(self.icl_template, str) and self.icl_template.count("{text}") == 1):
            p.append(f"icl_template must contain {{text}} once, got {self.icl_template!r}")
        elif not self.icl_template.rstrip().endswith("{label}"):
            p.append(f"icl_template must end with {{label}} (the scored answer), got {self.icl_template!r}")
        if self.icl_instruction is not None and not isinstance(self.icl_instruction, str):
            p.append(f"icl_instruction must be a string or None, got {self.icl_instruction!r}")
        if not isinstance(self.icl_separator, str):
            p.append(f"icl_separator must be a string, got {self.icl_separator!r}")
        if not isinstance(self.pair_separator, str):
            p.append(f"pair_separator must be a string, got {self.pair_separator!r}")
        if self.probe_c is not None and not (_is_number(self.probe_c) and self.probe_c > 0):
            p.append(f"probe_c must be a number > 0 or None, got {self.probe_c!r}")
        if self.pooling == "attention" and self.long_inputs == "chunk":
            p.append("long_inputs='chunk' works with pooling last, mean or max, not attention")
        if self.layer is not None and self.layers is not None:
            p.append("set layer (one block, blocks above dropped) or layers (several blocks), not both")
        if self.layer is not None and not (_is_int(self.layer) and self.layer != 0):
            p.append(f"layer must be a non-zero int (1 = first block, -1 = last), got {self.layer!r}")
        if self.layers is not None:
            if not isinstance(self.layers, (list, tuple)) or not self.layers or not all(map(_is_int, self.layers)):
                p.append(f"layers must be a non-empty list of ints, got {self.layers!r}")
            else:
                self.layers = list(self.layers)

        def uses(name: str) -> bool:
            return self.mode in modes_using(MODEL_FIELD_MODES, name)

        if self.layers is None and self.layer_mix != "concat" and uses("layer_mix"):
            p.append(f"layer_mix={self.layer_mix!r} combines several blocks: set layers, or remove layer_mix")
        if not (_is_int(self.chunk_overlap) and 0 <= self.chunk_overlap):
            p.append(f"chunk_overlap must be an int >= 0, got {self.chunk_overlap!r}")
        elif self.long_inputs == "chunk" and _is_int(self.max_length) and self.chunk_overlap >= self.max_length // 2:
            p.append(f"chunk_overlap must be < max_length / 2 = {self.max_length // 2}, got {self.chunk_overlap}")
        if self.long_inputs != "chunk" and uses("chunk_overlap"):
            for name, default in (("chunk_overlap", 64), ("chunk_aggregate", "mean")):
                if not _same(getattr(self, name), default):
                    p.append(f"{name} is only used with long_inputs='chunk': remove it, or set long_inputs='chunk'")
        if not isinstance(self.head_hidden, (list, tuple)) or not all(_is_int(h) and h > 0 for h in self.head_hidden):
            p.append(f"head_hidden must be a list of positive ints ([] for a linear head), got {self.head_hidden!r}")
        else:
            self.head_hidden = list(self.head_hidden)
            if not self.head_hidden and self.activation != "gelu" and uses("activation"):
                p.append(f"activation={self.activation!r} is not used by a linear head (head_hidden=[]): remove it")
        if not (_is_number(self.dropout) and 0 <= self.dropout < 1):
            p.append(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not (_is_int(self.max_length) and self.max_length >= 2):
            p.append(f"max_length must be an int >= 2, got {self.max_length!r}")
        if not isinstance(self.template, str) or "{text}" not in self.template:
            p.append(f"template must be a string containing '{{text}}', got {self.template!r}")
        if self.labels is not None:
            if not isinstance(self.labels, (list, tuple)) or len(self.labels) == 0:
                p.append(f"labels must be a non-empty list or None, got {self.labels!r}")
            elif len(set(map(repr, self.labels))) != len(self.labels):
                p.append(f"labels must not repeat, got {list(self.labels)!r}")
            elif self.task == "classification" and len(self.labels) < 2:
                p.append(f"labels needs >= 2 classes for task='classification', got {list(self.labels)!r}")
            else:
                self.labels = list(self.labels)
        _check(p, self, self.mode if isinstance(self.mode, str) else None)


@dataclass
class TrainConfig:
    """How ``fit`` trains. In head mode an epoch costs only the head: features are cached."""

    epochs: int | None = None  # upper bound; None: 100 for head/lmhead (epochs are cheap), 1 otherwise; 0: no step
    batch_size: int = 32  # per process; the global batch is batch_size * processes * grad_accum
    lr: float = 1e-3  # learning rate of the new head
    backbone_lr_ratio: float = 0.1  # backbone (LoRA or full) learning rate = lr * this
    layer_decay: float = 1.0  # < 1: block i's rate is multiplied by layer_decay ** (blocks - 1 - i)
    weight_decay: float = 0.01
    schedule: str = "cosine"  # linear | cosine | constant, after warmup
    warmup_ratio: float = 0.05
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    precision: str = "auto"  # no | bf16 | fp16 mixed precision for training; auto: bf16 where fast, else no
    gradient_checkpointing: bool = False
    group_by_length: bool = True  # lora/qlora/full: batches of similar lengths (shuffled), so little padding
    class_weights: str | list[float] | None = None  # "auto": inverse label frequency (classification, multilabel)
    focal_gamma: float = 0.0  # > 0: focal loss (classification, multilabel)
    tune_thresholds: bool = True  # multilabel: per-label decision thresholds chosen on validation F1
    warm_start: bool = True  # lora/qlora/full: fit the head on frozen features first, then fine-tune
    # frozen features for the warm start (and the head's input statistics) on at most this many training examples,
    # 20% of them held out for its early stopping; None: every training example, stopping on the validation set
    warm_start_examples: int | None = 256
    patience: int | None = None  # evaluations without a better selection score; None: 10 (head) or 3; 0: never
    select_by: str = "loss"  # validation loss, or a metric name (accuracy, macro_f1, micro_f1, mse, pearson...)
    metrics: list[str] = field(default_factory=list)  # extra `evaluate` metrics by name (need the hub or cache)
    eval_every: int | None = None  # optimizer steps between evaluations; None: once per epoch
    val_fraction: float = 0.1  # carved from training (stratified, seeded) when no eval set is given
    feature_cache: str | None = None  # a directory to keep pooled features on disk; memory only when None
    run_dir: str | None = None  # checkpoints + train_log.jsonl; None: no checkpoints, no log file
    checkpoint_every: int | None = None  # optimizer steps between checkpoints (needs run_dir)
    keep_checkpoints: int = 2
    resume: bool = False  # continue from the latest complete checkpoint in run_dir
    trackers: list[str] = field(default_factory=list)  # accelerate trackers: tensorboard, wandb, mlflow
    progress: bool = True
    # Small-data options. Augmentation perturbs the training split only (never validation, eval or test).
    augment: int = 0  # perturbed copies added per training example (0 = off)
    augment_ops: list[str] = field(default_factory=lambda: ["dropout", "mask", "swap"])  # word-level, no network
    augment_p: float = 0.1  # per-word probability of each op
    neftune_alpha: float = 0.0  # lora/qlora/full: NEFTune noise on the input embeddings while training (e.g. 5)

    def __post_init__(self):
        p = []
        if self.epochs is not None and not (_is_int(self.epochs) and self.epochs >= 0):
            p.append(f"epochs must be an int >= 0 (0: the head as initialised) or None, got {self.epochs!r}")
        if not (_is_int(self.augment) and self.augment >= 0):
            p.append(f"augment must be an int >= 0 (extra copies per example), got {self.augment!r}")
        from llmhead.data.augment import OPS

        if not (_is_str_list(self.augment_ops, allow_empty=False) and set(self.augment_ops) <= set(OPS)):
            p.append(f"augment_ops must be a non-empty list from {OPS}, got {self.augment_ops!r}")
        else:
            self.augment_ops = list(self.augment_ops)
        if not (_is_number(self.augment_p) and 0 < self.augment_p < 1):
            p.append(f"augment_p must be a number in (0, 1), got {self.augment_p!r}")
        if _is_int(self.augment) and self.augment == 0:
            defaults = _defaults(TrainConfig)
            for name in ("augment_ops", "augment_p"):
                if not _same(getattr(self, name), defaults[name]):
                    p.append(f"{name} is only used with augment > 0: remove it, or set augment")
        if not (_is_number(self.neftune_alpha) and self.neftune_alpha >= 0):
            p.append(f"neftune_alpha must be a number >= 0, got {self.neftune_alpha!r}")
        for name in ("batch_size", "grad_accum", "eval_every", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            optional = name in ("eval_every", "checkpoint_every")
            if optional and value is None:
                continue
            if not (_is_int(value) and value >= 1):
                p.append(f"{name} must be an int >= 1{' or None' if optional else ''}, got {value!r}")
        if self.warm_start_examples is not None and not (
            _is_int(self.warm_start_examples) and self.warm_start_examples >= 10
        ):
            p.append(f"warm_start_examples must be an int >= 10 or None, got {self.warm_start_examples!r}")
        _choice(p, self, "schedule", SCHEDULES)
        _choice(p, self, "precision", PRECISIONS)
        if not (_is_number(self.backbone_lr_ratio) and self.backbone_lr_ratio > 0):
            p.append(f"backbone_lr_ratio must be a number > 0, got {self.backbone_lr_ratio!r}")
        if not (_is_number(self.layer_decay) and 0 < self.layer_decay <= 1):
            p.append(f"layer_decay must be a number in (0, 1], got {self.layer_decay!r}")
        if self.max_grad_norm is not None and not (_is_number(self.max_grad_norm) and self.max_grad_norm > 0):
            p.append(f"max_grad_norm must be a number > 0 or None, got {self.max_grad_norm!r}")
        weights = self.class_weights
        if isinstance(weights, (list, tuple)) and weights and all(_is_number(w) and w >= 0 for w in weights):
            self.class_weights = list(weights)
        elif not (weights is None or (isinstance(weights, str) and weights == "auto")):
            p.append(f"class_weights must be None, 'auto' or a list of numbers >= 0 (one per class), got {weights!r}")
        if not (_is_number(self.focal_gamma) and self.focal_gamma >= 0):
            p.append(f"focal_gamma must be a number >= 0, got {self.focal_gamma!r}")
        if self.checkpoint_every and not self.run_dir:
            p.append("checkpoint_every needs run_dir (where checkpoints are written)")
        if self.resume and not self.run_dir:
            p.append("resume needs run_dir (where checkpoints are read from)")
        if self.keep_checkpoints != 2 and not self.run_dir:
            p.append("keep_checkpoints needs run_dir (where checkpoints are written)")
        for name in ("run_dir", "feature_cache"):
            value = getattr(self, name)
            if value is not None and not _is_path(value):
                p.append(f"{name} must be a directory path (a non-empty string) or None, got {value!r}")
        if not (_is_number(self.lr) and self.lr > 0):
            p.append(f"lr must be a positive number, got {self.lr!r}")
        if not (_is_number(self.weight_decay) and self.weight_decay >= 0):
            p.append(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if not (_is_number(self.warmup_ratio) and 0 <= self.warmup_ratio < 1):
            p.append(f"warmup_ratio must be a number in [0, 1), got {self.warmup_ratio!r}")
        if self.patience is not None and not (_is_int(self.patience) and self.patience >= 0):
            p.append(f"patience must be an int >= 0 (0: never stop early) or None, got {self.patience!r}")
        if not (isinstance(self.select_by, str) and self.select_by):
            p.append(
                f"select_by must be 'loss' or a validation metric name (accuracy, macro_f1...), got {self.select_by!r}"
            )
        for name in ("metrics", "trackers"):
            value = getattr(self, name)
            if not _is_str_list(value):
                p.append(f"{name} must be a list of names, got {value!r}")
            else:
                setattr(self, name, list(value))
        if not (_is_number(self.val_fraction) and 0 < self.val_fraction < 0.5):
            p.append(f"val_fraction must be a number in (0, 0.5), got {self.val_fraction!r}")
        _check(p, self)


class FineTuneConfig(TrainConfig):
    """A ``TrainConfig`` that ``for_mode`` checked for lora, qlora or full (the same fields).

    ``dataclasses.replace`` keeps the class, so when ``Classifier.fit`` derives the head warm start from it
    (``for_mode(replace(cfg, epochs=None, patience=None), "head")``), ``for_mode`` knows that this head training
    belongs to a checked fine-tuning run and does not refuse the fine-tuning options it carries."""


def for_mode(cfg: TrainConfig, mode: str) -> TrainConfig:
    """``cfg`` checked for ``mode`` (an option the mode never reads is an error), with the mode-dependent defaults
    filled: head epochs are cheap (cached features), fine-tuning ones are not. mode='auto' is checked against
    what its rungs read and keeps its defaults (each rung fills its own)."""
    if isinstance(cfg, FineTuneConfig) and mode == "head":
        return warm_start_config(cfg)
    problems = []
    if mode not in MODES:
        problems.append(f"mode must be one of {MODES}, got {mode!r}")
    else:
        problems += _unused_by_mode(TrainConfig, dataclasses.asdict(cfg), mode).values()
        if cfg.epochs == 0 and mode not in ("head", "lmhead"):
            problems.append(f"epochs=0 (the head as initialised) is for modes head and lmhead, not {mode!r}")
    if problems:
        raise invalid(problems)
    if mode == "auto":
        return cfg
    head = mode in FROZEN_MODES
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    values["epochs"] = cfg.epochs if cfg.epochs is not None else (100 if head else 1)
    values["patience"] = cfg.patience if cfg.patience is not None else (10 if head else 3)
    return (FineTuneConfig if mode in FINE_TUNING else TrainConfig)(**values)


def warm_start_config(cfg: TrainConfig) -> TrainConfig:
    """The head warm start of a fine-tuning run: ``cfg`` with head-mode epochs and patience (not refused for its
    fine-tuning options, which the fine-tuning run itself reads)."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    values["epochs"] = cfg.epochs if cfg.epochs is not None else 100
    values["patience"] = cfg.patience if cfg.patience is not None else 10
    return type(cfg)(**values)


# keys of earlier versions: a config that still uses one gets an error naming the key that replaced it
RENAMED = {
    "short_attention": "speedups (a list of the CPU speed-ups in use; short_attention=false is "
    "speedups=['fused_norms', 'last_token_mlp', 'mapped_load'])",
}


def build(cls, values: Mapping[str, Any], where: str = ""):
    """``cls(**values)``, but a section that is not a mapping is refused and unknown keys fail with the nearest
    valid names."""
    section = f"the {where.rstrip('.')} section" if where else "the configuration"
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise invalid([f"{section} must be a mapping of key: value, got {values!r}"])
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        lines = []
        for key in unknown:
            if key in RENAMED:
                lines.append(f"'{where}{key}' was renamed: use {RENAMED[key]}")
                continue
            if not isinstance(key, str):
                lines.append(f"key {where}{key!r} in {section} is not a name: valid keys: {', '.join(names)}")
                continue
            close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"valid keys: {', '.join(names)}"
            lines.append(f"unknown key '{where}{key}': {hint}")
        raise invalid(lines)
    try:
        return cls(**values)
    except ValueError as exc:
        if not where:
            raise
        message = str(exc).replace("invalid configuration", f"invalid configuration in {where.rstrip('.')}", 1)
        raise ValueError(message) from None

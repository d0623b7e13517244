"""The schema: every option is a dataclass field that validates itself, with messages that name the
field, the value, what is allowed and how to fix it."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from .assets import DEFAULT_MODEL
from .heads import ACTIVATIONS, INITS, INPUT_NORMS, LAYER_MIXES
from .pooling import POOLINGS
from .precision import DTYPES
from .probe import PROBES

TASKS = ("classification", "multilabel", "regression")
MODES = ("head", "lora", "qlora", "full", "probe", "icl", "lmhead", "auto")
FROZEN_MODES = ("head", "probe", "lmhead")  # the backbone is never trained: features are computed once, cached
CHAT = ("auto", "on", "off")
SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "no", "bf16", "fp16")


def _check(problems: list[str], config) -> None:
    for f in dataclasses.fields(config):  # boolean options: a YAML "false" is a string, and truthy
        value = getattr(config, f.name)
        if f.type in ("bool", bool) and not isinstance(value, bool):
            problems.append(f"{f.name} must be true or false, got {value!r}")
    if problems:
        raise ValueError("invalid configuration:\n  - " + "\n  - ".join(problems))


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
    short_attention: bool = True  # CPU: plain matmul attention on short inputs, faster than SDPA's kernel there
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
        if not (isinstance(self.lora_r, int) and self.lora_r >= 1):
            p.append(f"lora_r must be an int >= 1, got {self.lora_r!r}")
        if not (isinstance(self.lora_dropout, (int, float)) and 0 <= self.lora_dropout < 1):
            p.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not (isinstance(self.freeze_blocks, int) and self.freeze_blocks >= 0):
            p.append(f"freeze_blocks must be an int >= 0, got {self.freeze_blocks!r}")
        if self.mode not in ("head", "probe") and self.long_inputs == "chunk":
            p.append(f"long_inputs='chunk' is for mode='head'; mode={self.mode!r} trains on truncated inputs")
        if self.task not in TASKS:
            p.append(f"task must be one of {TASKS}, got {self.task!r}")
        if self.mode not in MODES:
            p.append(f"mode must be one of {MODES} in this version, got {self.mode!r}")
        if self.pooling not in POOLINGS:
            p.append(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name, allowed in (
            ("layer_mix", LAYER_MIXES),
            ("input_norm", INPUT_NORMS),
            ("head_init", INITS),
            ("long_inputs", ("truncate", "chunk")),
            ("chunk_aggregate", ("mean", "max")),
            ("probe", PROBES),
            ("chat_template", CHAT),
        ):
            if getattr(self, name) not in allowed:
                p.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
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
        if not (isinstance(self.icl_shots, int) and self.icl_shots >= 0):
            p.append(f"icl_shots must be an int >= 0 (0 = zero-shot), got {self.icl_shots!r}")
        if not (isinstance(self.icl_template, str) and self.icl_template.count("{text}") == 1):
            p.append(f"icl_template must contain {{text}} once, got {self.icl_template!r}")
        elif not self.icl_template.rstrip().endswith("{label}"):
            p.append(f"icl_template must end with {{label}} (the scored answer), got {self.icl_template!r}")
        if self.probe_c is not None and not (isinstance(self.probe_c, (int, float)) and self.probe_c > 0):
            p.append(f"probe_c must be > 0 or None, got {self.probe_c!r}")
        if self.pooling == "attention" and self.long_inputs == "chunk":
            p.append("long_inputs='chunk' works with pooling last, mean or max, not attention")
        if self.layer is not None and self.layers is not None:
            p.append("set layer (one block, blocks above dropped) or layers (several blocks), not both")
        if self.layer is not None and not (isinstance(self.layer, int) and self.layer != 0):
            p.append(f"layer must be a non-zero int (1 = first block, -1 = last), got {self.layer!r}")
        if self.layers is not None:
            if (
                not isinstance(self.layers, (list, tuple))
                or not self.layers
                or not all(isinstance(i, int) for i in self.layers)
            ):
                p.append(f"layers must be a non-empty list of ints, got {self.layers!r}")
            else:
                self.layers = list(self.layers)
        if not (isinstance(self.chunk_overlap, int) and 0 <= self.chunk_overlap):
            p.append(f"chunk_overlap must be an int >= 0, got {self.chunk_overlap!r}")
        elif (
            self.long_inputs == "chunk"
            and isinstance(self.max_length, int)
            and self.chunk_overlap >= self.max_length // 2
        ):
            p.append(f"chunk_overlap must be < max_length / 2 = {self.max_length // 2}, got {self.chunk_overlap}")
        if self.activation not in ACTIVATIONS:
            p.append(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not isinstance(self.head_hidden, (list, tuple)) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in self.head_hidden
        ):
            p.append(f"head_hidden must be a list of positive ints ([] for a linear head), got {self.head_hidden!r}")
        else:
            self.head_hidden = list(self.head_hidden)
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            p.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not (isinstance(self.max_length, int) and self.max_length >= 2):
            p.append(f"max_length must be an int >= 2, got {self.max_length!r}")
        if self.dtype not in DTYPES:
            p.append(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
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
        _check(p, self)


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
        if self.epochs == 0:  # allowed: evaluate the head as initialised (e.g. from verbalizers)
            self.epochs = 0
        elif self.epochs is not None and not (
            isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 1
        ):
            p.append(f"epochs must be an int >= 0, got {self.epochs!r}")
        if not (isinstance(self.augment, int) and self.augment >= 0):
            p.append(f"augment must be an int >= 0 (extra copies per example), got {self.augment!r}")
        from .augment import OPS

        if not (isinstance(self.augment_ops, (list, tuple)) and self.augment_ops and set(self.augment_ops) <= set(OPS)):
            p.append(f"augment_ops must be a non-empty list from {OPS}, got {self.augment_ops!r}")
        if not (isinstance(self.augment_p, (int, float)) and 0 < self.augment_p < 1):
            p.append(f"augment_p must be in (0, 1), got {self.augment_p!r}")
        if not (isinstance(self.neftune_alpha, (int, float)) and self.neftune_alpha >= 0):
            p.append(f"neftune_alpha must be >= 0, got {self.neftune_alpha!r}")
        for name in ("batch_size", "grad_accum", "eval_every", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            optional = name in ("eval_every", "checkpoint_every")
            if optional and value is None:
                continue
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                p.append(f"{name} must be an int >= 1, got {value!r}")
        if self.warm_start_examples is not None and not (
            isinstance(self.warm_start_examples, int)
            and not isinstance(self.warm_start_examples, bool)
            and self.warm_start_examples >= 10
        ):
            p.append(f"warm_start_examples must be an int >= 10 or None, got {self.warm_start_examples!r}")
        if self.schedule not in SCHEDULES:
            p.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            p.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not (isinstance(self.backbone_lr_ratio, (int, float)) and self.backbone_lr_ratio > 0):
            p.append(f"backbone_lr_ratio must be > 0, got {self.backbone_lr_ratio!r}")
        if not (isinstance(self.layer_decay, (int, float)) and 0 < self.layer_decay <= 1):
            p.append(f"layer_decay must be in (0, 1], got {self.layer_decay!r}")
        if self.max_grad_norm is not None and not (
            isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0
        ):
            p.append(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")
        if not (self.class_weights in (None, "auto") or isinstance(self.class_weights, (list, tuple))):
            p.append(f"class_weights must be None, 'auto' or a list of floats, got {self.class_weights!r}")
        if not (isinstance(self.focal_gamma, (int, float)) and self.focal_gamma >= 0):
            p.append(f"focal_gamma must be >= 0, got {self.focal_gamma!r}")
        if self.checkpoint_every and not self.run_dir:
            p.append("checkpoint_every needs run_dir (where checkpoints are written)")
        if self.resume and not self.run_dir:
            p.append("resume needs run_dir (where checkpoints are read from)")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            p.append(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            p.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.warmup_ratio, (int, float)) and 0 <= self.warmup_ratio < 1):
            p.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.patience is not None and not (isinstance(self.patience, int) and self.patience >= 0):
            p.append(f"patience must be an int >= 0, got {self.patience!r}")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 0.5):
            p.append(f"val_fraction must be in (0, 0.5), got {self.val_fraction!r}")
        _check(p, self)


def for_mode(cfg: TrainConfig, mode: str) -> TrainConfig:
    """Fill the mode-dependent defaults: head epochs are cheap (cached features), fine-tuning ones are not."""
    head = mode in FROZEN_MODES
    return dataclasses.replace(
        cfg,
        epochs=cfg.epochs if cfg.epochs is not None else (100 if head else 1),
        patience=cfg.patience if cfg.patience is not None else (10 if head else 3),
    )


def build(cls, values: dict[str, Any], where: str = ""):
    """``cls(**values)``, but unknown keys fail with the nearest valid names."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        lines = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"valid keys: {', '.join(names)}"
            lines.append(f"unknown key '{where}{key}': {hint}")
        raise ValueError("invalid configuration:\n  - " + "\n  - ".join(lines))
    return cls(**values)

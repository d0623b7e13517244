"""``TrainConfig``: how ``fit`` trains, and ``for_mode``, which checks it for a mode and fills the mode's
defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from llmhead.config.checks import changed, choice, invalid, is_int, is_number, is_path, is_str_list
from llmhead.config.choices import CALIBRATIONS, FROZEN_MODES, MIXED_PRECISIONS, MODES, SCHEDULES
from llmhead.config.usage import FINE_TUNING, TRAIN_FIELD_MODES, check, unused_by_mode

# backbone_lr_ratio=None per fine-tuning mode: pretrained weights (full) ~10x slower than the new head; LoRA
# adapters are new weights and learn at the head's rate
BACKBONE_LR_RATIO = {"full": 0.1, "lora": 1.0, "qlora": 1.0}
# epochs=None and batch_size=None per mode. Head epochs are cheap (cached features). LoRA: two epochs of batches of
# 16 reached what one epoch of 32 never did (VADER tweets, all-linear adapters: validation Pearson 0.888 in 74 s
# instead of not at all, test 0.835 -> 0.910) with half the activation memory per step
# (benchmarks/time_to_accuracy.py); full fine-tuning keeps the one epoch of 32 it was measured with.
HEAD_EPOCHS, HEAD_PATIENCE, BATCH = 100, 10, 32  # the head's (and every other mode's batch)
EPOCHS = {"lora": 2, "qlora": 2, "full": 1}  # other modes: HEAD_EPOCHS
BATCH_SIZE = {"lora": 16, "qlora": 16}  # other modes: BATCH
# max_pass_tokens="auto" on the CPU. Full fine-tuning, batches of 32 BBC articles of 256 tokens: whole batches 13.0 GB
# and 53 s an epoch, 2048 5.9 GB and 39 s, 1024 4.6 GB and 45 s; RT snippets are rarely cut (benchmarks/pass_tokens.py)
PASS_TOKENS = 2048


@dataclass
class TrainConfig:
    """How ``fit`` trains. In head mode an epoch costs only the head: features are cached."""

    FIELD_MODES: ClassVar[dict[str, tuple[str, ...]]] = TRAIN_FIELD_MODES  # which modes read which field

    # ---- every mode --------------------------------------------------------------------------------------------------
    progress: bool = True  # progress bars (feature extraction, training)
    # ---- every mode that computes features (head, probe, lmhead, lora, qlora, full) ----------------------------------
    # per process; the global batch is batch_size * processes * grad_accum. None: 16 for lora/qlora, 32 otherwise
    batch_size: int | None = None
    feature_cache: str | None = None  # a directory to keep pooled features on disk; memory only when None
    # ---- augmentation: the training split only, never validation, eval or test (not icl) -----------------------------
    augment: int = 0  # perturbed copies added per training example (0 = off)
    augment_ops: list[str] = field(default_factory=lambda: ["dropout", "mask", "swap"])  # word-level, no network
    augment_p: float = 0.1  # per-word probability of each op
    # ---- trained heads (head, lmhead, lora, qlora, full) -------------------------------------------------------------
    epochs: int | None = None  # upper bound; None: 100 for head/lmhead (cheap), 2 for lora/qlora, 1 for full; 0: none
    lr: float = 1e-3  # learning rate of the new head
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    class_weights: str | list[float] | None = None  # "auto": inverse label frequency (classification, multilabel)
    focal_gamma: float = 0.0  # > 0: focal loss (classification, multilabel)
    # evaluations without a better selection score; 0: never. None: 10 (head), or 3 epochs' worth of evaluations
    # when fine-tuning (3 with the default one per epoch): how often a run is watched (eval_every) must not decide
    # when it stops
    patience: int | None = None
    val_fraction: float = 0.1  # carved from training (stratified, seeded) when no eval set is given
    # probabilities calibrated on the validation split after training (calibration.py): auto = temperature
    # (classification; argmax unchanged) | platt (multilabel, per label) | none; regression has no probabilities
    calibrate: str = "auto"
    # ---- multilabel thresholds (head, probe, lora, qlora, full) ------------------------------------------------------
    tune_thresholds: bool = True  # per-label decision thresholds chosen on validation F1
    # ---- fine-tuning (lora, qlora, full) -----------------------------------------------------------------------------
    # the backbone's learning rate = lr * this. None: 0.1 for full (pretrained weights learn ~10x slower than the new
    # head: the playbook), 1.0 for LoRA (adapters are new weights, B starts at zero; the base stays frozen, so
    # there is nothing pretrained to protect: at 0.1 a 1-epoch fit barely moved them, benchmarks/time_to_accuracy.py)
    backbone_lr_ratio: float | None = None
    layer_decay: float = 1.0  # < 1: block i's rate is multiplied by layer_decay ** (blocks - 1 - i)
    schedule: str = "cosine"  # linear | cosine | constant, after warmup
    grad_accum: int = 1
    # each batch's forward/backward in passes of at most this many tokens (batch rows x padded length), their
    # gradients summed into the same optimizer step: the activations of one pass, not of the whole batch, are held.
    # "auto": PASS_TOKENS on the CPU, whole batches on other devices (not measured there) and under FSDP / DeepSpeed
    # (they accumulate in their own way); None: whole batches. A text longer than this is a pass of its own
    max_pass_tokens: int | str | None = "auto"
    max_grad_norm: float | None = 1.0
    # the training autocast (accelerate's mixed_precision): no | bf16 | fp16; auto: bf16 where fast, else no.
    # (ModelConfig.dtype is the weights' dtype.)
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    group_by_length: bool = True  # batches of similar lengths (shuffled), so little padding
    warm_start: bool = True  # fit the head on frozen features first, then fine-tune
    # frozen features for the warm start (and the head's input statistics) on at most this many training examples,
    # 20% of them held out for its early stopping; None: every training example, stopping on the validation set
    warm_start_examples: int | None = 256
    select_by: str = "loss"  # validation loss, or a metric name (accuracy, macro_f1, micro_f1, mse, pearson...)
    metrics: list[str] = field(default_factory=list)  # extra `evaluate` metrics by name (need the hub or cache)
    eval_every: int | None = None  # optimizer steps between evaluations; None: once per epoch
    neftune_alpha: float = 0.0  # NEFTune noise on the input embeddings while training (e.g. 5)
    trackers: list[str] = field(default_factory=list)  # accelerate trackers: tensorboard, wandb, mlflow
    # ---- checkpoints (lora, qlora, full; not auto) -------------------------------------------------------------------
    run_dir: str | None = None  # checkpoints + train_log.jsonl; None: no checkpoints, no log file
    checkpoint_every: int | None = None  # optimizer steps between checkpoints (needs run_dir)
    keep_checkpoints: int = 2
    resume: bool = False  # continue from the latest complete checkpoint in run_dir
    # on SIGTERM (cluster preemption) stop every rank at the next step, writing a checkpoint when run_dir is set;
    # the previous handler is back when fit returns. Off: fit leaves signal handling alone
    handle_sigterm: bool = False

    def __post_init__(self):
        p = []
        if self.epochs is not None and not (is_int(self.epochs) and self.epochs >= 0):
            p.append(f"epochs must be an int >= 0 (0: the head as initialised) or None, got {self.epochs!r}")
        self._check_small_data(p)
        self._check_counts(p)
        self._check_optimizer(p)
        self._check_run_dir(p)
        self._check_loop(p)
        check(p, self)

    def _check_small_data(self, p: list[str]) -> None:
        """Augmentation and NEFTune."""
        if not (is_int(self.augment) and self.augment >= 0):
            p.append(f"augment must be an int >= 0 (extra copies per example), got {self.augment!r}")
        from llmhead.data.augment import OPS

        if not (is_str_list(self.augment_ops, allow_empty=False) and set(self.augment_ops) <= set(OPS)):
            p.append(f"augment_ops must be a non-empty list from {OPS}, got {self.augment_ops!r}")
        else:
            self.augment_ops = list(self.augment_ops)
        if not (is_number(self.augment_p) and 0 < self.augment_p < 1):
            p.append(f"augment_p must be a number in (0, 1), got {self.augment_p!r}")
        if is_int(self.augment) and self.augment == 0:
            p += [
                f"{name} is only used with augment > 0: remove it, or set augment"
                for name in changed(self, ("augment_ops", "augment_p"))
            ]
        if not (is_number(self.neftune_alpha) and self.neftune_alpha >= 0):
            p.append(f"neftune_alpha must be a number >= 0, got {self.neftune_alpha!r}")

    def _check_counts(self, p: list[str]) -> None:
        """Batch, accumulation, evaluation and checkpoint counts."""
        for name in ("batch_size", "grad_accum", "eval_every", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            optional = name in ("batch_size", "eval_every", "checkpoint_every")
            if optional and value is None:
                continue
            if not (is_int(value) and value >= 1):
                p.append(f"{name} must be an int >= 1{' or None' if optional else ''}, got {value!r}")
        tokens = self.max_pass_tokens
        if not (tokens is None or tokens == "auto" or (is_int(tokens) and tokens >= 1)):
            p.append(f"max_pass_tokens must be an int >= 1 (tokens per forward pass), 'auto' or None, got {tokens!r}")
        if self.warm_start_examples is not None and not (
            is_int(self.warm_start_examples) and self.warm_start_examples >= 10
        ):
            p.append(f"warm_start_examples must be an int >= 10 or None, got {self.warm_start_examples!r}")

    def _check_optimizer(self, p: list[str]) -> None:
        """The schedule, mixed precision, the backbone's rates, clipping and the loss."""
        choice(p, self, "schedule", SCHEDULES)
        choice(p, self, "mixed_precision", MIXED_PRECISIONS)
        if self.backbone_lr_ratio is not None and not (
            is_number(self.backbone_lr_ratio) and self.backbone_lr_ratio > 0
        ):
            p.append(f"backbone_lr_ratio must be a number > 0 or None (per mode), got {self.backbone_lr_ratio!r}")
        if not (is_number(self.layer_decay) and 0 < self.layer_decay <= 1):
            p.append(f"layer_decay must be a number in (0, 1], got {self.layer_decay!r}")
        if self.max_grad_norm is not None and not (is_number(self.max_grad_norm) and self.max_grad_norm > 0):
            p.append(f"max_grad_norm must be a number > 0 or None, got {self.max_grad_norm!r}")
        weights = self.class_weights
        if isinstance(weights, (list, tuple)) and weights and all(is_number(w) and w >= 0 for w in weights):
            self.class_weights = list(weights)
        elif not (weights is None or (isinstance(weights, str) and weights == "auto")):
            p.append(f"class_weights must be None, 'auto' or a list of numbers >= 0 (one per class), got {weights!r}")
        if not (is_number(self.focal_gamma) and self.focal_gamma >= 0):
            p.append(f"focal_gamma must be a number >= 0, got {self.focal_gamma!r}")

    def _check_run_dir(self, p: list[str]) -> None:
        """Checkpoints need a run_dir; folders are paths."""
        if self.checkpoint_every and not self.run_dir:
            p.append("checkpoint_every needs run_dir (where checkpoints are written)")
        if self.resume and not self.run_dir:
            p.append("resume needs run_dir (where checkpoints are read from)")
        if self.keep_checkpoints != 2 and not self.run_dir:
            p.append("keep_checkpoints needs run_dir (where checkpoints are written)")

        for name in ("run_dir", "feature_cache"):
            value = getattr(self, name)
            if value is not None and not is_path(value):
                p.append(f"{name} must be a directory path (a non-empty string) or None, got {value!r}")

    def _check_loop(self, p: list[str]) -> None:
        """The learning rate, early stopping, the metrics and the validation split."""
        if not (is_number(self.lr) and self.lr > 0):
            p.append(f"lr must be a positive number, got {self.lr!r}")
        if not (is_number(self.weight_decay) and self.weight_decay >= 0):
            p.append(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if not (is_number(self.warmup_ratio) and 0 <= self.warmup_ratio < 1):
            p.append(f"warmup_ratio must be a number in [0, 1), got {self.warmup_ratio!r}")
        if self.patience is not None and not (is_int(self.patience) and self.patience >= 0):
            p.append(f"patience must be an int >= 0 (0: never stop early) or None, got {self.patience!r}")
        if not (isinstance(self.select_by, str) and self.select_by):
            p.append(
                f"select_by must be 'loss' or a validation metric name (accuracy, macro_f1...), got {self.select_by!r}"
            )
        for name in ("metrics", "trackers"):
            value = getattr(self, name)
            if not is_str_list(value):
                p.append(f"{name} must be a list of names, got {value!r}")
            else:
                setattr(self, name, list(value))
        choice(p, self, "calibrate", CALIBRATIONS)
        if not (is_number(self.val_fraction) and 0 < self.val_fraction < 0.5):
            p.append(f"val_fraction must be a number in (0, 0.5), got {self.val_fraction!r}")


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
        problems += unused_by_mode(cfg, mode)
        if not problems and cfg.keep_checkpoints != 2 and not cfg.checkpoint_every:
            problems.append("keep_checkpoints needs checkpoint_every (without it no checkpoints are written to keep)")
        if cfg.epochs == 0 and mode not in ("head", "lmhead"):
            problems.append(f"epochs=0 (the head as initialised) is for modes head and lmhead, not {mode!r}")
    if problems:
        raise invalid(problems)
    if mode == "auto":
        return cfg
    head = mode in FROZEN_MODES
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    values["epochs"] = cfg.epochs if cfg.epochs is not None else EPOCHS.get(mode, HEAD_EPOCHS)
    values["batch_size"] = cfg.batch_size if cfg.batch_size is not None else BATCH_SIZE.get(mode, BATCH)
    # fine-tuning: None stays, and the loop counts 3 epochs' worth of its evaluations (finetuning/loop.py)
    values["patience"] = cfg.patience if cfg.patience is not None or not head else HEAD_PATIENCE
    if mode in FINE_TUNING and cfg.backbone_lr_ratio is None:
        values["backbone_lr_ratio"] = BACKBONE_LR_RATIO[mode]
    return (FineTuneConfig if mode in FINE_TUNING else TrainConfig)(**values)


def unused_by_task(cfg: TrainConfig, task: str, eval_given: bool) -> list[str]:
    """Options the task or the data make meaningless, set to something other than their default: refused, as an
    option the mode never reads is (``for_mode``)."""
    p = []
    if task == "regression" and cfg.focal_gamma:
        p.append(f"focal_gamma={cfg.focal_gamma} is a classification loss (and multilabel); not for task='regression'")
    if task == "regression" and cfg.class_weights is not None:
        p.append("class_weights is for classification and multilabel tasks, not task='regression'")
    if task != "multilabel" and cfg.tune_thresholds is not True:
        p.append(f"tune_thresholds chooses multilabel decision thresholds; not used by task={task!r}")
    if eval_given and cfg.val_fraction != TrainConfig.val_fraction:
        p.append(
            f"val_fraction={cfg.val_fraction} carves validation from the training data only when no eval set is given; "
            "an eval set was given"
        )
    return p


def warm_start_config(cfg: TrainConfig) -> TrainConfig:
    """The head warm start of a fine-tuning run: ``cfg`` with head-mode epochs and patience (not refused for its
    fine-tuning options, which the fine-tuning run itself reads)."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    values["epochs"] = cfg.epochs if cfg.epochs is not None else HEAD_EPOCHS
    values["patience"] = cfg.patience if cfg.patience is not None else HEAD_PATIENCE
    values["batch_size"] = cfg.batch_size if cfg.batch_size is not None else BATCH
    return type(cfg)(**values)

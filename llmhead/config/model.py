"""``ModelConfig``: how the classifier is built. Every field validates itself, with messages that name the field,
the value, what is allowed and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmhead.config.checks import changed, choice, is_int, is_layer, is_number, is_str_list
from llmhead.config.choices import (
    ACTIVATIONS,
    CHAT,
    CHUNK_AGGREGATES,
    DTYPES,
    INITS,
    INPUT_NORMS,
    LAYER_MIXES,
    LONG_INPUTS,
    MODES,
    POOLINGS,
    PROBES,
    SPEEDUPS,
    TASKS,
)
from llmhead.config.renamed import renamed_value
from llmhead.config.usage import FINE_TUNING, LINEAR, LORA, MODEL_FIELD_MODES, POOLED, check, modes_using
from llmhead.model.assets import DEFAULT_MODEL


def is_peft_config(value) -> bool:
    """A ``peft.PeftConfig``, told by its classes' names: the schema imports neither peft nor torch."""
    return any(c.__name__ == "PeftConfig" and c.__module__.startswith("peft") for c in type(value).__mro__)


# pooling=None, layer=None for a frozen backbone's pooled vectors (modes head, probe, hybrid): the last token's state
# and the mean of all tokens' states side by side, from the block at 3/4 of the depth (the blocks above never run).
# Each field is filled on its own: pooling="last" alone reads the last token at 3/4; the earlier default is
# pooling="last", layer=-1. Against that, an MLP head scored higher on each held-out test set, with a quarter less
# forward pass (benchmarks/head_features.py): SmolLM2-135M on Rotten Tomatoes 0.830 vs 0.796, VADER (Pearson) 0.833
# vs 0.774, BBC News 0.955 vs 0.885; Gemma-3-270M 0.822 vs 0.802, 0.851 vs 0.830, BBC 0.970 vs 0.9025. Mode lmhead reads
# the LM head's input (the last token of the final output).
FROZEN_FEATURES = {"pooling": "last+mean", "layer": 0.75}
# Fine-tuning (lora, qlora, full) reads the same pooling from the final output (FINETUNED_FEATURES): every token's
# state then gets a gradient from the head, not the last one alone. SmolLM2-135M LoRA on Rotten Tomatoes
# (benchmarks/time_to_accuracy.py, 1,000 snippets): test 0.826 vs 0.812 with the last token, and the validation
# target reached in 102 s where the last token never reached it in 2 epochs. All blocks stay: at 3/4 of the depth
# the same run was faster (83 s) but scored 0.792 on the test set.
FINETUNED_FEATURES = {"pooling": "last+mean", "layer": None}
LMHEAD_FEATURES = {"pooling": "last", "layer": None}  # the LM head's input: mode lmhead, head_init="lmhead"
LORA_TARGET_SETS = ("attention", "all-linear")  # named sets of modules for lora_targets (finetuning/adapters.py)
# Full fine-tuning trains the top half of the blocks (FULL_FROZEN: the embeddings and the bottom half stay as
# pretrained), the playbook's "freeze the first layers": no backward pass, gradients or optimizer state below the
# middle. SmolLM2-135M (benchmarks/time_to_accuracy.py, 2 CPU cores, llmhead alone against the table's peer):
# Rotten Tomatoes' target in 19.8 s instead of 26.3 s (test 0.806 vs 0.800), BBC's in 90.4 s instead of 125.0 s
# (test 0.975 vs 0.968). LoRA keeps adapters on every block: on the top half VADER stayed below its target.
FULL_FROZEN = 0.5
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "lora_dora", "freeze_blocks")


@dataclass
class ModelConfig:
    """How the classifier is built. Defaults give a good model when nothing is set."""

    FIELD_MODES: ClassVar[dict[str, tuple[str, ...]]] = MODEL_FIELD_MODES  # which modes read which field

    # ---- every mode --------------------------------------------------------------------------------------------------
    model: str = DEFAULT_MODEL  # alias, .gguf file, transformers directory or hub id
    task: str = "classification"  # classification | multilabel | regression
    labels: list | None = None  # fixed label order; learnt from training data when None
    # head: frozen backbone (cached features) + MLP | lora | qlora (4-bit NF4 base + LoRA) | full
    # probe: frozen features + a scikit-learn linear model | icl: in-context learning with the LM head
    # lmhead: train only the label words' LM-head rows | tfidf: word + character n-gram TF-IDF and a linear model
    # (no LLM: the baseline) | hybrid: frozen features and TF-IDF side by side in one linear model
    # auto: the ladder picks one by cross-validation
    mode: str = "head"
    template: str = "{text}"  # text fed to the model; e.g. "Review: {text}\nSentiment:"
    pair_separator: str = "\n"  # between the two texts of a text pair
    dtype: str = "auto"  # auto: bfloat16 where the hardware runs it fast, else float32
    # CPU speed-ups in use (llmhead/speedups/): short_attention, mapped_load; [] = none
    speedups: list[str] = field(default_factory=lambda: list(SPEEDUPS))
    seed: int = 0
    trust_remote_code: bool = False
    threads: int | None = None  # torch CPU threads while this classifier fits or predicts (None: torch's setting)
    # ---- features: what the backbone hands on (head, probe, lmhead, lora, qlora, full) -------------------------------
    # last | mean | max | last+mean (both side by side) | attention (a learned query), all masked by attention_mask.
    # None: FROZEN_FEATURES for a frozen backbone's pooled vectors (modes head, probe, hybrid), FINETUNED_FEATURES for
    # lora, qlora and full; "last" for a head started from the LM head
    pooling: str | None = None
    # feed the head from block k (negative: from the top; a float in (0, 1): that fraction of the depth, rounded
    # half up); blocks above it are dropped. None: FROZEN_FEATURES' block for modes head, probe and hybrid (whatever
    # the pooling), else the final output
    layer: int | float | None = None
    layers: list[int] | None = None  # several blocks' pooled states (0 = embeddings); blocks above the top one dropped
    max_length: int = 512  # tokens per forward pass
    # ---- long inputs (head, probe) -----------------------------------------------------------------------------------
    long_inputs: str = "truncate"  # truncate (counted and reported) | chunk (overlapping windows, aggregated)
    chunk_overlap: int = 64  # tokens shared by consecutive chunks
    chunk_aggregate: str = "mean"  # mean | max over a text's chunk features
    # ---- MLP head (head, lora, qlora, full) --------------------------------------------------------------------------
    head_hidden: list[int] = field(default_factory=lambda: [256])  # [] = a linear head
    activation: str = "gelu"
    dropout: float = 0.1
    input_norm: str = "standardize"  # standardize | scale | layernorm | none, on the pooled input
    head_bias: bool = True
    layer_mix: str = "concat"  # how `layers` combine: concat | weighted (learned softmax weights)
    head_init: str = "default"  # default (PyTorch) | normal (std 0.02, as transformers' score) | lmhead
    # (lmhead: a linear head on the last token starts from the LM head's rows for the label words, i.e. from
    # the zero-shot classifier, as mode='lmhead' does; give a `template` that ends where the label word would come)
    # ---- label words (icl, lmhead; MLP heads with head_init='lmhead') ------------------------------------------------
    verbalizers: dict | None = None  # label -> the word(s) naming it
    # ---- probe (and the linear model of tfidf and hybrid) ------------------------------------------------------------
    # logreg | svm (calibrated probabilities) | ridge (regression). None: the task's (ridge for regression, else logreg)
    probe: str | None = None
    probe_c: float | None = None  # C of probe logreg / svm (inverse regularisation); None: chosen by CV
    probe_alpha: float | None = None  # alpha of probe='ridge' (its penalty); None: chosen by cross-validation
    # ---- icl ---------------------------------------------------------------------------------------------------------
    icl_shots: int = 8  # demonstrations per class, drawn from the training data with `seed`
    icl_template: str = "Text: {text}\nLabel: {label}"  # one demonstration; the query ends before {label}
    icl_instruction: str | None = None  # None: "Classify each text as one of: <verbalizers>."
    icl_separator: str = "\n\n"  # between demonstrations
    icl_calibrate: bool = True  # contextual calibration (Zhao et al. 2021) with content-free inputs
    chat_template: str = "auto"  # auto (use the tokenizer's chat template when it has one) | on | off
    # ---- LoRA (lora, qlora; peft). Other peft methods: pass a peft config object as `peft_config` --------------------
    lora_r: int = 16
    lora_alpha: int = 32
    # peft's default. 0.05 made CPU LoRA fits ~1.4x as long and ~15% larger in memory, for no accuracy over 3 seeds
    # (benchmarks/lora_dropout.py)
    lora_dropout: float = 0.0
    # attention: the blocks' attention projections (q/k/v/o; GPT-2's attn.c_attn, attn.c_proj), as transformers' and
    # peft's own LoRA examples. Against every linear projection ("all-linear"), two epochs on 1,000 examples ran
    # ~1.6x sooner with ~15% less peak memory and reached VADER's target in 51 s instead of 74 s (2 CPU cores,
    # benchmarks/time_to_accuracy.py). Or a list of module names (suffixes: "q_proj", "self_attn.v_proj")
    lora_targets: list[str] | str = "attention"
    lora_dora: bool = False  # weight-decomposed LoRA
    peft_config: Any = None  # a peft.PeftConfig; overrides the lora_* fields
    # ---- fine-tuning (lora, qlora, full) -----------------------------------------------------------------------------
    # full: the embeddings and the first k blocks stay frozen; LoRA: adapters on blocks >= k only. An int is a count,
    # a float in [0, 1) a share of the depth, rounded down; None: the mode's default (full FULL_FROZEN, LoRA 0)
    freeze_blocks: int | float | None = None

    def __post_init__(self):
        p = []
        if not (isinstance(self.model, str) and self.model.strip()):
            p.append(f"model must be a non-empty string (alias, .gguf path, directory or hub id), got {self.model!r}")
        self._fill_features()
        self._check_lora(p)
        self._check_choices(p)
        self._check_mode_rules(p)
        self._check_icl(p)
        self._check_probe(p)
        self._check_features(p)
        self._check_head(p)
        self._check_inputs(p)
        check(p, self, self.mode if isinstance(self.mode, str) else None)

    def _fill_features(self) -> None:
        """pooling=None and layer=None get the mode's defaults (FROZEN_FEATURES for POOLED modes, FINETUNED_FEATURES
        for fine-tuning); they stay None where the mode reads neither, and for mode='auto', whose rungs fill their
        own. A head started from the LM head (and mode lmhead) reads that head's input: the last token, final output."""
        if not isinstance(self.mode, str) or not self._uses("pooling") or self.mode == "auto":
            return
        if self.head_init == "lmhead" or self.mode == "lmhead":
            features = LMHEAD_FEATURES
        else:
            features = FROZEN_FEATURES if self.mode in POOLED else FINETUNED_FEATURES
        if self.pooling is None:
            self.pooling = features["pooling"]
        if self.layer is None and self.layers is None:
            self.layer = features["layer"]

    def _uses(self, name: str) -> bool:
        return self.mode in modes_using(MODEL_FIELD_MODES, name)

    def _check_lora(self, p: list[str]) -> None:
        """LoRA / QLoRA and the frozen blocks."""
        if not (is_int(self.lora_r) and self.lora_r >= 1):
            p.append(f"lora_r must be an int >= 1, got {self.lora_r!r}")
        if not (is_number(self.lora_alpha) and self.lora_alpha > 0):
            p.append(f"lora_alpha must be a number > 0, got {self.lora_alpha!r}")
        if not (is_number(self.lora_dropout) and 0 <= self.lora_dropout < 1):
            p.append(f"lora_dropout must be a number in [0, 1), got {self.lora_dropout!r}")
        if not (self.lora_targets in LORA_TARGET_SETS or is_str_list(self.lora_targets, allow_empty=False)):
            p.append(
                f"lora_targets must be 'attention', 'all-linear' or a non-empty list of module names, got "
                f"{self.lora_targets!r}"
            )
        elif isinstance(self.lora_targets, tuple):
            self.lora_targets = list(self.lora_targets)
        if self.peft_config is not None:
            if not is_peft_config(self.peft_config):
                p.append(
                    f"peft_config must be a peft.PeftConfig (e.g. peft.LoraConfig) or None, got {self.peft_config!r}"
                )
            elif self.mode in LORA:  # it replaces every lora_* field and freeze_blocks (modes.lora_config)
                p += [
                    f"{name} is not used when peft_config is given (it replaces the lora_* fields): remove it"
                    for name in changed(self, LORA_FIELDS)
                ]
        if not (
            self.freeze_blocks is None
            or (is_int(self.freeze_blocks) and self.freeze_blocks >= 0)
            or (isinstance(self.freeze_blocks, float) and 0 <= self.freeze_blocks < 1)
        ):
            p.append(
                f"freeze_blocks must be an int >= 0 (blocks) or a float in [0, 1) (a share of the depth), got "
                f"{self.freeze_blocks!r}"
            )
        elif self.freeze_blocks is None and self.mode in FINE_TUNING and self.peft_config is None:
            self.freeze_blocks = FULL_FROZEN if self.mode == "full" else 0

    def _check_choices(self, p: list[str]) -> None:
        """The options that take one of a few names, the speed-ups and the seed."""
        if not (isinstance(self.speedups, (list, tuple)) and set(self.speedups) <= set(SPEEDUPS)):
            p.append(f"speedups must be a list from {SPEEDUPS} ([] for none), got {self.speedups!r}")
        else:
            self.speedups = [s for s in SPEEDUPS if s in self.speedups]
        if not (is_int(self.seed) and 0 <= self.seed < 2**32):
            p.append(f"seed must be an int in [0, 2**32 - 1] (numpy and scikit-learn seeds), got {self.seed!r}")
        if self.threads is not None and not (is_int(self.threads) and self.threads >= 1):
            p.append(f"threads must be an int >= 1, or None for torch's own setting, got {self.threads!r}")
        for name, allowed in (
            ("task", TASKS),
            ("mode", MODES),
            ("layer_mix", LAYER_MIXES),
            ("activation", sorted(ACTIVATIONS)),
            ("input_norm", INPUT_NORMS),
            ("head_init", INITS),  # (an old value is named by renamed_value)
            ("long_inputs", LONG_INPUTS),
            ("chunk_aggregate", CHUNK_AGGREGATES),
            ("chat_template", CHAT),
            ("dtype", DTYPES),
        ):
            old = renamed_value(name, getattr(self, name))
            if old is not None:
                p.append(old)
            else:
                choice(p, self, name, allowed)
        if self.pooling is not None:  # None: a mode that reads no pooled vector (icl, tfidf), or auto
            choice(p, self, "pooling", POOLINGS)
        if self.probe is None and self.mode in LINEAR:  # the linear model the task needs
            self.probe = "ridge" if self.task == "regression" else "logreg"
        if self.probe is not None:  # None: a mode without a linear model, or auto (its rungs fill their own)
            choice(p, self, "probe", PROBES)

    def _check_mode_rules(self, p: list[str]) -> None:
        """What a mode needs of the other options."""
        if self.mode in ("icl", "lmhead") and self.task != "classification":
            p.append(f"mode={self.mode!r} scores label words, so it is for task='classification' only")
        if self.mode in ("probe", "hybrid") and self.pooling == "attention":
            p.append(
                f"mode={self.mode!r} fits a linear model on fixed pooled vectors: use pooling last, mean, max or "
                "last+mean"
            )
        linear = self.mode in LINEAR or (self.mode == "auto" and self.probe is not None)  # auto: for its rungs
        if linear and (self.task == "regression") != (self.probe == "ridge"):
            p.append(f"probe={self.probe!r} does not fit task={self.task!r}: ridge is for regression, logreg/svm not")
        if self.head_init == "lmhead" or self.mode == "lmhead":
            if self.pooling != "last" or self.layer is not None or self.layers is not None:
                p.append("heads that start from the LM head read its input: pooling='last', no layer / layers")
            if self.mode != "lmhead" and self.head_hidden:
                p.append("head_init='lmhead' needs a linear head: head_hidden=[]")
            if self.mode != "lmhead" and self.input_norm == "standardize" and not self.head_bias:
                p.append("head_init='lmhead' with input_norm='standardize' needs head_bias=True")
            if self.mode != "lmhead" and self.input_norm == "layernorm":
                p.append("head_init='lmhead' works with input_norm standardize, scale or none, not layernorm")

    def _check_icl(self, p: list[str]) -> None:
        """The label words, the prompt of mode='icl' and the text-pair separator."""
        if self.verbalizers is not None and not (
            isinstance(self.verbalizers, dict)
            and all(isinstance(v, str) and v.strip() for v in self.verbalizers.values())
        ):
            p.append(f"verbalizers must map each label to a non-empty string, got {self.verbalizers!r}")
        if not (is_int(self.icl_shots) and self.icl_shots >= 0):
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

    def _check_probe(self, p: list[str]) -> None:
        """The probe's penalty: C for logreg and svm, alpha for ridge."""
        for name in ("probe_c", "probe_alpha"):
            value = getattr(self, name)
            if value is not None and not (is_number(value) and value > 0):
                p.append(f"{name} must be a number > 0 or None, got {value!r}")
        probe = self.probe or ("ridge" if self.task == "regression" else "logreg")  # auto: its rungs' default
        if probe == "ridge" and self.probe_c is not None and self._uses("probe_c"):
            p.append(
                "probe_c is the C of probe logreg and svm; probe='ridge' takes probe_alpha (its penalty): "
                f"use probe_alpha={self.probe_c!r}"
            )
        if probe != "ridge" and self.probe_alpha is not None and self._uses("probe_alpha"):
            p.append(
                f"probe_alpha is the penalty of probe='ridge'; probe={probe!r} takes probe_c (its C): "
                "use probe_c, or set probe='ridge'"
            )

    def _check_features(self, p: list[str]) -> None:
        """Which blocks feed the head, and long inputs."""
        if self.pooling == "attention" and self.long_inputs == "chunk":
            p.append("long_inputs='chunk' works with pooling last, mean, max or last+mean, not attention")
        if self.layer is not None and self.layers is not None:
            p.append("set layer (one block, blocks above dropped) or layers (several blocks), not both")
        if self.layer is not None and not is_layer(self.layer):
            p.append(
                f"layer must be a non-zero int (1 = first block, -1 = last) or a fraction of the depth in (0, 1) "
                f"(0.75: the block at 3/4), got {self.layer!r}"
            )
        if self.layers is not None:
            if not isinstance(self.layers, (list, tuple)) or not self.layers or not all(map(is_int, self.layers)):
                p.append(f"layers must be a non-empty list of ints, got {self.layers!r}")
            elif len(set(self.layers)) != len(self.layers):
                p.append(f"layers must not repeat, got {list(self.layers)!r}")
            else:
                self.layers = list(self.layers)
        if self.layers is None and self.layer_mix != "concat" and self._uses("layer_mix"):
            p.append(f"layer_mix={self.layer_mix!r} combines several blocks: set layers, or remove layer_mix")
        if not (is_int(self.chunk_overlap) and 0 <= self.chunk_overlap):
            p.append(f"chunk_overlap must be an int >= 0, got {self.chunk_overlap!r}")
        elif self.long_inputs == "chunk" and is_int(self.max_length) and self.chunk_overlap >= self.max_length // 2:
            p.append(f"chunk_overlap must be < max_length / 2 = {self.max_length // 2}, got {self.chunk_overlap}")
        if self.long_inputs != "chunk" and self._uses("chunk_overlap"):
            p += [
                f"{name} is only used with long_inputs='chunk': remove it, or set long_inputs='chunk'"
                for name in changed(self, ("chunk_overlap", "chunk_aggregate"))
            ]

    def _check_head(self, p: list[str]) -> None:
        """The MLP head's shape."""
        if not isinstance(self.head_hidden, (list, tuple)) or not all(is_int(h) and h > 0 for h in self.head_hidden):
            p.append(f"head_hidden must be a list of positive ints ([] for a linear head), got {self.head_hidden!r}")
        else:
            self.head_hidden = list(self.head_hidden)
            if not self.head_hidden and self.activation != "gelu" and self._uses("activation"):
                p.append(f"activation={self.activation!r} is not used by a linear head (head_hidden=[]): remove it")
        if not (is_number(self.dropout) and 0 <= self.dropout < 1):
            p.append(f"dropout must be a number in [0, 1), got {self.dropout!r}")

    def _check_inputs(self, p: list[str]) -> None:
        """What the model reads: its length limit, the template and the labels."""
        if not (is_int(self.max_length) and self.max_length >= 2):
            p.append(f"max_length must be an int >= 2, got {self.max_length!r}")
        if not isinstance(self.template, str) or "{text}" not in self.template:
            p.append(f"template must be a string containing '{{text}}', got {self.template!r}")
        if self.labels is not None:
            if not isinstance(self.labels, (list, tuple)) or len(self.labels) == 0:
                p.append(f"labels must be a non-empty list or None, got {self.labels!r}")
            elif len(set(map(repr, self.labels))) != len(self.labels):
                p.append(f"labels must not repeat, got {list(self.labels)!r}")
            elif self.task == "regression":
                p.append(
                    "labels fixes the class order (classification, multilabel); a regression model's targets are "
                    f"named by its label column(s): remove labels={list(self.labels)!r}"
                )
            elif self.task == "classification" and len(self.labels) < 2:
                p.append(f"labels needs >= 2 classes for task='classification', got {list(self.labels)!r}")
            else:
                self.labels = list(self.labels)

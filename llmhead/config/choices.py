"""The values each choice option takes."""

from __future__ import annotations

SPEEDUPS = ("short_attention", "mapped_load")  # llmhead/speedups/

TASKS = ("classification", "multilabel", "regression")
MODES = ("head", "lora", "qlora", "full", "probe", "icl", "lmhead", "tfidf", "hybrid", "auto")
FROZEN_MODES = (
    "head",
    "probe",
    "hybrid",
    "lmhead",
)  # the backbone is never trained: features are computed once, cached
CHAT = ("auto", "on", "off")
SCHEDULES = ("linear", "cosine", "constant")
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")  # the training autocast (accelerate's name)
CALIBRATIONS = ("auto", "temperature", "platt", "none")  # calibration.py; auto: by task
LONG_INPUTS = ("truncate", "chunk")
CHUNK_AGGREGATES = ("mean", "max")

# Read by the modules that act on them, which import them from here: the schema itself needs no torch.
ACTIVATIONS = ("gelu", "relu", "silu", "tanh")  # model/heads.py maps each name to its torch module
INPUT_NORMS = ("standardize", "scale", "layernorm", "none")  # model/heads.py
LAYER_MIXES = ("concat", "weighted")  # model/heads.py
INITS = ("default", "normal", "lmhead")  # lmhead: set from the LM head's rows of the label words
POOLINGS = ("last", "mean", "max", "last+mean", "attention")  # model/pooling.py
FIXED = ("last", "mean", "max", "last+mean")  # no parameters: computed once from a frozen backbone and cached
DTYPES = ("auto", "float32", "bfloat16")  # model/precision.py
PROBES = ("logreg", "svm", "ridge")  # strategies/probe.py (also the linear model of tfidf and hybrid)

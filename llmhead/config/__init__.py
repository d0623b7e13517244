"""The schema: every option is a dataclass field that validates itself, with messages that name the field, the
value, what is allowed and how to fix it.

An option the chosen mode never reads is refused, never ignored: ``MODEL_FIELD_MODES`` and ``TRAIN_FIELD_MODES``
(usage.py) say which modes read each field (a field not listed is read by every mode).

    choices.py  the values of each choice option      usage.py  which modes read which option
    checks.py   shared checks, ``invalid``             model.py  ModelConfig
    train.py    TrainConfig, for_mode                  build.py  build (unknown and renamed keys)
    renamed.py  names of earlier versions: RENAMED, upgrade
"""

from llmhead.config.build import build
from llmhead.config.checks import invalid, is_layer
from llmhead.config.choices import (
    ACTIVATIONS,
    CHAT,
    CHUNK_AGGREGATES,
    DTYPES,
    FIXED,
    FROZEN_MODES,
    INITS,
    INPUT_NORMS,
    LAYER_MIXES,
    LONG_INPUTS,
    MIXED_PRECISIONS,
    MODES,
    POOLINGS,
    PROBES,
    SCHEDULES,
    SPEEDUPS,
    TASKS,
)
from llmhead.config.model import ModelConfig
from llmhead.config.renamed import RENAMED, RENAMED_VALUES, upgrade
from llmhead.config.train import FineTuneConfig, TrainConfig, for_mode, unused_by_task, warm_start_config
from llmhead.config.usage import (
    CONCRETE_MODES,
    FEATURES,
    FINE_TUNING,
    LADDER_RUNGS,
    LORA,
    MLP_HEAD,
    MODEL_FIELD_MODES,
    NOT_FOR_AUTO,
    TRAIN_FIELD_MODES,
    TRAINED,
    WHY,
    modes_using,
    options_table,
    used_options,
)

__all__ = [
    "ACTIVATIONS",
    "CHAT",
    "CHUNK_AGGREGATES",
    "CONCRETE_MODES",
    "DTYPES",
    "FEATURES",
    "FINE_TUNING",
    "FIXED",
    "FROZEN_MODES",
    "INITS",
    "INPUT_NORMS",
    "LADDER_RUNGS",
    "LAYER_MIXES",
    "LONG_INPUTS",
    "LORA",
    "MIXED_PRECISIONS",
    "MLP_HEAD",
    "MODEL_FIELD_MODES",
    "MODES",
    "NOT_FOR_AUTO",
    "POOLINGS",
    "PROBES",
    "RENAMED",
    "RENAMED_VALUES",
    "SCHEDULES",
    "SPEEDUPS",
    "TASKS",
    "TRAINED",
    "TRAIN_FIELD_MODES",
    "WHY",
    "FineTuneConfig",
    "ModelConfig",
    "TrainConfig",
    "build",
    "for_mode",
    "unused_by_task",
    "invalid",
    "is_layer",
    "modes_using",
    "options_table",
    "upgrade",
    "used_options",
    "warm_start_config",
]

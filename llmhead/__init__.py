"""llmhead: turn a pretrained decoder LLM into a text classifier or regressor.

import llmhead
clf = llmhead.from_pretrained("smollm2-135m", task="classification", mode="head")
clf.fit("train.csv", text="text", label="label")
clf.predict(["a text"])
"""

from __future__ import annotations

__version__ = "0.1.0"

import logging as _logging

# bitsandbytes (imported by transformers/peft when installed) warns on every CPU import that an optional
# kernel package is absent; its pure-PyTorch CPU path works without it.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

from llmhead.classifier import Classifier  # noqa: E402
from llmhead.config import ModelConfig, TrainConfig, build  # noqa: E402
from llmhead.data.read import DataError  # noqa: E402
from llmhead.features.extractor import FeatureExtractor  # noqa: E402
from llmhead.io.load import from_model, load  # noqa: E402
from llmhead.io.parity import check  # noqa: E402
from llmhead.io.save import LoadError  # noqa: E402
from llmhead.model.headmodel import HeadModel  # noqa: E402
from llmhead.selection.cv import cross_validate  # noqa: E402
from llmhead.selection.ladder import auto, run_ladder  # noqa: E402
from llmhead.selection.sweep import layer_sweep  # noqa: E402


def from_pretrained(model: str | None = None, **options) -> Classifier:
    """A classifier on ``model`` (alias, .gguf file, transformers directory or hub id).

    ``options`` are ``ModelConfig`` fields: task, labels, mode, pooling, head_hidden, dropout,
    max_length, dtype, template, seed, ... Weights load on first use.
    """
    if model is not None:
        options["model"] = model
    return Classifier(build(ModelConfig, options))


__all__ = [
    "Classifier",
    "FeatureExtractor",
    "HeadModel",
    "auto",
    "DataError",
    "LoadError",
    "ModelConfig",
    "TrainConfig",
    "check",
    "cross_validate",
    "layer_sweep",
    "run_ladder",
    "from_model",
    "from_pretrained",
    "load",
    "__version__",
]

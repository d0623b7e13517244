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

# The public names load on first use (PEP 562), so `import llmhead.config` (the schema) imports no torch.
_EXPORTS = {
    "Classifier": "llmhead.classifier",
    "ModelConfig": "llmhead.config",
    "TrainConfig": "llmhead.config",
    "build": "llmhead.config",
    "DataError": "llmhead.data",
    "FeatureExtractor": "llmhead.features.extractor",
    "from_model": "llmhead.io.load",
    "load": "llmhead.io.load",
    "check": "llmhead.io.parity",
    "templated_inputs": "llmhead.io.export",
    "LoadError": "llmhead.io.save",
    "HeadModel": "llmhead.model.headmodel",
    "cross_validate": "llmhead.selection.cv",
    "auto": "llmhead.selection.ladder",
    "run_ladder": "llmhead.selection.ladder",
    "layer_sweep": "llmhead.selection.sweep",
    "corpora": "llmhead.data.corpora",  # a module: the packaged labelled data sets
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llmhead' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_EXPORTS[name])
    value = module if name == "corpora" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


def from_pretrained(model: str | None = None, **options):
    """A classifier on ``model`` (alias, .gguf file, transformers directory or hub id).

    ``options`` are ``ModelConfig`` fields: task, labels, mode, pooling, head_hidden, dropout,
    max_length, dtype, template, seed, ... Weights load on first use.
    """
    from llmhead.classifier import Classifier
    from llmhead.config import ModelConfig, build

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
    "templated_inputs",
    "__version__",
]

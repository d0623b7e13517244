"""Strategies that train the backbone: ``lora`` (peft adapters), ``qlora`` (the same on a 4-bit base) and ``full``.

Each fit is a warm start (the head on frozen features of a sample: the backbone never sees a random head's
gradients) followed by the Accelerate loop of ``finetuning/loop.py``. LoRA saves its adapters; full fine-tuning
(and a merged LoRA) saves the backbone's weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from llmhead import events
from llmhead.config import warm_start_config
from llmhead.features.extract import FeatureSet
from llmhead.finetuning import adapters, runstate
from llmhead.finetuning.loop import Tokenized, finetune
from llmhead.io.save import (
    ADAPTER,
    BACKBONE,
    LoadError,
    check_finite,
    jsonable,
    load_into,
    load_tensors,
    save_tensors,
)
from llmhead.model import loading
from llmhead.strategies.base import Split
from llmhead.strategies.frozen import FrozenHead
from llmhead.strategies.headtrain import train_head


class FineTune(FrozenHead):
    adapters = False  # the trained part is a set of peft adapters

    def __init__(self, config):
        super().__init__(config)
        self.saved_backbone: Path | None = None  # a saved folder of fine-tuned weights
        self.merged = False

    def shares_weights(self) -> bool:
        return False  # these weights will train: never the extractor's shared frozen copy

    def load_backbone(self, source, keep: int) -> torch.nn.Module:
        if self.saved_backbone is not None:  # full / merged saves carry their own weights
            return loading.saved_weights(self.saved_backbone, self.config, self.weights_dtype())
        return loading.base_model(source, self.config, self.weights_dtype(), keep, self.quantization())

    def quantization(self):
        return None

    def forget_training(self) -> None:
        self.backbone_trained, self.merged, self.saved_backbone = False, False, None

    def adapt(self, backbone: torch.nn.Module) -> torch.nn.Module:
        """The backbone ready to train: adapters added, or weights unfrozen."""
        raise NotImplementedError

    def fit(self, clf, train: Split, val: Split, cfg, extra_metrics: dict) -> list[dict]:
        c = self.config
        clf.model.head = self.warm_start(clf, train, val, cfg)
        if cfg.gradient_checkpointing:
            clf.model.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        clf.model.backbone = self.adapt(clf.model.backbone)
        self.backbone_trained = True
        train_ids, _ = clf.extractor.tokenize(train.texts, c.max_length)
        val_ids, _ = clf.extractor.tokenize(val.texts, c.max_length)
        history = finetune(
            clf.model,
            clf.labels,
            clf.tokenizer,
            Tokenized(train_ids, train.targets),
            Tokenized(val_ids, val.targets),
            cfg,
            c.seed,
            extra_metrics,
            self.run_config(clf, cfg),
        )
        if cfg.gradient_checkpointing:
            clf.model.backbone.activation_checkpointing_disable()
        self.after_training(clf)
        clf.model.eval()
        if c.task == "multilabel" and cfg.tune_thresholds:
            val_logits = clf.logits(val.texts, batch_size=cfg.batch_size, templated=True)
            clf.labels.tune_thresholds(clf.labels.probabilities(val_logits), val.targets.numpy())
        return history

    def warm_start(self, clf, train: Split, val: Split, cfg) -> torch.nn.Module:
        """The head on frozen features (linear probing first): of every example when ``warm_start_examples`` is
        None (stopping on the validation set), else of a sample whose last fifth decides when it stops."""
        whole = cfg.warm_start and cfg.warm_start_examples is None
        if whole:
            x_train = clf.embed(train.texts, batch_size=cfg.batch_size, cache=True, templated=True)
            x_val = clf.embed(val.texts, batch_size=cfg.batch_size, cache=True, templated=True)
        else:  # the sample also gives the head's input statistics
            sample = np.random.default_rng(self.config.seed).permutation(len(train.texts))
            sample = sample[: cfg.warm_start_examples or 256]
            x_train = clf.embed([train.texts[i] for i in sample], batch_size=cfg.batch_size, cache=True, templated=True)
        head = self.start_head(clf, x_train)
        if not cfg.warm_start:
            return head
        warm = warm_start_config(dataclasses.replace(cfg, epochs=None, patience=None))
        if whole:
            fit_on, stop_on = (x_train, train.targets), (x_val, val.targets)
        else:
            cut = len(sample) - max(1, len(sample) // 5)
            rows, index, tokens = x_train.rows(), torch.as_tensor(sample), x_train.lengths is not None
            fit_on = (FeatureSet.from_rows(rows[:cut], tokens), train.targets[index[:cut]])
            stop_on = (FeatureSet.from_rows(rows[cut:], tokens), train.targets[index[cut:]])
        with events.muted():  # scored on a sample of the training data, not on the validation set
            train_head(head, clf.labels, fit_on, stop_on, warm, self.config.seed, progress=cfg.progress)
        return head

    def after_training(self, clf) -> None:
        pass

    def run_config(self, clf, cfg) -> dict:
        """What fine-tuning depends on besides the data, for a resume to check: every model setting (the base
        weights by fingerprint, not by path) and every training setting that changes what is trained."""
        model = {f"model.{k}": v for k, v in dataclasses.asdict(self.config).items() if k != "model"}
        train = {f"train.{k}": v for k, v in dataclasses.asdict(cfg).items() if k not in runstate.NOT_IDENTITY}
        return jsonable({**model, **train, "backbone fingerprint": clf.fingerprint})

    def trainable_parameters(self, model) -> int:
        return sum(p.numel() for p in model.parameters() if p.requires_grad) or super().trainable_parameters(model)

    def saved_as(self) -> str:
        if not self.backbone_trained:
            return "reference"
        return "adapter" if self.adapters and not self.merged else "weights"

    def write_backbone(self, model, folder: Path) -> dict | None:
        if self.saved_as() == "adapter":
            from peft import get_peft_model_state_dict

            save_tensors(folder / ADAPTER, get_peft_model_state_dict(model.backbone))
            return {"adapter_config": jsonable(model.backbone.peft_config["default"].to_dict())}
        if self.saved_as() == "weights":
            check_finite(model.backbone.state_dict())
            model.backbone.save_pretrained(folder / BACKBONE, safe_serialization=True)
        return None

    def restore(self, state: dict | None, folder: Path) -> None:
        if state and state.get("saved_as") == "weights":
            self.saved_backbone, self.backbone_trained, self.merged = folder / BACKBONE, True, self.adapters


class Full(FineTune):
    def weights_dtype(self) -> str:
        """float32 master weights (mixed precision computes in bf16/fp16)."""
        return "float32" if self.config.dtype == "auto" else self.config.dtype

    def adapt(self, backbone: torch.nn.Module) -> torch.nn.Module:
        return adapters.unfreeze(backbone, self.config.freeze_blocks)


class LoRA(FineTune):
    adapters = True

    def adapt(self, backbone: torch.nn.Module) -> torch.nn.Module:
        config = adapters.lora_config(self.config, backbone.config.num_hidden_layers, backbone)
        return adapters.with_adapters(backbone.requires_grad_(False), config, self.config.seed)

    def load_backbone_parts(self, clf, folder: Path, details: dict) -> None:
        if self.saved_as() != "reference" or details.get("saved_as") != "adapter":
            return
        from peft import get_peft_config, set_peft_model_state_dict

        settings = details.get("adapter_config")
        if not (isinstance(settings, dict) and settings.get("peft_type") == "LORA"):
            raise LoadError(f"{folder}: adapter_config must be a LoRA configuration (peft_type LORA)")
        adapted = adapters.with_adapters(clf.model.backbone, get_peft_config(settings))
        path = folder / ADAPTER
        load_into(path, lambda: set_peft_model_state_dict(adapted, load_tensors(path)))
        clf.model.backbone = adapted.eval()
        self.backbone_trained = True

    def merge(self, model) -> None:
        if self.saved_as() == "adapter":
            model.backbone = model.backbone.merge_and_unload()
            self.merged = True


class QLoRA(LoRA):
    def quantization(self):
        return adapters.quantization_config(self.config)

    def after_training(self, clf) -> None:
        """Rebuild the 4-bit base as ``load`` will, then put the trained adapters back.

        bitsandbytes repacks 4-bit weights for the CPU at their first forward pass, and the result depends on
        whether that pass trained; rebuilding makes predictions after ``fit`` equal those after ``load``."""
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        adapted = clf.model.backbone
        adapter, peft_config = get_peft_model_state_dict(adapted), adapted.peft_config["default"]
        fresh = adapters.with_adapters(clf.reload_backbone(), peft_config)
        set_peft_model_state_dict(fresh, adapter)
        clf.model.backbone = fresh.eval()

    def merge(self, model) -> None:
        raise ValueError(
            "merging adapters into 4-bit weights would re-quantize them and change predictions; keep the "
            "adapters (clf.save), or train with mode='lora' on a bf16/float32 base to merge"
        )

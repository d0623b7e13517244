"""The public object: build from a decoder LLM, ``fit`` on data, ``predict``, ``evaluate``, ``save``.

Weights load lazily, on the first call that needs them, so data problems are reported before a
model is ever loaded.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import backbone as bb
from . import checkpoint, metrics, modes
from .config import ModelConfig, TrainConfig, build, for_mode
from .data import FILE_FORMATS, DataError, read_raw_labels, read_table, read_texts
from .features import FeatureCache, FeatureSet, aggregate, chunk, extract, tokenize
from .finetune import Tokenized, finetune
from .heads import MLPHead
from .labels import LabelSpace
from .model import HeadModel
from .precision import resolve_dtype, torch_dtype
from .training import head_logits, train_head

log = logging.getLogger(__name__)


class Classifier:
    def __init__(self, config: ModelConfig, source: bb.Source | None = None):
        self.config = config
        self.source = source or bb.resolve(config.model)  # fails now on a missing file or misspelled alias
        self.labels: LabelSpace | None = None
        self.history: list[dict] = []
        self.truncated = 0  # training/eval texts cut at max_length in the last fit
        self._tokenizer = None
        self._pad_note: str | None = None
        self._model: HeadModel | None = None  # backbone + head; the head is built by fit or load
        self._fingerprint: str | None = None
        self._expected_fingerprint: str | None = None
        self._cache = FeatureCache()
        self._tokenizer_dir: Path | None = None
        self._saved_backbone: Path | None = None  # a saved full/merged backbone folder
        self._adapted = False  # the backbone carries adapters or trained weights
        self._merged = False
        self._source_blocks: int | None = None  # blocks of the source model, before any truncation

    # ---- loading -------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self._tokenizer_dir is not None:  # a saved model: the exact tokenizer it was trained with
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_dir)
            else:
                self._tokenizer, self._pad_note = bb.load_tokenizer(self.source, self.config.trust_remote_code)
        return self._tokenizer

    def _backbone(self) -> torch.nn.Module:
        if self._model is None:
            c = self.config
            if self._source_blocks is None:
                self._source_blocks = bb.model_config(self.source, c.trust_remote_code).num_hidden_layers
            total = self._source_blocks  # of the original model: `layer=-2` keeps its meaning after a save
            keep, self._layer_indices = bb.block_plan(total, c.layer, c.layers)
            if self._saved_backbone is not None:  # full / merged saves carry their own weights
                from transformers import AutoModel

                backbone = AutoModel.from_pretrained(self._saved_backbone, dtype=torch_dtype(self._weights_dtype()))
                backbone.eval()
            else:
                backbone = bb.load_backbone(
                    self.source,
                    self._weights_dtype(),
                    c.trust_remote_code,
                    keep_blocks=keep,
                    quantization_config=modes.quantization_config(c),
                )
            backbone.requires_grad_(False)  # until a training mode unfreezes what it trains
            self._fingerprint = bb.fingerprint(backbone)
            if (
                self._saved_backbone is None
                and self._expected_fingerprint
                and self._fingerprint != self._expected_fingerprint
            ):
                raise ValueError(
                    f"the weights of {self.source.name!r} differ from those this classifier was trained on "
                    f"(fingerprint {self._fingerprint} != {self._expected_fingerprint})"
                )
            self._model = HeadModel(backbone, MLPHead(self.hidden_size(backbone), 1), c.pooling, self._layer_indices)
        return self._model.backbone

    def _weights_dtype(self) -> str:
        """Full fine-tuning keeps float32 master weights (mixed precision computes in bf16/fp16)."""
        return "float32" if self.config.mode == "full" and self.config.dtype == "auto" else self.config.dtype

    @staticmethod
    def hidden_size(backbone) -> int:
        return backbone.get_input_embeddings().embedding_dim

    def _new_head(self) -> MLPHead:
        torch.manual_seed(self.config.seed)
        c = self.config
        return MLPHead(
            self.hidden_size(self._backbone()),
            self.labels.num_outputs,
            c.head_hidden,
            c.activation,
            c.dropout,
            num_layers=len(self._layer_indices or [None]),
            layer_mix=c.layer_mix,
            input_norm=c.input_norm,
            bias=c.head_bias,
            init=c.head_init,
            attention_pool=c.pooling == "attention",
        )

    # ---- data ----------------------------------------------------------------------------
    def _texts(self, data: Any, text, role: str) -> list[str]:
        if isinstance(data, (list, tuple)) and data and all(isinstance(t, str) for t in data):
            table = read_table({"text": list(data)}, role)
            table.origin = "list of texts"
            text = "text"
        else:
            if isinstance(data, str) and Path(data).suffix.lower() not in FILE_FORMATS:
                raise TypeError("predict takes a list of texts (wrap a single text in a list) or a data file/table")
            table = read_table(data, role)
        return read_texts(table, text, self.config.template, self.config.pair_separator)

    def _examples(self, data: Any, text, label, role: str) -> tuple[list[str], list, str]:
        table = read_table(data, role)
        texts = read_texts(table, text, self.config.template, self.config.pair_separator)
        return texts, read_raw_labels(table, label, self.config.task), table.origin

    def _features(self, texts: list[str], batch_size: int, cache: bool) -> FeatureSet:
        """(N, L, H) pooled features of ``texts``, from the cache when it has them."""
        c = self.config
        owner = None
        if c.long_inputs == "chunk":
            ids, owner = chunk(self.tokenizer, texts, c.max_length, c.chunk_overlap)
        else:
            ids, truncated = tokenize(self.tokenizer, texts, c.max_length)
            self.truncated += truncated
        self._backbone()
        settings = f"{c.pooling}|{self._layer_indices}|{resolve_dtype(c.dtype)}|{c.long_inputs}|{c.chunk_overlap}"
        key = FeatureCache.key(self._fingerprint, f"{settings}|{c.chunk_aggregate}|{owner}", ids)
        found = self._cache.get(key) if cache else None
        if found is None:
            found = extract(self._model, self.tokenizer, ids, batch_size, torch_dtype(c.dtype))
            if owner is not None:
                found = FeatureSet(aggregate(found.values, owner, len(texts), c.chunk_aggregate))
            if cache:
                self._cache.put(key, found)
        return found

    # ---- training ------------------------------------------------------------------------
    def fit(self, train: Any, eval: Any = None, *, text="text", label="label", **options) -> Classifier:
        """Train. ``options`` are ``TrainConfig`` fields: epochs, batch_size, lr, run_dir, resume, ..."""
        c = self.config
        cfg = for_mode(build(TrainConfig, options), c.mode)
        # Everything about the data (and any hub metric) is checked before any weights load.
        extra_metrics = {name: metrics.load_hub_metric(name) for name in cfg.metrics}
        train_texts, train_raw, origin = self._examples(train, text, label, "train")
        if (
            eval is None
            and type(train).__name__ == "DatasetDict"
            and any(s in train for s in ("validation", "valid", "dev", "eval"))
        ):
            eval = train
        labels = LabelSpace.learn(c.task, train_raw, c.labels, label)
        if c.task == "regression" and (cfg.class_weights is not None or cfg.focal_gamma):
            raise ValueError("class_weights and focal_gamma are for classification and multilabel, not regression")
        y_train = labels.encode(train_raw, origin)
        if eval is not None:
            val_texts, val_raw, val_origin = self._examples(eval, text, label, "eval")
            y_val = labels.encode(val_raw, val_origin)
        else:
            train_texts, val_texts, y_train, y_val = self._split(train_texts, y_train, cfg.val_fraction)
        self.labels = labels
        if cfg.feature_cache:
            self._cache.folder = Path(cfg.feature_cache)
        if self._adapted:  # a second fit starts again from the pretrained weights
            self._model, self._adapted, self._merged, self._saved_backbone = None, False, False, None

        self.truncated = 0
        x_train = self._features(train_texts, cfg.batch_size, cache=True)
        x_val = self._features(val_texts, cfg.batch_size, cache=True)
        head = self._new_head()
        head.fit_scaler(x_train.values)
        if c.mode == "head":
            self.history = train_head(head, labels, (x_train, y_train), (x_val, y_val), cfg, c.seed)
        elif cfg.warm_start:  # linear probing, then fine-tuning: the backbone never sees a random head's gradients
            warm = for_mode(dataclasses.replace(cfg, epochs=None, patience=None), "head")
            train_head(head, labels, (x_train, y_train), (x_val, y_val), warm, c.seed, progress=cfg.progress)
        self._model.head = head
        if c.mode != "head":
            self._model.backbone = modes.prepare(self._model.backbone, c, cfg.gradient_checkpointing)
            self._adapted = True
            train_ids, _ = tokenize(self.tokenizer, train_texts, c.max_length)
            val_ids, _ = tokenize(self.tokenizer, val_texts, c.max_length)
            self.history = finetune(
                self._model,
                labels,
                self.tokenizer,
                Tokenized(train_ids, y_train),
                Tokenized(val_ids, y_val),
                cfg,
                c.seed,
                extra_metrics,
            )
            if cfg.gradient_checkpointing:
                self._model.backbone.gradient_checkpointing_disable()
            if c.mode == "qlora":
                self._requantize()
        self._model.eval()
        if c.task == "multilabel" and cfg.tune_thresholds:
            if c.mode == "head":  # the frozen backbone's validation features are already computed
                val_logits = head_logits(self._model.head, x_val, cfg.batch_size)
            else:
                val_logits = self.logits(val_texts, batch_size=cfg.batch_size, templated=True)
            labels.tune_thresholds(labels.probabilities(val_logits), y_val.numpy())
        self._train_config = cfg
        return self

    def _requantize(self) -> None:
        """Rebuild the 4-bit base as ``load`` will, then put the trained adapters back.

        bitsandbytes repacks 4-bit weights for the CPU at their first forward pass, and the result depends on
        whether that pass trained; rebuilding makes predictions after ``fit`` equal those after ``load``.
        """
        from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        adapted, head = self._model.backbone, self._model.head
        adapter, peft_config = get_peft_model_state_dict(adapted), adapted.peft_config["default"]
        self._model = None
        fresh = get_peft_model(self._backbone(), peft_config)
        set_peft_model_state_dict(fresh, adapter)
        self._model.backbone, self._model.head = fresh.eval(), head

    def _split(self, texts: list[str], targets: torch.Tensor, fraction: float):
        from sklearn.model_selection import train_test_split

        n_val = max(1, round(fraction * len(texts)))
        if len(texts) - n_val < 1:
            raise DataError(f"need at least 2 training examples to carve a validation split, got {len(texts)}")
        stratify = None
        if self.config.task == "classification":
            counts = np.bincount(targets.numpy())
            if counts[counts > 0].min() >= 2 and n_val >= len(counts):
                stratify = targets.numpy()
        idx_train, idx_val = train_test_split(
            np.arange(len(texts)), test_size=n_val, random_state=self.config.seed, stratify=stratify
        )
        return (
            [texts[i] for i in idx_train],
            [texts[i] for i in idx_val],
            targets[torch.as_tensor(idx_train)],
            targets[torch.as_tensor(idx_val)],
        )

    # ---- inference -----------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.labels is None:
            raise RuntimeError("this classifier has no trained head yet: call fit() first, or llmhead.load(dir)")

    @torch.inference_mode()
    def logits(self, data: Any, text="text", batch_size: int = 32, templated: bool = False) -> torch.Tensor:
        """(N, num_outputs) float32 head outputs, in input order."""
        self._require_fitted()
        texts = data if templated else self._texts(data, text, "test")
        self._backbone()
        return head_logits(self._model.head, self._features(texts, batch_size, cache=False), batch_size)

    def predict(self, data: Any, text="text", batch_size: int = 32) -> list:
        """Label names (classification), lists of names (multilabel) or floats (regression)."""
        logits = self.logits(data, text, batch_size)
        return self.labels.decode(logits)

    def predict_proba(self, data: Any, text="text", batch_size: int = 32) -> np.ndarray:
        """(N, C) probabilities: softmax (classification) or per-label sigmoid (multilabel)."""
        self._require_fitted()
        return self.labels.probabilities(self.logits(data, text, batch_size))

    def evaluate(self, data: Any, text="text", label="label", batch_size: int = 32) -> dict:
        """Metrics: accuracy, macro_f1, per_class | micro/macro F1 | mse, mae, r2, pearson, spearman."""
        self._require_fitted()
        texts, raw, origin = self._examples(data, text, label, "test")
        targets = self.labels.encode(raw, origin)  # unseen labels fail here, before any forward pass
        with torch.inference_mode():
            self._backbone()
            out = head_logits(self._model.head, self._features(texts, batch_size, cache=False), batch_size)
        names = self.labels.names
        if self.config.task == "classification":
            result = metrics.classification(targets.numpy(), out.argmax(-1).numpy(), names)
        elif self.config.task == "multilabel":
            result = metrics.multilabel(targets.numpy().astype(int), self.labels.multilabel_decisions(out), names)
        else:
            truth = np.asarray([[float(v) for v in row] for row in raw])
            result = metrics.regression(truth, self.labels.values(out), names)
        return {"n": len(texts), **result}

    # ---- persistence ---------------------------------------------------------------------
    def _backbone_kind(self) -> str:
        """How the backbone is saved: a reference (head), adapters (lora/qlora), or full weights."""
        if not self._adapted and self._saved_backbone is None:
            return "reference"
        if self.config.mode in ("lora", "qlora") and not self._merged:
            return "adapter"
        return "weights"

    def save(self, folder) -> Path:
        """Write JSON + safetensors + tokenizer. A frozen backbone is referenced (and checked by
        fingerprint when loaded); LoRA adapters or fine-tuned weights are written in full."""
        self._require_fitted()
        self._backbone()
        head_state = self._model.head.state_dict()
        kind = self._backbone_kind()
        model_fields = {**dataclasses.asdict(self.config), "peft_config": None}
        adapter_config = None
        if kind == "adapter":
            adapter_config = _jsonable(self._model.backbone.peft_config["default"].to_dict())
        manifest = {
            "model": model_fields,
            "labels": self.labels.to_json(),
            "backbone": {
                "source": self.source.name,
                "kind": self.source.kind,
                "fingerprint": self._fingerprint if kind != "weights" else None,
                "saved_as": kind,
                "source_blocks": self._source_blocks,
                "adapter_config": adapter_config,
            },
            "tokenizer": {"pad_token_added": self._pad_note},
            "train": _jsonable(dataclasses.asdict(self._train_config)) if hasattr(self, "_train_config") else None,
            "history": self.history,
            "versions": _versions(),
        }
        backbone = self._model.backbone

        def write(tmp: Path) -> None:
            checkpoint.save_head(tmp, head_state)
            if kind == "adapter":
                from peft import get_peft_model_state_dict

                checkpoint.save_tensors(tmp / checkpoint.ADAPTER, get_peft_model_state_dict(backbone))
            elif kind == "weights":
                checkpoint.check_finite(backbone.state_dict())
                backbone.save_pretrained(tmp / checkpoint.BACKBONE, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp / checkpoint.TOKENIZER)
            checkpoint.save_manifest(tmp, manifest)

        return checkpoint.write_atomically(folder, write)

    def export(self, folder, format: str = "transformers") -> Path:
        """A plain transformers ``*ForSequenceClassification`` folder (LoRA merged; linear, bias-free heads
        on last-token pooling; a clear error for other heads)."""
        if format != "transformers":
            raise ValueError(f"format must be 'transformers', got {format!r}")
        self._require_fitted()
        from .export import export_transformers

        return checkpoint.write_atomically(folder, lambda tmp: export_transformers(self, tmp), marker="config.json")

    def merge(self) -> Classifier:
        """Fold LoRA adapters into the backbone weights (then saved in full). Nothing to do in other modes."""
        self._require_fitted()
        if self._backbone_kind() != "adapter":
            return self
        if self.config.mode == "qlora":
            raise ValueError(
                "merging adapters into 4-bit weights would re-quantize them and change predictions; keep the "
                "adapters (clf.save), or train with mode='lora' on a bf16/float32 base to merge"
            )
        self._model.backbone = self._model.backbone.merge_and_unload()
        self._merged = True
        return self

    @classmethod
    def load(cls, folder) -> Classifier:
        manifest, head_state, tokenizer_dir = checkpoint.read(folder)
        config = ModelConfig(**{**manifest["model"], "model": manifest["backbone"]["source"]})
        saved_as = manifest["backbone"].get("saved_as", "reference")
        # A save with its own fine-tuned weights does not need the original source to exist any more.
        source = (
            bb.Source(manifest["backbone"]["source"], manifest["backbone"]["kind"]) if saved_as == "weights" else None
        )
        clf = cls(config, source)
        clf.labels = LabelSpace.from_json(manifest["labels"])
        clf.history = manifest.get("history") or []
        clf._pad_note = manifest["tokenizer"]["pad_token_added"]
        clf._tokenizer_dir = tokenizer_dir
        clf._expected_fingerprint = manifest["backbone"]["fingerprint"]
        clf._source_blocks = manifest["backbone"].get("source_blocks")
        if saved_as == "weights":
            clf._saved_backbone = Path(folder) / checkpoint.BACKBONE
            clf._adapted, clf._merged = True, config.mode in ("lora", "qlora")
        clf._backbone()
        if saved_as == "adapter":
            from peft import get_peft_config, get_peft_model, set_peft_model_state_dict

            adapted = get_peft_model(clf._model.backbone, get_peft_config(manifest["backbone"]["adapter_config"]))
            set_peft_model_state_dict(adapted, checkpoint.load_tensors(Path(folder) / checkpoint.ADAPTER))
            clf._model.backbone = adapted.eval()
            clf._adapted = True
        head = clf._new_head()
        head.load_state_dict(head_state, strict=True)
        clf._model.head = head.eval()
        return clf


def _jsonable(value):
    """peft and dataclass dicts hold sets and enums; JSON holds lists and strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set) else items
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return getattr(value, "value", str(value))


def _versions() -> dict:
    import accelerate
    import transformers

    from . import __version__

    return {
        "llmhead": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
    }

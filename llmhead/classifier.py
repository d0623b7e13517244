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

from llmhead import metrics, speedups
from llmhead.config import FROZEN_MODES, ModelConfig, TrainConfig, build, for_mode, used_options, warm_start_config
from llmhead.data.augment import augment
from llmhead.data.labels import LabelSpace
from llmhead.data.read import DataError, read_inputs, read_raw_labels, read_table, read_texts
from llmhead.features.cache import FeatureCache
from llmhead.features.extract import FeatureSet, aggregate, chunk, extract, tokenize
from llmhead.finetuning import adapters as modes
from llmhead.finetuning import runstate
from llmhead.finetuning.loop import Tokenized, finetune
from llmhead.io import save as checkpoint
from llmhead.model import backbone as bb
from llmhead.model.headmodel import HeadModel
from llmhead.model.heads import MLPHead
from llmhead.model.pooling import FIXED
from llmhead.model.precision import resolve_dtype, torch_dtype
from llmhead.strategies.headtrain import head_logits, train_head
from llmhead.strategies.probe import ProbeHead, fit_probe
from llmhead.strategies.prompting import ICLHead, ICLScorer, build_prompt, pick_demonstrations, verbalizer_words

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
        self._icl_demos: list[tuple[str, int]] = []  # mode='icl': the demonstrations (text, label index)
        self._icl_scorer: ICLScorer | None = None
        self._icl_chat = False  # mode='icl': whether the prompt uses the tokenizer's chat template
        self.ladder = None  # mode='auto': the ladder's result
        self._progress = True  # progress bars; fit(progress=False) turns them off

    # ---- loading -------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self._tokenizer_dir is not None:  # a saved model: the exact tokenizer it was trained with
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(
                    self._tokenizer_dir, trust_remote_code=self.config.trust_remote_code, local_files_only=True
                )
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
            if c.mode == "icl":  # the LM head is the classifier: load the causal LM
                from transformers import AutoModelForCausalLM

                backbone = speedups.load_pretrained(
                    c.speedups,
                    AutoModelForCausalLM,
                    self.source.pretrained_path(),
                    torch_dtype(c.dtype),
                    trust_remote_code=c.trust_remote_code,
                ).eval()
            elif self._saved_backbone is not None:  # full / merged saves carry their own weights
                from transformers import AutoModel

                backbone = speedups.load_pretrained(
                    c.speedups,
                    AutoModel,
                    self._saved_backbone,
                    torch_dtype(self._weights_dtype()),
                    trust_remote_code=c.trust_remote_code,
                    use_safetensors=True,  # a save writes safetensors only: never a .bin (pickle) put beside them
                    local_files_only=True,
                )
                backbone.eval()
            else:
                backbone = bb.load_backbone(
                    self.source,
                    self._weights_dtype(),
                    c.trust_remote_code,
                    keep_blocks=keep,
                    quantization_config=modes.quantization_config(c),
                    enabled_speedups=c.speedups,
                )
            speedups.install(backbone, c.speedups)  # the CPU speed-ups chosen (speedups/__init__.py)
            backbone.requires_grad_(False)  # until a training mode unfreezes what it trains
            self._fingerprint = bb.fingerprint(backbone.base_model if c.mode == "icl" else backbone)
            if (
                self._saved_backbone is None
                and self._expected_fingerprint
                and self._fingerprint != self._expected_fingerprint
            ):
                raise checkpoint.LoadError(
                    f"the weights of {self.source.name!r} differ from those this classifier was trained on "
                    f"(fingerprint {self._fingerprint} != {self._expected_fingerprint}): its head would predict "
                    "wrongly on them. Load it with the base model it was trained on."
                )
            self._model = HeadModel(
                backbone,
                MLPHead(self.hidden_size(backbone), 1),
                c.pooling,
                self._layer_indices,
                speedups.last_token_mlp(backbone, c.speedups),  # inert outside HeadModel.features (ICL never enters)
            )
        return self._model.backbone

    def _source_blocks_count(self) -> int:
        if self._source_blocks is None:
            self._source_blocks = bb.model_config(self.source, self.config.trust_remote_code).num_hidden_layers
        return self._source_blocks

    def _weights_dtype(self) -> str:
        """Full fine-tuning keeps float32 master weights (mixed precision computes in bf16/fp16)."""
        return "float32" if self.config.mode == "full" and self.config.dtype == "auto" else self.config.dtype

    @staticmethod
    def hidden_size(backbone) -> int:
        return backbone.get_input_embeddings().embedding_dim

    def _new_head(self) -> torch.nn.Module:
        torch.manual_seed(self.config.seed)
        c = self.config
        width = self.hidden_size(self._backbone())
        n_layers = len(self._layer_indices or [None])
        if c.mode == "icl":
            return ICLHead(self.labels.num_outputs)
        if c.mode == "probe":
            binary = c.task == "classification" and self.labels.num_outputs == 2
            return ProbeHead(n_layers * width, self.labels.num_outputs, c.probe, c.task, 1 if binary else None)
        if c.mode == "lmhead":  # the label words' LM-head rows, nothing else
            return MLPHead(width, self.labels.num_outputs, [], dropout=0.0, input_norm="none", bias=True)
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
        return read_inputs(data, text, role, self.config.template, self.config.pair_separator)

    def _examples(self, data: Any, text, label, role: str, templated: bool = True) -> tuple[list[str], list, str]:
        table = read_table(data, role)
        texts = read_texts(table, text, self.config.template if templated else "{text}", self.config.pair_separator)
        return texts, read_raw_labels(table, label, self.config.task), table.origin

    def _template(self, texts: list[str]) -> list[str]:
        return [self.config.template.replace("{text}", t) for t in texts]

    def _label_token_ids(self, words: list[str]) -> list[int]:
        """The first token of each label word as it would follow the prompt (after a space unless the
        template already ends in whitespace): the LM-head row that scores that label."""
        lead = "" if self.config.template[-1:].isspace() else " "
        return [self.tokenizer(lead + w, add_special_tokens=False)["input_ids"][0] for w in words]

    def _features(self, texts: list[str], batch_size: int, cache: bool) -> FeatureSet:
        """Pooled features of ``texts`` (N, L, H), or token states for attention pooling; examples the
        cache already holds (same weights, settings and token ids) are not computed again."""
        c = self.config
        if c.long_inputs == "chunk":
            windows, owner = chunk(self.tokenizer, texts, c.max_length, c.chunk_overlap)
            rows: list[list[list[int]]] = [[] for _ in texts]
            for w, o in zip(windows, owner):
                rows[o].append(w)
        else:
            ids, truncated = tokenize(self.tokenizer, texts, c.max_length)
            self.truncated += truncated
            rows = [[x] for x in ids]
        self._backbone()
        cache = cache and not self._adapted  # trained weights: the cache key (pretrained fingerprint) would lie
        attn = getattr(self._model.backbone.config, "_attn_implementation", None)  # kernels round differently
        settings = (
            f"{c.pooling}|{self._layer_indices}|{resolve_dtype(c.dtype)}|{c.long_inputs}|{c.chunk_overlap}|"
            f"{c.chunk_aggregate}|{attn}"
        )
        skey = FeatureCache.settings_key(self._fingerprint, settings)
        keys = FeatureCache.row_keys(rows)
        found = self._cache.lookup(skey, keys) if cache else [None] * len(rows)
        todo: dict[bytes, int] = {}  # each distinct missing example once
        for i, f in enumerate(found):
            if f is None:
                todo.setdefault(keys[i], i)
        if todo:
            computed = self._extract([rows[i] for i in todo.values()], batch_size)
            new = dict(zip(todo, computed.rows()))
            if cache:
                self._cache.put(skey, list(todo), computed)
            found = [f if f is not None else new[k] for f, k in zip(found, keys)]
        return FeatureSet.from_rows(found, tokens=self.config.pooling not in FIXED)

    def _extract(self, rows: list[list[list[int]]], batch_size: int) -> FeatureSet:
        windows = [w for r in rows for w in r]
        computed = extract(
            self._model, self.tokenizer, windows, batch_size, torch_dtype(self.config.dtype), self._progress
        )
        if len(windows) == len(rows):
            return computed
        owner = [i for i, r in enumerate(rows) for _ in r]
        return FeatureSet(aggregate(computed.values, owner, len(rows), self.config.chunk_aggregate))

    # ---- training ------------------------------------------------------------------------
    def fit(self, train: Any, eval: Any = None, *, text="text", label="label", **options) -> Classifier:
        """Train. ``options`` are ``TrainConfig`` fields: epochs, batch_size, lr, run_dir, resume, ..."""
        c = self.config
        if c.mode == "auto":
            from llmhead.selection.ladder import fit_auto

            return fit_auto(self, train, eval, text, label, options)
        cfg = for_mode(build(TrainConfig, options), c.mode)
        if c.mode == "icl" and cfg.augment:
            raise ValueError("augment is for modes that train; mode='icl' only picks demonstrations")
        if cfg.neftune_alpha and c.mode not in ("lora", "qlora", "full"):
            raise ValueError(
                f"neftune_alpha perturbs embeddings while fine-tuning: modes lora/qlora/full, not {c.mode!r}"
            )
        if cfg.epochs == 0 and c.mode not in ("head", "lmhead"):
            raise ValueError(f"epochs=0 (the head as initialised) is for modes head and lmhead, not {c.mode!r}")
        # Everything about the data (and any hub metric) is checked before any weights load.
        extra_metrics = {name: metrics.load_hub_metric(name) for name in cfg.metrics}
        train_texts, train_raw, origin = self._examples(train, text, label, "train", templated=False)
        if (
            eval is None
            and type(train).__name__ == "DatasetDict"
            and any(s in train for s in ("validation", "valid", "dev", "eval"))
        ):
            eval = train
        labels = LabelSpace.learn(c.task, train_raw, c.labels, label, origin=origin)
        if c.task == "regression" and (cfg.class_weights is not None or cfg.focal_gamma):
            raise ValueError("class_weights and focal_gamma are for classification and multilabel, not regression")
        verbalized = c.mode in ("icl", "lmhead") or c.head_init == "verbalizer"
        words = verbalizer_words(labels.names, c.verbalizers) if verbalized else None
        y_train = labels.encode(train_raw, origin)
        if eval is not None:
            val_texts, val_raw, val_origin = self._examples(eval, text, label, "eval", templated=False)
            y_val = labels.encode(val_raw, val_origin)
        elif c.mode in ("probe", "icl"):  # nothing to stop early: every example trains (probes cross-validate C)
            val_texts, y_val = [], None
        else:
            train_texts, val_texts, y_train, y_val = self._split(train_texts, y_train, cfg.val_fraction)
        self.labels = labels
        if cfg.feature_cache:
            self._cache.folder = Path(cfg.feature_cache)
        if self._adapted:  # a second fit starts again from the pretrained weights
            self._model, self._adapted, self._merged, self._saved_backbone = None, False, False, None
        # Augmentation happens after the validation split, on training texts only.
        train_texts, y_train = augment(train_texts, y_train, cfg.augment, cfg.augment_ops, cfg.augment_p, c.seed)
        train_texts, val_texts = self._template(train_texts), self._template(val_texts)
        self._train_config = cfg
        self._progress = cfg.progress
        self.truncated = 0
        if c.mode == "icl":
            return self._fit_icl(train_texts, y_train, val_texts, y_val, words)

        whole = c.mode in FROZEN_MODES or (cfg.warm_start and cfg.warm_start_examples is None)
        if whole:
            x_train = self._features(train_texts, cfg.batch_size, cache=True)
            x_val = self._features(val_texts, cfg.batch_size, cache=True) if val_texts else None
        else:  # fine-tuning: frozen features of a sample, for the head's input statistics and its warm start
            sample = np.random.default_rng(c.seed).permutation(len(train_texts))[: cfg.warm_start_examples or 256]
            x_train, x_val = self._features([train_texts[i] for i in sample], cfg.batch_size, cache=True), None
        if c.mode == "probe":
            head, info = fit_probe(x_train.values, y_train, c.probe, c.task, c.probe_c, c.seed)
            self._model.head = head.eval()
            self.history = [{"probe": c.probe, **info, **self._val_record(x_val, y_val, cfg.batch_size)}]
            self._tune_thresholds(x_val, y_val, cfg)
            return self
        head = self._new_head()
        head.fit_scaler(x_train.values)
        if words is not None:  # start from the zero-shot classifier: the LM head's rows for the label words
            rows = bb.lm_head_rows(self.source, self._model.backbone, self._label_token_ids(words), c.trust_remote_code)
            head.init_from_rows(rows)
        if c.mode in FROZEN_MODES:
            self.history = train_head(
                head,
                labels,
                (x_train, y_train),
                (x_val, y_val),
                cfg,
                c.seed,
                progress=cfg.progress,
                start_is_candidate=words is not None,
            )
        elif cfg.warm_start:  # linear probing, then fine-tuning: the backbone never sees a random head's gradients
            warm = warm_start_config(dataclasses.replace(cfg, epochs=None, patience=None))
            if whole:
                fit_on, stop_on = (x_train, y_train), (x_val, y_val)
            else:  # the sample's last fifth decides when the warm start stops
                cut = len(sample) - max(1, len(sample) // 5)
                rows, index, tokens = x_train.rows(), torch.as_tensor(sample), x_train.lengths is not None
                fit_on = (FeatureSet.from_rows(rows[:cut], tokens), y_train[index[:cut]])
                stop_on = (FeatureSet.from_rows(rows[cut:], tokens), y_train[index[cut:]])
            train_head(head, labels, fit_on, stop_on, warm, c.seed, progress=cfg.progress)
        self._model.head = head
        if c.mode not in FROZEN_MODES:
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
                self._run_config(cfg),
            )
            if cfg.gradient_checkpointing:
                self._model.backbone.activation_checkpointing_disable()
            if c.mode == "qlora":
                self._requantize()
        self._model.eval()
        if c.mode in FROZEN_MODES:
            self._tune_thresholds(x_val, y_val, cfg)
        elif c.task == "multilabel" and cfg.tune_thresholds:
            val_logits = self.logits(val_texts, batch_size=cfg.batch_size, templated=True)
            labels.tune_thresholds(labels.probabilities(val_logits), y_val.numpy())
        return self

    def _run_config(self, cfg: TrainConfig) -> dict:
        """What fine-tuning depends on besides the data, for a resume to check: every model setting (the base
        weights by fingerprint, not by path) and every training setting that changes what is trained."""
        model = {f"model.{k}": v for k, v in dataclasses.asdict(self.config).items() if k != "model"}
        train = {f"train.{k}": v for k, v in dataclasses.asdict(cfg).items() if k not in runstate.NOT_IDENTITY}
        return _jsonable({**model, **train, "backbone fingerprint": self._fingerprint})

    def _tune_thresholds(self, x_val: FeatureSet | None, y_val, cfg: TrainConfig) -> None:
        """Multilabel: per-label thresholds on validation F1, from the frozen backbone's cached features."""
        if self.config.task == "multilabel" and cfg.tune_thresholds and x_val is not None:
            val_logits = head_logits(self._model.head, x_val, cfg.batch_size)
            self.labels.tune_thresholds(self.labels.probabilities(val_logits), y_val.numpy())

    def _val_record(self, x_val: FeatureSet | None, y_val, batch_size: int) -> dict:
        if x_val is None:
            return {}
        out = head_logits(self._model.head, x_val, batch_size)
        record = {"val_loss": self.labels.loss(out, y_val).item()}
        if self.config.task == "classification":
            record["val_accuracy"] = float((out.argmax(-1) == y_val).float().mean())
        return record

    def _fit_icl(self, texts: list[str], targets: torch.Tensor, val_texts, y_val, words: list[str]) -> Classifier:
        c = self.config
        picked = pick_demonstrations(targets.numpy(), c.icl_shots, c.seed)
        self._icl_demos = [(texts[i], int(targets[i])) for i in picked]
        self._backbone()
        record: dict = {"demonstrations": len(picked)}
        has_chat = bool(self.tokenizer.chat_template)
        if c.chat_template == "on" and not has_chat:
            raise ValueError(f"chat_template='on' but the tokenizer of {self.source.name!r} has no chat template")
        self._icl_chat = c.chat_template == "on" or (c.chat_template == "auto" and has_chat)
        if c.chat_template == "auto" and has_chat:
            # Small or base-like models often do better without the chat format: choose on training rows
            # that are not demonstrations (up to 64), never on evaluation data.
            rest = np.setdiff1d(np.arange(len(texts)), picked)
            rest = np.random.default_rng(c.seed).permutation(rest)[:64]
            if len(rest) >= 8:
                scores = {}
                for chat in (True, False):
                    self._icl_chat, self._icl_scorer = chat, None
                    head = self._calibrated_head()
                    out = head(self._scorer().scores([texts[i] for i in rest], progress=False))
                    scores["chat" if chat else "plain"] = float((out.argmax(-1) == targets[rest]).float().mean())
                self._icl_chat = scores["chat"] >= scores["plain"]
                record["prompt_choice_accuracy"] = scores
        record["chat_template"] = self._icl_chat
        self._icl_scorer = None
        self._model.head = self._calibrated_head().eval()
        record["content_free_probs"] = self._model.head.log_cf.exp().tolist()
        if val_texts:
            out = self._logits_of(val_texts, self._train_config.batch_size)
            record["val_accuracy"] = float((out.argmax(-1) == y_val).float().mean())
        self.history = [record]
        return self

    def _calibrated_head(self) -> ICLHead:
        head = self._new_head()
        if self.config.icl_calibrate:
            head.log_cf.copy_(self._scorer().content_free_bias())
        return head

    def _scorer(self) -> ICLScorer:
        if self._icl_scorer is None:
            words = verbalizer_words(self.labels.names, self.config.verbalizers)
            demos = [(t, words[y]) for t, y in self._icl_demos]
            prompt = build_prompt(self.tokenizer, self.config, demos, words, self._icl_chat)
            self._icl_scorer = ICLScorer(
                self._backbone(), self.tokenizer, prompt, words, torch_dtype(self.config.dtype)
            )
        return self._icl_scorer

    def _requantize(self) -> None:
        """Rebuild the 4-bit base as ``load`` will, then put the trained adapters back.

        bitsandbytes repacks 4-bit weights for the CPU at their first forward pass, and the result depends on
        whether that pass trained; rebuilding makes predictions after ``fit`` equal those after ``load``.
        """
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        adapted, head = self._model.backbone, self._model.head
        adapter, peft_config = get_peft_model_state_dict(adapted), adapted.peft_config["default"]
        self._model = None
        fresh = modes.with_adapters(self._backbone(), peft_config)
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

    @torch.no_grad()
    def logits(
        self, data: Any, text="text", batch_size: int = 32, templated: bool = False, cache: bool = False
    ) -> torch.Tensor:
        """(N, num_outputs) float32 head outputs, in input order. ``cache=True`` keeps the examples'
        features for later calls (cross-validation does)."""
        self._require_fitted()
        texts = data if templated else self._texts(data, text, "test")
        return self._logits_of(texts, batch_size, cache)

    @torch.no_grad()
    def _logits_of(self, texts: list[str], batch_size: int, cache: bool = False) -> torch.Tensor:
        self._backbone()
        if self.config.mode == "icl":
            return self._model.head(self._scorer().scores(texts, progress=self._progress and len(texts) > 64))
        return head_logits(self._model.head, self._features(texts, batch_size, cache=cache), batch_size)

    def predict(self, data: Any, text="text", batch_size: int = 32) -> list:
        """Label names (classification), lists of names (multilabel) or floats (regression)."""
        logits = self.logits(data, text, batch_size)
        return self.labels.decode(logits)

    def predict_proba(self, data: Any, text="text", batch_size: int = 32) -> np.ndarray:
        """(N, C) probabilities: softmax (classification) or per-label sigmoid (multilabel)."""
        self._require_fitted()
        return self.labels.probabilities(self.logits(data, text, batch_size))

    def evaluate(self, data: Any, text="text", label="label", batch_size: int = 32, cache: bool = False) -> dict:
        """Metrics: accuracy, macro_f1, per_class | micro/macro F1 | mse, mae, r2, pearson, spearman."""
        self._require_fitted()
        texts, raw, origin = self._examples(data, text, label, "test")
        targets = self.labels.encode(raw, origin)  # unseen labels fail here, before any forward pass
        return {"n": len(texts), **self.score_logits(self._logits_of(texts, batch_size, cache), targets, raw)}

    def score_logits(self, out: torch.Tensor, targets: torch.Tensor, raw: list) -> dict:
        """Metrics of head outputs against encoded ``targets`` (and the raw values, for regression)."""
        names = self.labels.names
        if self.config.task == "classification":
            return metrics.classification(targets.numpy(), out.argmax(-1).numpy(), names)
        if self.config.task == "multilabel":
            return metrics.multilabel(targets.numpy().astype(int), self.labels.multilabel_decisions(out), names)
        truth = np.asarray([[float(v) for v in (row if isinstance(row, (list, tuple)) else [row])] for row in raw])
        return metrics.regression(truth, self.labels.values(out), names)

    def share_frozen(self, other: Classifier) -> None:
        """Reuse ``other``'s tokenizer, feature cache and (frozen) loaded weights: cross-validation folds
        and ladder rungs on the same model then load it once and compute each example's features once."""
        self._tokenizer, self._pad_note, self._cache = other.tokenizer, other._pad_note, other._cache
        if other._model is None or other._adapted or self.config.mode not in FROZEN_MODES + ("icl",):
            return
        same_cut = (self.config.layer, self.config.layers) == (other.config.layer, other.config.layers)
        backbone = other._model.backbone
        if other.config.mode == "icl" and self.config.mode != "icl":
            backbone = backbone.base_model  # the causal LM's body is exactly the frozen backbone
        elif self.config.mode == "icl" and other.config.mode != "icl":
            return  # icl needs the LM head, which a plain backbone does not have
        if not same_cut or self.config.dtype != other.config.dtype:
            return
        self._source_blocks, self._layer_indices = other._source_blocks, other._layer_indices
        self._fingerprint = other._fingerprint
        self._model = HeadModel(
            backbone, other._model.head, self.config.pooling, self._layer_indices, other._model.last_mlp
        )

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
            "icl": {"demonstrations": [list(d) for d in self._icl_demos], "chat_template": self._icl_chat}
            if self.config.mode == "icl"
            else None,
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

        return checkpoint.write_save(folder, write, manifest)

    def export(self, folder, format: str = "transformers") -> Path:
        """A plain transformers ``*ForSequenceClassification`` folder (LoRA merged; linear, bias-free heads
        on last-token pooling; a clear error for other heads)."""
        if format != "transformers":
            raise ValueError(f"format must be 'transformers', got {format!r}")
        self._require_fitted()
        from llmhead.io.export import export_transformers

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

    @property
    def model(self) -> HeadModel:
        """The head-swapping module (backbone -> pooling -> head), loading the weights if they are not yet."""
        self._backbone()
        return self._model

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (they load on the first call that needs them)."""
        return self._model is not None

    @classmethod
    def load(cls, folder, trust_remote_code: bool = False) -> Classifier:
        """A saved classifier, after checking every file of the save against its digest. ``trust_remote_code`` is
        the caller's to give: a saved manifest never turns it on."""
        folder = Path(folder).expanduser()
        manifest, head_state, tokenizer_dir = checkpoint.read(folder)
        where = folder / checkpoint.MANIFEST
        try:
            backbone, saved = manifest["backbone"], dict(manifest["model"])
            source_name, saved_as = backbone["source"], backbone.get("saved_as", "reference")
            if saved.get("trust_remote_code") and not trust_remote_code:
                raise checkpoint.LoadError(
                    f"{where}: this model was trained with trust_remote_code=True, so loading it runs Python code "
                    f"that ships with {source_name!r}. Nothing was loaded. If you trust that code, call "
                    "llmhead.load(folder, trust_remote_code=True)."
                )
            saved["trust_remote_code"] = trust_remote_code
            # options a mode never reads are refused now; saves from before that may carry them
            config = ModelConfig(**{**used_options(ModelConfig, saved, saved.get("mode")), "model": source_name})
            labels = LabelSpace.from_json(manifest["labels"])
            pad_note = manifest["tokenizer"]["pad_token_added"]
            fingerprint = backbone["fingerprint"]
        except checkpoint.LoadError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise checkpoint.LoadError(f"{where}: not a manifest this version can load ({exc!r})") from exc
        # A save with its own fine-tuned weights does not need the original source to exist any more.
        source = bb.Source(source_name, backbone["kind"]) if saved_as == "weights" else None
        clf = cls(config, source)
        clf.labels, clf.history, clf._pad_note = labels, manifest.get("history") or [], pad_note
        clf._tokenizer_dir = tokenizer_dir
        clf._expected_fingerprint = fingerprint
        clf._source_blocks = backbone.get("source_blocks")
        if manifest.get("icl"):
            clf._icl_demos = [(t, int(y)) for t, y in manifest["icl"]["demonstrations"]]
            clf._icl_chat = bool(manifest["icl"]["chat_template"])
        if saved_as == "weights":
            clf._saved_backbone = folder / checkpoint.BACKBONE
            clf._adapted, clf._merged = True, config.mode in ("lora", "qlora")
        _ = clf.tokenizer  # now, while the checked files are the ones on disk (it would otherwise load on first use)
        clf._backbone()
        if saved_as == "adapter":
            from peft import get_peft_config, set_peft_model_state_dict

            settings = backbone.get("adapter_config")
            if not (isinstance(settings, dict) and settings.get("peft_type") == "LORA"):
                raise checkpoint.LoadError(f"{where}: adapter_config must be a LoRA configuration (peft_type LORA)")
            adapted = modes.with_adapters(clf._model.backbone, get_peft_config(settings))
            path = folder / checkpoint.ADAPTER
            _load_into(path, lambda: set_peft_model_state_dict(adapted, checkpoint.load_tensors(path)))
            clf._model.backbone = adapted.eval()
            clf._adapted = True
        head = clf._new_head()
        _load_into(folder / checkpoint.HEAD, lambda: head.load_state_dict(head_state, strict=True))
        clf._model.head = head.eval()
        return clf


def _load_into(path: Path, load) -> None:
    """Run ``load``; a mismatch of names or shapes is reported with the file it came from."""
    try:
        result = load()
    except RuntimeError as exc:
        raise checkpoint.LoadError(f"{path}: does not fit the model its manifest describes: {exc}") from exc
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise checkpoint.LoadError(f"{path}: holds tensors the model does not have: {unexpected[:5]}")
    missing = [k for k in getattr(result, "missing_keys", None) or [] if "lora_" in k]  # the base's keys are expected
    if missing:
        raise checkpoint.LoadError(f"{path}: lacks adapter tensors the model has: {missing[:5]}")


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

    from llmhead import __version__

    return {
        "llmhead": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
    }

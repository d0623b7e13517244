"""The public object: build from a decoder LLM, ``fit`` on data, ``predict``, ``evaluate``, ``save``.

A thin facade: it holds the configuration, the labels, the model (``HeadModel``: backbone -> pooling -> head), the
feature extractor (tokenizer, shared frozen weights, feature cache) and one strategy, which does what the mode
means (strategies/). Weights load lazily, on the first call that needs them, so data problems are reported before
a model is ever loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmhead import calibration, events, metrics, strategies
from llmhead.config import ModelConfig, TrainConfig, build, for_mode, invalid, unused_by_task
from llmhead.config.usage import TRAINED
from llmhead.data import read_inputs
from llmhead.data.augment import augment
from llmhead.data.examples import Examples
from llmhead.data.labels import LabelSpace
from llmhead.features.extract import FeatureSet
from llmhead.features.extractor import FeatureExtractor
from llmhead.io import save as saving
from llmhead.model import backbone as bb
from llmhead.model.blocks import block_plan, check_distinct
from llmhead.model.headmodel import HeadModel
from llmhead.model.heads import MLPHead
from llmhead.model.loading import Loaded
from llmhead.model.pooling import pooled_width
from llmhead.progress import say, shown
from llmhead.seeding import seeded_fork
from llmhead.strategies.base import Split
from llmhead.strategies.headtrain import is_main_process
from llmhead.strategies.splits import validation_split

_THREADS = {"lock": threading.Lock(), "depth": 0, "before": None}


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """torch's intra-op CPU threads set to ``n`` inside (None: left alone). torch's count is one for the process:
    calls that overlap (nested, or from several threads) share it, the latest one's ``n`` applying, and the count
    the first of them found is put back when the last one ends."""
    if n is None:
        yield
        return
    with _THREADS["lock"]:
        if _THREADS["depth"] == 0:
            _THREADS["before"] = torch.get_num_threads()
        _THREADS["depth"] += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _THREADS["lock"]:
            _THREADS["depth"] -= 1
            if _THREADS["depth"] == 0:
                torch.set_num_threads(_THREADS["before"])


def fit_summary(mode: str, n_train: int, n_val: int, history: list[dict], seconds: float) -> str:
    """One line after a fit: what trained on how much, the best evaluation (the record marked best, else the last)
    and the time."""
    line = f"fit: mode={mode}, {n_train} training examples" + (f", {n_val} validation" if n_val else "")
    scored = [r for r in history if any(k.startswith("val_") for k in r)]
    if scored:
        best = next((r for r in reversed(scored) if r.get("best")), scored[-1])
        where = ", ".join(f"{k} {best[k]}" for k in ("epoch", "step") if k in best)
        values = ", ".join(f"{k} {v:.4f}" for k, v in best.items() if k.startswith("val_") and isinstance(v, float))
        line += f"; best{' at ' + where if where else ''}: {values}"
    return line + f"; {seconds:.1f} s"


class Classifier:
    def __init__(
        self,
        config: ModelConfig,
        source: bb.Source | None = None,
        extractor: FeatureExtractor | None = None,
        model: HeadModel | None = None,
    ):
        self.config = config
        self.strategy = strategies.for_config(config)  # the one place a mode becomes behaviour
        self.source = extractor.source if extractor else source or self._source(config)  # fails now if missing
        self.extractor = extractor or FeatureExtractor(self.source, config.trust_remote_code)
        self.labels: LabelSpace | None = None
        self.history: list[dict] = []
        self.train_config: TrainConfig | None = None
        self.run_dir: str | None = None  # where fine-tuning wrote train_log.jsonl (also after llmhead.load)
        self.truncated = 0  # training/eval texts cut at max_length in the last fit
        self.trained_on: dict = {}  # the last fit's data: sources, sizes, columns (saved; shown in the model card)
        self.metrics: dict[str, dict] = {}  # evaluate()'s results since that fit, by data source (saved; the card)
        self.expected_fingerprint: str | None = None  # a loaded save: the base weights it was trained on
        self.ladder = self.sweep = None  # the table that chose this classifier (llmhead.auto, layer_sweep)
        self.train_examples: Examples | None = None  # what the last fit read (evaluate(baseline=True) trains on it)
        self.baseline: Classifier | None = None  # the tfidf baseline evaluate(baseline=True) fitted
        self._model: HeadModel | None = model  # given: a model trained elsewhere (llmhead.from_model)
        self._loaded = Loaded(model.backbone, bb.fingerprint(model.backbone)) if model is not None else None

    def __repr__(self) -> str:
        c = self.config
        if self.labels is None:
            state = "not fitted"
        elif c.task == "regression":
            state = f"fitted, {self.labels.num_outputs} target(s)"
        else:
            names = [str(n) for n in self.labels.names]
            state = f"fitted, labels {names[:8]}" + (f" + {len(names) - 8} more" if len(names) > 8 else "")
        loaded = "weights loaded" if self.loaded else "weights not loaded yet"
        return f"Classifier(model={self.source.name!r}, mode={c.mode!r}, task={c.task!r}; {state}; {loaded})"

    # ---- the model -------------------------------------------------------------------------------------------
    def _source(self, config: ModelConfig) -> bb.Source:
        """Where the weights come from; a mode that reads none (tfidf) needs no model installed."""
        return bb.resolve(config.model) if self.strategy.reads_backbone else bb.Source(config.model, "none")

    @property
    def tokenizer(self):
        return self.extractor.tokenizer

    @property
    def model(self) -> HeadModel:
        """The head-swapping module (backbone -> pooling -> head), loading the weights if they are not yet."""
        if self._model is None and not self.strategy.reads_backbone:  # a head on texts alone (tfidf)
            with seeded_fork(self.config.seed):  # a placeholder head's init draws no number from the caller's RNG
                self._model = HeadModel(None, MLPHead(1, 1), task=self.config.task)
        if self._model is None:
            c = self.config
            keep, layers = block_plan(self.extractor.blocks(), c.layer, c.layers)
            shared, key = self.strategy.shares_weights(), (keep, c.dtype, tuple(c.speedups))  # frozen: the extractor's
            self._loaded = self.extractor.frozen(key, self.strategy.causal_lm, self._load) if shared else self._load()
            if self.expected_fingerprint and self.strategy.saved_as() != "weights":
                self._check_fingerprint()
            width = pooled_width(self._loaded.backbone.get_input_embeddings().embedding_dim, c.pooling)
            with seeded_fork(
                c.seed
            ):  # the placeholder head (and an attention query) draw from a fork, not the caller's
                self._model = HeadModel(self._loaded.backbone, MLPHead(width, 1), c.pooling, layers, c.task)
        return self._model

    def _check_fingerprint(self) -> None:
        if self._loaded.fingerprint != self.expected_fingerprint:
            raise saving.LoadError(
                f"the weights of {self.source.name!r} differ from those this classifier was trained on "
                f"(fingerprint {self._loaded.fingerprint} != {self.expected_fingerprint}): its head would predict "
                "wrongly on them. Load it with the base model it was trained on."
            )

    @property
    def fingerprint(self) -> str:
        """The identity of the pretrained base weights (SHA-256 of every value and the config)."""
        _ = self.model
        return self._loaded.fingerprint

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (they load on the first call that needs them; never for tfidf)."""
        return self._loaded is not None

    def _load(self) -> Loaded:
        keep, _ = block_plan(self.extractor.blocks(), self.config.layer, self.config.layers)  # blocks built
        backbone = self.strategy.load_backbone(self.source, keep)
        return Loaded.prepare(backbone, self.config.speedups, self.strategy.causal_lm)

    def reload_backbone(self) -> torch.nn.Module:
        """A fresh copy of the base weights as this strategy loads them (QLoRA rebuilds its 4-bit base)."""
        return self._load().backbone

    def new_head(self) -> torch.nn.Module:
        """The strategy's head for these labels, initialised from ``seed`` without touching the global RNG."""
        reads = self.strategy.reads_backbone
        width = (
            pooled_width(self.model.backbone.get_input_embeddings().embedding_dim, self.config.pooling) if reads else 0
        )
        with seeded_fork(self.config.seed):
            return self.strategy.new_head(width, len(self.model.layers or [None]), self.labels)

    def label_token_ids(self, words: list[str]) -> list[int]:
        """The first token of each label word as it would follow the prompt (after a space unless the template
        already ends in whitespace): the LM-head row that scores that label."""
        lead = "" if self.config.template[-1:].isspace() else " "
        return [self.tokenizer(lead + w, add_special_tokens=False)["input_ids"][0] for w in words]

    def trainable_parameters(self) -> int:
        return self.strategy.trainable_parameters(self.model)

    # ---- data -------------------------------------------------------------------------------------------------
    def inputs(self, texts: list[str]) -> list[str]:
        """The model's inputs: each text put into the ``template``."""
        return [self.config.template.replace("{text}", t) for t in texts]

    def embed(self, data: Any, text="text", *, batch_size: int = 32, cache: bool = True, templated=False) -> FeatureSet:
        """Frozen features of ``data``: (N, L, H) pooled vectors of the chosen layer(s) (``.values``), or token
        states for attention pooling. Examples the feature cache holds are not computed again."""
        if templated:
            texts = data
        else:
            texts = read_inputs(data, text, "test", self.config.template, self.config.pair_separator)
        model, cache = self.model, cache and not self.strategy.backbone_trained  # trained: the key would lie
        with cpu_threads(self.config.threads):
            features, truncated = self.extractor.features(
                model, self.fingerprint, texts, self.config, batch_size, cache
            )
        self.truncated += truncated
        return features

    # ---- training ---------------------------------------------------------------------------------------------
    def fit(self, train: Any, eval: Any = None, *, text="text", label="label", on_evaluate=None, **options):
        """Train. ``options`` are ``TrainConfig`` fields: epochs, batch_size, lr, run_dir, resume, ... ``train`` and
        ``eval`` are files, tables, datasets objects or ``Examples``. ``on_evaluate``: called with a copy of each
        validation record as it is made (a head epoch, a fine-tuning evaluation: step/epoch, val_loss, the
        metrics, and ``eval_seconds``, the pass's wall time), on the main process; e.g. to time a run. Refused for
        the modes that fit without validation passes (probe, tfidf, hybrid, icl): it would never be called."""
        if on_evaluate is not None and self.config.mode not in TRAINED:
            raise ValueError(
                f"on_evaluate is not used by mode={self.config.mode!r}: that mode makes no validation pass while it "
                f"fits, so the callback would never be called; modes that do: {', '.join(TRAINED)}"
            )
        with cpu_threads(self.config.threads), shown(options.get("progress", True) is not False):
            with events.listening(on_evaluate):
                return self._fit(train, eval, text, label, options)

    def _fit(self, train: Any, eval: Any, text, label, options: dict) -> Classifier:
        c, began = self.config, time.perf_counter()
        cfg = for_mode(build(TrainConfig, options), c.mode)
        calibrate = calibration.resolve(c.task, cfg.calibrate) if self.strategy.calibrates else "none"
        # Everything about the data (and any hub metric) is checked before any weights load.
        extra_metrics = {name: metrics.load_hub_metric(name) for name in cfg.metrics}
        examples = Examples.read(train, text, label, c.task, c.pair_separator, "train")
        if eval is None and type(train).__name__ == "DatasetDict":
            eval = train if any(s in train for s in ("validation", "valid", "dev", "eval")) else None
        problems = unused_by_task(cfg, c.task, eval is not None)
        if c.pair_separator != ModelConfig.pair_separator and not isinstance(text, (list, tuple)):
            problems.append(f"pair_separator={c.pair_separator!r} joins a text pair; text={text!r} is one column")
        if problems:
            raise invalid(problems)
        if self.strategy.reads_backbone:
            check_distinct(self.extractor.blocks(), c.layers)  # from the model's config.json: no weights load
        labels = LabelSpace.learn(c.task, examples.raw, c.labels, label, origin=examples.origin)
        y_train = labels.encode(examples.raw, examples.origin)
        texts, val_texts, y_val = examples.texts, [], None
        if eval is not None:
            held = Examples.read(eval, text, label, c.task, c.pair_separator, "eval")
            val_texts, y_val = held.texts, labels.encode(held.raw, held.origin)
        elif self.strategy.validates:
            texts, val_texts, y_train, y_val = validation_split(texts, y_train, cfg.val_fraction, c)
        self.labels, self.train_config, self.truncated, self.run_dir = labels, cfg, 0, cfg.run_dir
        self.metrics, self.trained_on = (
            {},
            {
                "train": examples.origin,
                "train_rows": len(examples),  # as read; train_examples after the validation split, before augmentation
                "train_examples": len(texts),
                "eval": held.origin if eval is not None else f"{len(val_texts)} rows of train" if val_texts else None,
                "eval_examples": len(val_texts),
                "text": list(text) if isinstance(text, (list, tuple)) else text,
                "label": list(label) if isinstance(label, (list, tuple)) else label,
            },
        )
        self.train_examples, self.baseline = examples, None
        self.extractor.progress = cfg.progress
        if cfg.feature_cache:
            self.extractor.cache.folder = Path(cfg.feature_cache)
        if self.strategy.backbone_trained:  # a second fit starts again from the pretrained weights
            self._model = None
            self.strategy.forget_training()
        n_train = len(texts)  # the summary counts examples, not their augmented copies
        # Augmentation happens after the validation split, on training texts only.
        texts, y_train = augment(texts, y_train, cfg.augment, cfg.augment_ops, cfg.augment_p, c.seed)
        train_split = Split(self.inputs(texts), y_train)
        val_split = Split(self.inputs(val_texts), y_val)
        self.history = self.strategy.fit(self, train_split, val_split, cfg, extra_metrics)
        self.model.eval()
        if calibrate != "none" and val_texts:
            self._calibrate(calibrate, val_split, cfg)
        summary = fit_summary(c.mode, n_train, len(val_texts), self.history, time.perf_counter() - began)
        summary += calibration.describe(self.calibration)
        say(summary, cfg.progress and is_main_process())  # once, not once per rank
        return self

    def _calibrate(self, method: str, val: Split, cfg: TrainConfig) -> None:
        """Fit the probabilities' calibration on the validation split (its features are cached in frozen modes);
        multilabel thresholds are tuned again on the calibrated probabilities that decisions compare them with."""
        if calibration.too_few(len(val.texts)):  # said in the record, without another pass over the split
            self.labels.calibration = calibration.too_few(len(val.texts))
            return
        truncated = self.truncated  # these texts were counted when the strategy read them
        out = self.logits(val.texts, batch_size=cfg.batch_size, templated=True, cache=True)
        self.truncated = truncated
        self.labels.calibration = calibration.fit(method, out, val.targets)
        if self.labels.task == "multilabel" and cfg.tune_thresholds and self.labels.calibrated:
            self.labels.tune_thresholds(self.labels.probabilities(out), val.targets.numpy())

    @property
    def calibration(self) -> dict | None:
        """The fitted calibration (method, parameters, validation ECE and NLL before and after), or None."""
        return self.labels.calibration if self.labels is not None else None

    # ---- inference --------------------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.labels is None:
            raise RuntimeError("this classifier has no trained head yet: call fit() first, or llmhead.load(dir)")

    @torch.no_grad()
    def logits(self, data: Any, text="text", batch_size: int = 32, templated=False, cache=False) -> torch.Tensor:
        """(N, num_outputs) float32 head outputs, in input order. ``cache=True`` keeps the examples' features for
        later calls (cross-validation does)."""
        self._require_fitted()
        texts = data if templated else read_inputs(data, text, "test", self.config.template, self.config.pair_separator)
        if not texts:  # nothing to predict: no weights need loading
            return torch.zeros(0, self.labels.num_outputs)
        with cpu_threads(self.config.threads):
            return self.strategy.logits(self, texts, batch_size, cache)

    def predict(self, data: Any, text="text", batch_size: int = 32) -> list:
        """Label names (classification), lists of names (multilabel) or floats (regression)."""
        self._require_fitted()
        return self.labels.decode(self.logits(data, text, batch_size))

    def predict_proba(self, data: Any, text="text", batch_size: int = 32) -> np.ndarray:
        """(N, C) probabilities: softmax (classification) or per-label sigmoid (multilabel), calibrated on the
        validation split when fit did (``clf.calibration``: temperature or per-label Platt scaling)."""
        self._require_fitted()
        return self.labels.probabilities(self.logits(data, text, batch_size))

    def evaluate(
        self,
        data: Any,
        text="text",
        label="label",
        batch_size: int = 32,
        cache: bool = False,
        report=None,
        baseline=False,
    ) -> dict:
        """Metrics: accuracy, macro_f1, per_class | micro/macro F1 | mse, mae, r2, pearson, spearman; for
        probabilities, ece and brier (and ece_uncalibrated, brier_uncalibrated when calibrated). ``report=DIR``
        also writes metrics.json, figures and a self-contained report.html there (needs ``llmhead[report]``).
        ``baseline=True``: also those of TF-IDF + a linear model (mode='tfidf') trained on this classifier's
        training data (``result["baseline"]``), and by how much the model beats it (``result["over_baseline"]``);
        ``baseline=<a fitted classifier>`` compares with that one instead."""
        self._require_fitted()
        if not isinstance(baseline, (bool, Classifier)):
            raise TypeError(f"baseline must be True, False or a fitted Classifier, got {type(baseline).__name__}")
        if report is not None:
            from llmhead import report as reporting

            reporting.require()  # a missing matplotlib is said before any data is read or any forward pass
            reporting.check_folder(report)  # and a folder the report would damage
        held = Examples.read(data, text, label, self.config.task, self.config.pair_separator, "test")
        targets = self.labels.encode(held.raw, held.origin)  # unseen labels fail here, before any forward pass
        if baseline is True and self.baseline is None:
            if self.train_examples is None:
                raise ValueError(
                    "evaluate(baseline=True) trains the baseline on this classifier's training data, which a loaded "
                    "classifier does not have: pass baseline=<a fitted classifier>, e.g. a mode='tfidf' one"
                )
            from llmhead.selection.baseline import baseline_options

            tfidf = Classifier(build(ModelConfig, baseline_options(self.config)))  # no weights: seconds
            self.baseline = tfidf.fit(self.train_examples, progress=False)
        out = self.logits(self.inputs(held.texts), batch_size=batch_size, templated=True, cache=cache)
        result = {"n": len(held), **self.score_logits(out, targets, held.raw)}
        result.update(metrics.calibration(self.labels, out, targets))
        if baseline is not False:
            from llmhead.selection.baseline import beside

            other = self.baseline if baseline is True else baseline
            result["baseline"] = {"mode": other.config.mode, **other.evaluate(held, text=text, label=label)}
            result["over_baseline"] = beside(result, result["baseline"], self.config.task)
        self.metrics[held.origin] = result  # saved with the model, shown in its card
        if report is not None:
            reporting.write(report, reporting.Evaluation.of(self, held.texts, held.raw, out, targets, result))
        return result

    def score_logits(self, out: torch.Tensor, targets: torch.Tensor, raw: list) -> dict:
        """Metrics of head outputs against encoded ``targets`` (and the raw values, for regression)."""
        return metrics.of_task(self.labels, out, targets, raw)

    # ---- persistence ------------------------------------------------------------------------------------------
    def save(self, folder) -> Path:
        """Write JSON + safetensors + tokenizer. A frozen backbone is referenced (and checked by fingerprint when
        loaded); LoRA adapters or fine-tuned weights are written in full."""
        self._require_fitted()
        model, kind = self.model, self.strategy.saved_as()
        manifest = {
            # threads: the machine's business, not the model's (a save from a laptop must not pin a server's)
            "model": {**dataclasses.asdict(self.config), "peft_config": None, "threads": None},
            "labels": self.labels.to_json(),
            "backbone": {
                "source": self.source.name,
                "kind": self.source.kind,
                "fingerprint": self.fingerprint if kind not in ("weights", "none") else None,
                "saved_as": kind,
                "source_blocks": self.extractor.blocks() if kind != "none" else None,
            },
            "tokenizer": {"pad_token_added": self.extractor.pad_note},
            "train": saving.jsonable(dataclasses.asdict(self.train_config)) if self.train_config else None,
            "history": self.history,
            "data": saving.jsonable(self.trained_on),
            "metrics": saving.jsonable(self.metrics),
            "strategy": self.strategy.state(),
            "versions": saving.versions(),
        }
        head_state = model.head.state_dict()

        def write(tmp: Path) -> None:
            saving.save_head(tmp, head_state)
            manifest["backbone"].update(self.strategy.write_backbone(model, tmp) or {})
            if kind != "none":
                self.tokenizer.save_pretrained(tmp / saving.TOKENIZER)

        return saving.write_save(folder, write, manifest, card=True)

    def export(self, folder, format: str = "transformers") -> Path:
        """A plain transformers ``*ForSequenceClassification`` folder (LoRA merged; linear, bias-free heads on
        last-token pooling; a clear error for other heads)."""
        if format != "transformers":
            raise ValueError(f"format must be 'transformers', got {format!r}")
        self._require_fitted()
        if not self.strategy.reads_backbone:
            raise ValueError(f"mode={self.config.mode!r} has no LLM to export: keep it with clf.save(folder)")
        from llmhead.io.export import export_transformers

        def write(tmp: Path) -> None:
            export_transformers(self, tmp)

        return saving.write_atomically(folder, write, marker="config.json", kind="transformers export")

    def merge(self) -> Classifier:
        """Fold LoRA adapters into the backbone weights (then saved in full). Nothing to do in other modes."""
        self._require_fitted()
        self.strategy.merge(self.model)
        return self

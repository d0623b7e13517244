"""Classifiers from files: a save of ``Classifier.save`` (``llmhead.load``), or a ``HeadModel`` trained in the
user's own loop (``llmhead.from_model``)."""

from __future__ import annotations

from pathlib import Path

from llmhead.classifier import Classifier
from llmhead.config import ModelConfig, TrainConfig, build, upgrade, used_options
from llmhead.data.labels import LabelSpace
from llmhead.features.extractor import FeatureExtractor
from llmhead.io import save as saving
from llmhead.model import backbone as bb
from llmhead.model.headmodel import HeadModel
from llmhead.model.heads import MLPHead


def load(folder, trust_remote_code: bool = False) -> Classifier:
    """A classifier saved with ``clf.save(folder)``; predictions are identical to the saved one's. Every file is
    checked against the digest the save recorded. ``trust_remote_code`` comes only from this argument, never from
    the saved files."""
    folder = Path(folder).expanduser()
    saved = saving.read_classifier(folder, trust_remote_code)
    try:  # options a mode never reads are refused now; saves from before that may carry them
        options = upgrade(ModelConfig, saved.model)  # saved under earlier names
        config = ModelConfig(**used_options(ModelConfig, options, options.get("mode")))
    except (TypeError, ValueError) as exc:
        raise saving.LoadError(f"{folder / saving.MANIFEST}: not a manifest this version can load ({exc!r})") from exc
    own = saved.saved_as in ("weights", "none")  # the weights are in the save, or there are none (tfidf)
    source = bb.Source(saved.source, saved.source_kind) if own else bb.resolve(config.model)
    extractor = FeatureExtractor(source, trust_remote_code, None, saved.tokenizer_dir)
    extractor.pad_note, extractor.source_blocks = saved.pad_note, saved.source_blocks
    clf = Classifier(config, extractor=extractor)
    clf.labels, clf.history, clf.expected_fingerprint = saved.labels, saved.history, saved.fingerprint
    clf.run_dir = saved.run_dir
    _restore_record(clf, saved.record)
    clf.strategy.restore({**(saved.strategy or {}), "saved_as": saved.saved_as}, folder)
    if saved.saved_as != "none":
        _ = clf.tokenizer  # now, while the checked files are the ones on disk (it would otherwise load on first use)
    clf.strategy.load_backbone_parts(clf, folder, saved.backbone)
    head = clf.new_head()
    saving.load_into(folder / saving.HEAD, lambda: head.load_state_dict(saved.head_state, strict=True))
    clf.model.head = head.eval()
    return clf


def _restore_record(clf: Classifier, record: dict) -> None:
    """What the last fit and evaluations recorded, so that a re-save keeps them in the manifest and the card. They
    describe the model and never change what it predicts: a record this version cannot read is dropped."""
    clf.trained_on = record.get("data") if isinstance(record.get("data"), dict) else {}
    metrics = record.get("metrics")
    clf.metrics = {k: v for k, v in metrics.items() if isinstance(v, dict)} if isinstance(metrics, dict) else {}
    try:
        clf.train_config = build(TrainConfig, upgrade(TrainConfig, record["train"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        clf.train_config = None


def from_model(model: HeadModel, tokenizer, labels: list | None = None, template: str = "{text}") -> Classifier:
    """A classifier around a ``HeadModel`` trained in your own loop (Trainer, Accelerate, FSDP): ``predict``,
    ``evaluate``, ``save`` (its backbone is saved in full, as after full fine-tuning) and ``llmhead.load``.
    ``labels``: the class names in output order (classification, multilabel); targets' names for regression."""
    if not isinstance(model, HeadModel) or not isinstance(model.head, MLPHead):
        raise TypeError(f"model must be an llmhead.HeadModel with an MLP head, got {type(model).__name__}")
    head = model.head.config()
    outputs = head["out_dim"]
    names = list(labels) if labels is not None else [f"label_{i}" for i in range(outputs)]
    if len(names) != outputs:
        raise ValueError(f"labels has {len(names)} names but the head has {outputs} outputs")
    backbone = model.backbone.get_base_model() if hasattr(model.backbone, "get_base_model") else model.backbone
    name = getattr(backbone.config, "name_or_path", "") or "a HeadModel"
    config = ModelConfig(
        model=name,
        task=model.task,
        labels=names if model.task != "regression" else None,
        mode="full",
        freeze_blocks=0,  # trained in the caller's loop: any weight may have changed, and the backbone is saved whole
        pooling=model.pooling,
        layers=model.layers,
        layer_mix=head["layer_mix"],
        head_hidden=head["hidden"],
        activation=head["activation"] if head["hidden"] else "gelu",
        dropout=head["dropout"],
        input_norm=head["input_norm"],
        head_bias=head["bias"],
        template=template,
        dtype="float32",
        speedups=[],  # the model as it was trained: plain transformers modules, so a reload predicts the same bits
    )
    if hasattr(model.backbone, "merge_and_unload"):  # peft: save and predict with the merged weights
        import copy

        model = HeadModel(copy.deepcopy(model.backbone).merge_and_unload(), model.head, model.pooling, model.layers)
        model.task = config.task
    extractor = FeatureExtractor(bb.Source(name, "pretrained"), tokenizer=tokenizer)
    extractor.source_blocks = backbone.config.num_hidden_layers
    clf = Classifier(config, extractor=extractor, model=model.eval())
    clf.strategy.backbone_trained = True  # its weights are its own: saved in full, never cached as pretrained
    clf.labels = (
        LabelSpace(config.task, names, [0.0] * outputs, [1.0] * outputs)
        if config.task == "regression"
        else (LabelSpace(config.task, names))
    )
    return clf

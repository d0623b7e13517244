"""The model card: the README.md every save writes into the model folder, in the Hugging Face format (YAML front
matter, then Markdown), made from the save's manifest alone, so ``llmhead info`` and the card say the same.

The front matter is huggingface_hub's ``ModelCardData`` (``library_name``, ``pipeline_tag``, ``base_model``,
``tags``) with the measured metrics as ``EvalResult`` entries, which the hub turns into its ``model-index``.
Regression is ``text-classification`` too: the hub has no text-regression task, and transformers serves a
one-output sequence classifier through that pipeline.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from llmhead.config import MODEL_FIELD_MODES, TRAIN_FIELD_MODES, modes_using
from llmhead.model.assets import PACKAGED_MODELS

MODE_TEXT = {
    "head": "an MLP head on frozen pooled features of the base model",
    "lora": "LoRA adapters on the base model and an MLP head",
    "qlora": "LoRA adapters on the 4-bit (NF4) base model and an MLP head",
    "full": "the base model's weights (those not frozen) and an MLP head",
    "probe": "a scikit-learn linear model on frozen pooled features",
    "icl": "in-context learning: labelled examples in the prompt, no weights trained",
    "lmhead": "a head started from the LM head's rows of the label words, on frozen features",
}
TASK_TEXT = {
    "classification": "classifies each text into one of {n} labels",
    "multilabel": "gives each text any number of {n} labels",
    "regression": "predicts {n} number(s) for each text",
}
# (hub metric type, display name, args) for the metrics llmhead computes; the hub's ids, as `evaluate` names them
HUB_METRICS = {
    "accuracy": ("accuracy", "Accuracy", None),
    "macro_f1": ("f1", "Macro F1", {"average": "macro"}),
    "micro_f1": ("f1", "Micro F1", {"average": "micro"}),
    "subset_accuracy": ("accuracy", "Subset accuracy", None),
    "hamming_loss": ("hamming_loss", "Hamming loss", None),
    "mse": ("mse", "MSE", None),
    "mae": ("mae", "MAE", None),
    "r2": ("r_squared", "R²", None),
    "pearson": ("pearsonr", "Pearson r", None),
    "spearman": ("spearmanr", "Spearman ρ", None),
    "ece": ("ece", "Expected calibration error", None),
    "brier": ("brier_score", "Brier score", None),
    "ece_uncalibrated": ("ece", "ECE before calibration", None),
    "brier_uncalibrated": ("brier_score", "Brier score before calibration", None),
}
PIPELINE_TAG = "text-classification"


def base_model(backbone: dict) -> str | None:
    """The hub id of the base model, where there is one: an alias's source, or a hub id (not a local path)."""
    source, kind = backbone.get("source"), backbone.get("kind")
    if kind == "alias" and source in PACKAGED_MODELS:
        return PACKAGED_MODELS[source].hub_id
    if kind == "pretrained" and isinstance(source, str) and source.count("/") == 1:
        if not source.startswith((".", "/", "~")) and not Path(source).exists():
            return source
    return None


def shown(origin: str) -> str:
    """A data source as the card names it: a file by its name (a card is meant to be shared; local folders are
    not its business), anything else as llmhead described it."""
    return Path(origin).name if Path(origin).suffix.lower() in SUFFIXES else origin


SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def settings(manifest: dict) -> dict:
    """The model and train options the model's mode reads (the others never acted), as a recipe config."""
    model, mode = manifest["model"], manifest["model"]["mode"]
    out = {"model": {"model": manifest["backbone"]["source"]}}
    out["model"].update({k: v for k, v in model.items() if k != "model" and mode in modes_using(MODEL_FIELD_MODES, k)})
    train = manifest.get("train") or {}
    if train:
        out["train"] = {k: v for k, v in train.items() if mode in modes_using(TRAIN_FIELD_MODES, k)}
    return out


def scalar_metrics(result: dict) -> dict[str, float]:
    return {k: v for k, v in result.items() if isinstance(v, float) and not isinstance(v, bool)}


def front_matter(manifest: dict, name: str) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    model, task = manifest["model"], manifest["labels"]["task"]
    results = []
    for data, result in (manifest.get("metrics") or {}).items():
        for key, value in scalar_metrics(result).items():
            if not math.isfinite(value):  # the hub's model-index takes numbers; NaN shows in the text only
                continue
            kind, title, args = HUB_METRICS.get(key, (key, key, None))
            results.append(
                EvalResult(
                    task_type=PIPELINE_TAG,
                    dataset_type=shown(data),
                    dataset_name=shown(data),
                    metric_type=kind,
                    metric_value=round(value, 4),
                    metric_name=title,
                    metric_args=args,
                )
            )
    data = ModelCardData(
        library_name="llmhead",
        pipeline_tag=PIPELINE_TAG,
        base_model=base_model(manifest["backbone"]),
        tags=["llmhead", PIPELINE_TAG, task, model["mode"]],
        model_name=name if results else None,
        eval_results=results or None,
    )
    return data.to_yaml()


def _table(rows: list[tuple[str, str]], head: tuple[str, str]) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows])


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _calibration(record) -> str:
    """What was done to the probabilities (the record calibration.py saves with the labels)."""
    if not isinstance(record, dict) or not record.get("method"):
        return ""
    if record["method"] == "none":
        return f"\nProbabilities are not calibrated: {record.get('reason', 'none fitted')}."
    how = (
        f"temperature scaling (T = {record['temperature']:.3f})"
        if record["method"] == "temperature"
        else "Platt scaling per label"
    )
    before, after = record.get("val_ece_before"), record.get("val_ece_after")
    ece = (
        f": validation ECE {before:.4f} -> {after:.4f}"
        if isinstance(before, float) and isinstance(after, float)
        else ""
    )
    return f"\nProbabilities are calibrated by {how}, fitted on the validation split{ece}."


def render(manifest: dict, name: str) -> str:
    """The card's text: front matter, then what the model is, its labels, data, settings, metrics and how to use it."""
    labels, task = manifest["labels"], manifest["labels"]["task"]
    parts = [
        *_intro(manifest, name),
        *_labels(labels),
        _calibration(labels.get("calibration")),
        *_data(manifest.get("data") or {}),
        *_settings(manifest),
        *_metrics(manifest.get("metrics") or {}),
        _use(name, task),
    ]
    versions = manifest.get("versions") or {}
    if versions:
        parts.append("\nSaved with " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    parts.append(
        "\nThis card is written by each save and rewritten by the next, unless you edit it: an edited card is kept. "
        "It is not part of the sealed files, so editing it never stops the model from loading."
    )
    return "\n".join(parts) + "\n"


def _intro(manifest: dict, name: str) -> list[str]:
    model, labels, backbone = manifest["model"], manifest["labels"], manifest["backbone"]
    task, mode, names = labels["task"], model["mode"], labels["names"]
    base = base_model(backbone)
    where = f"[`{base}`](https://huggingface.co/{base})" if base else f"`{backbone['source']}`"
    packaged = PACKAGED_MODELS.get(backbone["source"]) if backbone.get("kind") == "alias" else None
    alias = f" (llmhead's packaged `{backbone['source']}`, the GGUF `{packaged.file}`)" if packaged else ""
    parts = [
        f"---\n{front_matter(manifest, name)}\n---\n",
        f"# {name}\n",
        f"A text model that {TASK_TEXT[task].format(n=len(names))}, built with llmhead on {where}{alias}: "
        f"mode `{mode}`, {MODE_TEXT.get(mode, mode)}.",
    ]
    if backbone.get("saved_as") == "weights":
        parts.append("This folder holds its own backbone weights, so it loads without the base model.")
    else:
        parts.append(
            f"This folder holds what was trained; the base weights are loaded from `{backbone['source']}` and checked "
            "against the fingerprint recorded at training time."
        )
    return parts


def _labels(labels: dict) -> list[str]:
    listed = ", ".join(f"`{n}`" for n in labels["names"])
    if labels["task"] == "regression":
        return ["\n## Labels\n", "Targets (predictions are in the units of the training data): " + listed]
    thresholds = labels.get("thresholds")
    per_label = f" Decision thresholds (per label): {thresholds}." if thresholds else ""
    return ["\n## Labels\n", "In the order of the probability columns: " + listed + "." + per_label]


def _data(data: dict) -> list[str]:
    if not data:
        return ["\n## Data\n", "Not recorded (the model was not trained by `fit`, or was saved by an older llmhead)."]
    held_out = data.get("train_rows", 0) - data.get("train_examples", 0)
    rows = [("training", f"{shown(data.get('train'))}: {_number(data.get('train_examples'))} examples")]
    if held_out > 0:
        rows[0] = ("training", rows[0][1] + f" ({_number(held_out)} more held out for validation)")
    elif data.get("eval"):
        rows.append(("validation", f"{shown(data['eval'])}: {_number(data.get('eval_examples'))} examples"))
    rows.append(("text column", f"`{data.get('text')}`"))
    rows.append(("label column", f"`{data.get('label')}`"))
    return ["\n## Data\n", _table(rows, ("", ""))]


def _settings(manifest: dict) -> list[str]:
    used = yaml.safe_dump(settings(manifest), sort_keys=False, allow_unicode=True, width=100)
    parts = [
        "\n## Training settings\n",
        "The options that act in this mode, as a config for `llmhead train`:\n",
        "```yaml\n" + used.rstrip() + "\n```",
    ]
    history = manifest.get("history") or []
    losses = [h["val_loss"] for h in history if isinstance(h.get("val_loss"), float)]
    if history:
        best = f", best validation loss {min(losses):.4f}" if losses else ""
        parts.append(f"\n{len(history)} evaluation(s) during training{best}.")
    return parts


def _metrics(measured: dict) -> list[str]:
    if not measured:
        return [
            "\n## Metrics\n",
            "None measured yet: `clf.evaluate(test)` (or `llmhead evaluate`) and save again to record them.",
        ]
    parts = ["\n## Metrics\n"]
    for source, result in measured.items():
        rows = [(HUB_METRICS.get(k, (k, k))[1], f"{v:.4f}") for k, v in scalar_metrics(result).items()]
        n = f" ({result['n']:,} examples)" if isinstance(result.get("n"), int) else ""
        parts.append(f"On `{shown(source)}`{n}:\n\n" + _table(rows, ("metric", "value")) + "\n")
    return parts


def _use(name: str, task: str) -> str:
    proba = (
        "" if task == "regression" else '\nprint(clf.predict_proba(["a text to score"]))  # columns: the labels above'
    )
    return (
        "\n## Use\n\n```python\nimport llmhead\n\n"
        f"clf = llmhead.load({name!r})  # every file is checked against the digests in llmhead.json\n"
        f'print(clf.predict(["a text to score"])){proba}\n```\n\n'
        "From the command line (a CSV, TSV, JSONL or Parquet file; every column is kept and a prediction added):\n\n"
        f"```bash\nllmhead predict {name} texts.csv --out scored.csv{'' if task == 'regression' else ' --proba'}\n"
        f"llmhead info {name}\n```"
    )

"""``llmhead info``: what a saved model is (base, mode, task, labels, blocks read, data, metrics, size), read from its
manifest and file headers alone: no weights load and torch is not imported, so it answers at once."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from llmhead.io.layout import HEAD, MANIFEST


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a save, parsed (its seal is checked when the model loads); an error names the file."""
    folder = Path(folder).expanduser()
    path = folder / MANIFEST
    if not path.is_file():
        why = " (the folder does not exist)" if not folder.exists() else ""
        raise FileNotFoundError(f"{folder} is not a saved llmhead model: {MANIFEST} is missing{why}")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable manifest ({exc}); the file is damaged") from None
    required = ("model", "labels", "backbone")
    if not isinstance(manifest, dict) or not all(isinstance(manifest.get(k), dict) for k in required):
        raise ValueError(f"{path}: not an llmhead manifest (it lacks the objects {', '.join(required)})")
    return manifest


def safetensors_parameters(path: Path) -> int | None:
    """The number of values in a safetensors file, from its JSON header (the tensors are not read)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, entry in header.items():
        if name != "__metadata__":
            count = 1
            for dim in entry.get("shape", []):
                count *= dim
            total += count
    return total


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def describe(folder: str | Path) -> dict:
    from llmhead.io.card import base_model, scalar_metrics

    folder = Path(folder).expanduser()
    m = read_manifest(folder)
    model, labels, backbone = m["model"], m["labels"], m["backbone"]
    data = m.get("data") or {}
    return {
        "folder": str(folder),
        "base": backbone.get("source"),
        "base_model": base_model(backbone),
        "backbone": "saved in this folder" if backbone.get("saved_as") == "weights" else "referenced (not in folder)",
        "mode": model.get("mode"),
        "task": labels.get("task"),
        "labels": labels.get("names"),
        "template": model.get("template"),
        "pooling": model.get("pooling"),
        "layer": model.get("layers") or model.get("layer"),  # None: the last block
        "reads": _reads(model, backbone),
        "trains": _trains(model, backbone),
        "text_column": data.get("text"),
        "train_examples": data.get("train_examples"),
        "eval_examples": data.get("eval_examples"),
        "metrics": {k: scalar_metrics(v) for k, v in (m.get("metrics") or {}).items() if isinstance(v, dict)},
        "best_val_loss": min(
            (h["val_loss"] for h in m.get("history") or [] if isinstance(h.get("val_loss"), float)), default=None
        ),
        "head_parameters": safetensors_parameters(folder / HEAD),
        "size_bytes": folder_size(folder),
        "saved_with": m.get("versions"),
    }


def _reads(model: dict, backbone: dict) -> str | None:
    """The blocks the head reads ("block 23 of 30"), where the manifest knows the base model's depth."""
    from llmhead.model.blocks import describe_blocks

    total = backbone.get("source_blocks")
    if not isinstance(total, int):  # no backbone (tfidf), or an older manifest
        return None
    try:
        return describe_blocks(total, model.get("layer"), model.get("layers"))
    except (TypeError, ValueError):  # a hand-edited manifest: info shows what it holds, loading says what is wrong
        return None


def _trains(model: dict, backbone: dict) -> str | None:
    """The blocks fine-tuning trained ("blocks 16-30 of 30 (the embeddings and blocks 1-15 frozen)"); None for a
    frozen backbone, a peft_config of the caller's own, or an older manifest."""
    from llmhead.config.checks import is_number
    from llmhead.config.usage import FINE_TUNING
    from llmhead.model.blocks import describe_training

    total, freeze, mode = backbone.get("source_blocks"), model.get("freeze_blocks"), model.get("mode")
    if mode not in FINE_TUNING or not isinstance(total, int) or not is_number(freeze):
        return None
    try:
        return describe_training(total, freeze, mode)
    except ValueError:  # a hand-edited manifest: loading says what is wrong
        return None


def format_info(info: dict) -> str:
    width = max(len(k) for k in info)
    lines = []
    for key, value in info.items():
        if key == "size_bytes":
            key, value = "size", f"{value / 1e6:.1f} MB on disk"
        elif key == "head_parameters" and isinstance(value, int):
            value = f"{value:,}"
        elif isinstance(value, (dict, list)) or (isinstance(value, str) and not value.isprintable()):
            value = json.dumps(value, ensure_ascii=False)
        lines.append(f"{key:>{width}}: {value}")
    return "\n".join(lines)

"""Write and read a saved classifier: JSON and safetensors only, never pickle.

A save is written to a temporary sibling folder and swapped in only when complete, so an
interrupted save never damages what was there before.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MANIFEST = "llmhead.json"
HEAD = "head.safetensors"
ADAPTER = "adapter.safetensors"
BACKBONE = "backbone"  # a transformers folder of fine-tuned (or merged) weights
TOKENIZER = "tokenizer"
FORMAT = 1


def write_atomically(target: str | os.PathLike, write: Callable[[Path], None], marker: str = MANIFEST) -> Path:
    """Call ``write(tmp_dir)``, then put ``tmp_dir`` in place of ``target``. An existing non-empty
    ``target`` is replaced only when it holds ``marker`` (it is a previous save of the same kind)."""
    target = Path(target).expanduser().absolute()
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a folder; choose another path")
        if any(target.iterdir()) and not (target / marker).is_file():
            raise FileExistsError(
                f"{target} is a non-empty folder that is not a saved llmhead model (no {marker}); refusing to "
                "replace it. Choose a new or empty folder."
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "x")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def check_finite(state: dict[str, torch.Tensor]) -> None:
    bad = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise FloatingPointError(f"refusing to save non-finite weights in {bad[:10]}")


def save_tensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    check_finite(state)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def save_head(folder: Path, state: dict[str, torch.Tensor]) -> None:
    save_tensors(folder / HEAD, state)


def save_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, **manifest}, indent=2, allow_nan=True))


def read(folder: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], Path]:
    folder = Path(folder).expanduser()
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"{folder} is not a saved llmhead model: {MANIFEST} is missing")
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder / MANIFEST}: format {manifest.get('format')!r} is not supported (expected {FORMAT})")
    return manifest, load_file(folder / HEAD), folder / TOKENIZER

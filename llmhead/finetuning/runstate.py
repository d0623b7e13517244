"""Training checkpoints as safetensors + JSON only, and the identity of a run.

accelerate's ``save_state`` pickles the RNG states and every registered object, and ``load_state`` unpickles
them (``weights_only=False``): a planted file in a checkpoint folder would run its code on resume. Here each
piece is written as tensors (safetensors) plus plain values (JSON), and read back with the readers of those two
formats only:

- ``trainable.safetensors``: what training changes (adapters, unfrozen weights, the head);
- ``optimizer.safetensors`` + ``optimizer.json``: the optimizer's per-parameter tensors, and its groups;
- ``scheduler.json``: the learning-rate scheduler's counters;
- ``rng-rank<R>.safetensors`` + ``rng-rank<R>.json``: every process's torch, CUDA, numpy and Python RNG states;
- ``trainer_state.json``: our counters and the run's identity (written last: a checkpoint without it is
  incomplete and never read).

A run's identity is a digest of its training and validation examples (token ids and targets) and its
configuration. Resume refuses a run directory whose identity differs and says what differs.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from llmhead.config import ModelConfig, upgrade
from llmhead.io.save import file_digest, folder_digests
from llmhead.io.save import load_tensors as read_tensors
from llmhead.io.save import sync_tree as sync  # noqa: F401  (flush a checkpoint before it is renamed in)

TRAINABLE = "trainable.safetensors"
OPTIMIZER = "optimizer"
SCHEDULER = "scheduler.json"
SCALER = "scaler.json"  # fp16 only
TRAINER_STATE = "trainer_state.json"
BEST = "best.safetensors"

# TrainConfig fields that do not change what is trained: they may differ between a run and its resume.
NOT_IDENTITY = (
    "resume",
    "progress",
    "trackers",
    "keep_checkpoints",
    "checkpoint_every",
    "run_dir",
    "feature_cache",
    "handle_sigterm",  # how a run may be stopped, not what it trains
    "max_pass_tokens",  # its resolved value is ("tokens per pass", finetuning/loop.py): "auto" differs per machine
)


class ResumeError(ValueError):
    """A run directory cannot be resumed as asked; the message says why and what to do."""


class DamagedCheckpoint(ResumeError):
    """A checkpoint's file is missing or its bytes differ from those recorded: an earlier checkpoint may do."""


# ---- writing and reading the pieces ------------------------------------------------------------
def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def save_optimizer(folder: Path, state: dict) -> None:
    """``optimizer.state_dict()``: tensors by ``<param index>.<key>``, everything else as JSON."""
    tensors, plain = {}, {}
    for index, values in state["state"].items():
        plain[str(index)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value
                plain[str(index)][key] = None  # a tensor, in the safetensors file
            else:
                plain[str(index)][key] = value
    _save(tensors, folder / f"{OPTIMIZER}.safetensors")
    (folder / f"{OPTIMIZER}.json").write_text(json.dumps({"state": plain, "param_groups": state["param_groups"]}))


def load_optimizer(folder: Path) -> dict:
    meta = read_json(folder / f"{OPTIMIZER}.json")
    tensors = read_tensors(folder / f"{OPTIMIZER}.safetensors")
    state = {
        int(index): {key: tensors[f"{index}.{key}"] if value is None else value for key, value in values.items()}
        for index, values in meta["state"].items()
    }
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_rng(folder: Path, rank: int) -> None:
    """This process's RNG states: torch (CPU and every CUDA device), numpy and Python's ``random``."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    plain = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": [version, list(internal), gauss_next]}
    _save(tensors, folder / f"rng-rank{rank}.safetensors")
    (folder / f"rng-rank{rank}.json").write_text(json.dumps(plain))


def load_rng(folder: Path, rank: int) -> None:
    tensors = read_tensors(folder / f"rng-rank{rank}.safetensors")
    plain = read_json(folder / f"rng-rank{rank}.json")
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = plain["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor] | None) -> None:
    if tensors is not None:
        _save(tensors, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor] | None:
    return read_tensors(path) if path.is_file() else None


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of a checkpoint (recorded in its trainer_state.json, checked on resume)."""
    return {k: v for k, v in folder_digests(folder).items() if k != TRAINER_STATE}


def check_files(folder: Path, recorded: dict | None) -> None:
    if recorded is None:
        raise ResumeError(f"{folder / TRAINER_STATE}: no file digests (an older llmhead wrote it): use a new run_dir")
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file() or file_digest(path) != expected:
            what = "missing" if not path.is_file() else "damaged (its SHA-256 differs from the one recorded)"
            raise DamagedCheckpoint(f"{path}: {what}; this checkpoint cannot be resumed exactly")


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResumeError(f"{path}: this checkpoint file cannot be read ({exc}); the checkpoint is damaged") from exc


# ---- the identity of a run ---------------------------------------------------------------------
def examples_digest(ids: list[list[int]], targets: torch.Tensor) -> dict:
    """How many examples, and digests of their token ids and of their targets, separately: a refusal can
    then say whether the texts or the labels changed."""
    texts = hashlib.sha256()
    for row in ids:
        texts.update(np.asarray(row, dtype=np.int64).tobytes())
        texts.update(b"|")
    labels = hashlib.sha256(targets.detach().cpu().contiguous().numpy().tobytes())
    return {"n": len(ids), "texts": texts.hexdigest()[:16], "labels": labels.hexdigest()[:16]}


def identity(config: dict, train: dict, val: dict) -> dict:
    return {"config": config, "data": {"train": train, "validation": val}}


def differences(then: dict, now: dict) -> list[str]:
    """Human-readable differences between a checkpoint's identity and this run's."""
    out = []
    for split in ("train", "validation"):
        a, b = then["data"][split], now["data"][split]
        if a["n"] != b["n"]:
            out.append(f"the {split} data: {a['n']} examples in the run, {b['n']} now")
        elif a != b:
            changed = [what for what in ("texts", "labels") if a[what] != b[what]]
            out.append(f"the {split} data: same number of examples ({a['n']}), different {' and '.join(changed)}")
    old, new = then["config"], now["config"]
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<unset>") != new.get(key, "<unset>"):
            out.append(f"{key}: {old.get(key, '<unset>')!r} in the run, {new.get(key, '<unset>')!r} now")
    return out


def upgraded(identity: dict) -> dict:
    """A checkpoint's identity with its model settings under today's names and defaults (``config.upgrade``): an
    option its mode never read, recorded at an old default (probe='logreg'), is not a difference."""
    config = identity.get("config") or {}
    model = {k.removeprefix("model."): v for k, v in config.items() if k.startswith("model.")}
    model = {f"model.{k}": v for k, v in upgrade(ModelConfig, model).items()}
    return {**identity, "config": {**{k: v for k, v in config.items() if not k.startswith("model.")}, **model}}


def check_identity(checkpoint: Path, saved: dict | None, now: dict) -> None:
    if saved is None:
        raise ResumeError(
            f"{checkpoint} was written by an older llmhead without a record of its data and configuration, so it "
            "cannot be checked: start a new run_dir"
        )
    diff = differences(upgraded(saved), now)
    if diff:
        raise ResumeError(
            f"resume refused: {checkpoint} belongs to a run with other data or settings:\n  - "
            + "\n  - ".join(diff)
            + "\nResume with the run's data and settings, or start a new run_dir."
        )

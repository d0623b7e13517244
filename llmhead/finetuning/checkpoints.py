"""Training checkpoints of the fine-tuning loop: list, write and restore them (safetensors and JSON only, see
runstate.py), and hold the run_dir for one run at a time."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

import torch

from llmhead.finetuning import runstate
from llmhead.finetuning.adapters import trainable_names, trainable_state
from llmhead.finetuning.best import BestWeights
from llmhead.io.folder import honour_umask

TRAINER_STATE = runstate.TRAINER_STATE


def listed(run_dir: Path) -> list[Path]:
    """Complete checkpoints (renamed into place when written), the newest first."""
    folder = run_dir / "checkpoints"
    done = sorted(folder.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if folder.is_dir() else []
    return [p for p in reversed(done) if (p / TRAINER_STATE).is_file()]


@contextlib.contextmanager
def run_dir_lock(run_dir: str | None, main: bool):
    """One run at a time in a run_dir: two would interleave their checkpoints and logs. The main process holds an
    exclusive flock on ``run_dir/.lock`` while it trains (released with the file, even if the process dies)."""
    if not run_dir or not main:
        yield
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise runstate.ResumeError(
                f"run_dir {run_dir} is in use by another training run (it holds {run_dir}/.lock); wait for it to end "
                "or choose another run_dir"
            ) from None
        yield


def restore(accelerator, model, optimizer, scheduler, latest: Path, identity: dict, rank: int, best: BestWeights):
    """Put a checkpoint's weights, optimizer, scheduler and this rank's RNG states back, and its best weights so far
    into ``best``; return our counters. Only safetensors and JSON are read."""
    state = runstate.read_json(latest / TRAINER_STATE)
    runstate.check_identity(latest, state.pop("identity", None), identity)
    runstate.check_files(latest, state.pop("files", None))
    unwrapped = accelerator.unwrap_model(model)
    saved = runstate.load_tensors(latest / runstate.TRAINABLE) or {}
    expected = trainable_names(unwrapped)
    if set(saved) != expected:
        raise runstate.ResumeError(f"{latest / runstate.TRAINABLE}: does not hold this model's trainable weights")
    unwrapped.load_state_dict(saved, strict=False)
    optimizer.load_state_dict(runstate.load_optimizer(latest))
    scheduler.load_state_dict(runstate.read_json(latest / runstate.SCHEDULER))
    if accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(runstate.read_json(latest / runstate.SCALER))
    runstate.load_rng(latest, rank)
    if (latest / runstate.BEST).is_file():  # its digest was checked above
        best.keep_file(latest / runstate.BEST)
    else:
        best.close()
    return state


def write(accelerator, parts, run_dir: Path, state: dict, identity: dict, best_weights: BestWeights, keep: int) -> None:
    """Weights that train, optimizer, scheduler, every rank's RNG states and our counters, made visible only once
    complete: written under a temporary name, then renamed. Only safetensors and JSON (``runstate.py``)."""
    model, optimizer, scheduler = parts
    unwrapped = accelerator.unwrap_model(model)
    bad = [n for n, p in unwrapped.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(f"refusing to checkpoint non-finite weights at step {state['step']}: {bad[:5]}")
    folder = run_dir / "checkpoints"
    final = folder / f"step-{state['step']}"
    tmp = folder / f".tmp-step-{state['step']}"
    if accelerator.is_main_process:
        for stale in folder.glob(".tmp-step-*"):  # this one, or one a killed run was writing
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    runstate.save_rng(tmp, accelerator.process_index)
    if accelerator.is_main_process:
        # what trains (adapters, unfrozen weights, the head), not a frozen base: for LoRA on a 135M model that
        # is a few MB instead of hundreds
        runstate.save_tensors(tmp / runstate.TRAINABLE, trainable_state(unwrapped))
        runstate.save_optimizer(tmp, optimizer.state_dict())
        (tmp / runstate.SCHEDULER).write_text(json.dumps(scheduler.state_dict()))
        if accelerator.scaler is not None:  # fp16: the loss scale and its growth counter
            (tmp / runstate.SCALER).write_text(json.dumps(accelerator.scaler.state_dict()))
        best_weights.write(tmp / runstate.BEST)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        digests = runstate.digests(tmp)
        (tmp / TRAINER_STATE).write_text(json.dumps({**state, "identity": identity, "files": digests}))  # marks it done
        honour_umask(tmp)
        runstate.sync(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        done = sorted(folder.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()

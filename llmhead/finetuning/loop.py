"""The training loop for lora, qlora and full modes, built on Accelerate.

The same code runs on one CPU, under ``torchrun`` (several CPU processes over gloo) and under
``accelerate launch`` (DDP, FSDP, DeepSpeed). What it adds to a plain loop:

- the data order depends only on (seed, epoch), so a resumed run sees the same batches;
- checkpoints (safetensors + JSON only, ``runstate.py``) are written to a temporary folder and renamed when
  complete; ``resume`` continues mid-epoch from the latest one, bit for bit, after checking that the data and
  the configuration are the run's;
- SIGTERM (cluster preemption) writes a checkpoint at the next step and raises ``TrainingInterrupted``;
- a non-finite loss on any rank stops every rank at the same step with a message naming both;
- validation every epoch (or ``eval_every`` steps), early stopping, best weights restored at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from llmhead import metrics as metric_fns
from llmhead.config import TrainConfig
from llmhead.data.labels import LabelSpace
from llmhead.finetuning import runstate
from llmhead.finetuning.accel import make_accelerator
from llmhead.finetuning.adapters import block_index, trainable_names, trainable_state

log = logging.getLogger(__name__)
TRAINER_STATE = runstate.TRAINER_STATE


class TrainingInterrupted(RuntimeError):
    """SIGTERM arrived; a checkpoint was written. Run again with resume=True to continue."""


@dataclass
class Tokenized:
    ids: list[list[int]]
    targets: torch.Tensor


class EpochSampler(Sampler):
    """A permutation that depends only on (seed, epoch): the DataLoader's own seeded generator.

    With ``lengths``, examples are grouped by length (as transformers' ``group_by_length``): the permutation
    is cut into mega-batches of ``mega`` batches, each sorted by length and cut into batches, and the batches
    are shuffled. A batch is then padded to about its examples' own length instead of the longest of a random
    draw; on short texts that removes most padding, and with it most of a step's compute.

    The epoch is set by the loop with ``use_epoch``. (accelerate calls ``set_epoch`` with its own count
    of iterations, which restarts at 0 in a resumed run; this sampler deliberately has no ``set_epoch``.)
    """

    def __init__(self, n: int, seed: int, lengths: list[int] | None = None, batch_size: int = 1, mega: int = 50):
        self.n, self.seed, self.epoch = n, seed, 0
        self.lengths, self.batch_size, self.mega = lengths, batch_size, mega

    def use_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        if self.lengths is None:
            return iter(order)
        size, out = self.batch_size * self.mega, []
        for start in range(0, self.n, size):
            block = sorted(order[start : start + size], key=lambda i: -self.lengths[i])
            batches = [block[j : j + self.batch_size] for j in range(0, len(block), self.batch_size)]
            tail = [batches.pop()] if len(batches[-1]) < self.batch_size else []  # a short batch stays last
            out += [batches[b] for b in torch.randperm(len(batches), generator=generator).tolist()] + tail
        # the batch holding the longest example goes first (as transformers' group_by_length does): memory grows
        # to the largest step at once and is reused by the shorter ones, where rising lengths leave each step's
        # freed blocks too small for the next (full fine-tuning, 200 RT snippets: peak RSS 3,735 -> 3,655 MB)
        full = [i for i, batch in enumerate(out) if len(batch) == self.batch_size] or [0]
        longest = max(full, key=lambda i: max(self.lengths[j] for j in out[i]))
        out.insert(0, out.pop(longest))
        return iter([i for batch in out for i in batch])

    def __len__(self) -> int:
        return self.n


class Collate:
    """Pads a batch to its longest example (the tokenizer's padding side); carries targets along."""

    def __init__(self, tokenizer, data: Tokenized):
        self.tokenizer, self.data = tokenizer, data

    def __call__(self, index: list[int]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.pad({"input_ids": [self.data.ids[i] for i in index]}, return_tensors="pt")
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "targets": self.data.targets[torch.as_tensor(index)],
        }


def rng_neutral(loader):
    """Batches of ``loader`` without touching the global torch RNG.

    A DataLoader iterator draws its base seed from the global generator when it starts (accelerate's
    prepared loaders drop a loader's own ``generator``). A resumed run starts an iterator mid-epoch where
    the uninterrupted run did not, which would shift every later dropout mask; undoing the draw keeps
    the two runs identical.
    """
    iterator = iter(loader)
    while True:
        state = torch.get_rng_state()
        try:
            batch = next(iterator)
        except StopIteration:
            # a prepared loader draws at its first next(), even when it has no batch left: a run resumed at the
            # end of an epoch skips every batch, and that draw would be the only one not undone
            torch.set_rng_state(state)
            return
        torch.set_rng_state(state)
        yield batch


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    from llmhead.model.precision import resolve_dtype

    return "bf16" if resolve_dtype("auto") == "bfloat16" else "no"


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """Head at ``lr``; backbone at ``lr * backbone_lr_ratio``, decayed per block when ``layer_decay`` < 1;
    no weight decay on biases and norms."""
    num_blocks = model.backbone.config.num_hidden_layers
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            lr = cfg.lr
        else:
            index = block_index(name)
            depth = num_blocks - 1 - index if index is not None else (0 if "norm" in name else num_blocks)
            lr = cfg.lr * cfg.backbone_lr_ratio * cfg.layer_decay**depth
        decay = cfg.weight_decay if param.ndim >= 2 else 0.0
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def _checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (renamed into place when written), the newest first."""
    folder = run_dir / "checkpoints"
    done = sorted(folder.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if folder.is_dir() else []
    return [p for p in reversed(done) if (p / TRAINER_STATE).is_file()]


@contextlib.contextmanager
def _run_dir_lock(run_dir: str | None, main: bool):
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


def finetune(
    model: torch.nn.Module,
    labels: LabelSpace,
    tokenizer,
    train: Tokenized,
    val: Tokenized,
    cfg: TrainConfig,
    seed: int,
    extra_metrics: dict | None = None,
    run_config: dict | None = None,
) -> list[dict]:
    """Train ``model`` (a HeadModel with a prepared backbone) in place, holding the run_dir's lock; return the
    evaluation records (see ``_finetune``)."""
    accelerator = make_accelerator(
        mixed_precision=resolve_precision(cfg.precision),
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=cfg.trackers or None,
        project_dir=cfg.run_dir,
    )
    with _run_dir_lock(cfg.run_dir, accelerator.is_main_process):
        return _finetune(accelerator, model, labels, tokenizer, train, val, cfg, seed, extra_metrics, run_config)


def _finetune(
    accelerator,
    model: torch.nn.Module,  # HeadModel with a prepared backbone
    labels: LabelSpace,
    tokenizer,
    train: Tokenized,
    val: Tokenized,
    cfg: TrainConfig,
    seed: int,
    extra_metrics: dict | None = None,
    run_config: dict | None = None,
) -> list[dict]:
    """Train ``model`` in place; return the evaluation records. ``run_config``: what determines the training
    besides the data (the model's and training's settings, the base weights' fingerprint), as JSON values; a
    resume must match it."""
    from accelerate.utils import set_seed

    set_seed(seed)
    rank = accelerator.process_index
    run_dir = Path(cfg.run_dir) if cfg.run_dir else None
    sharded = accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")
    if sharded and (cfg.checkpoint_every or cfg.resume):
        raise ValueError(
            f"checkpoint_every / resume are not available under {accelerator.distributed_type.name} yet: its sharded "
            "optimizer state would need accelerate's pickle-based save_state, which llmhead does not use (a "
            "checkpoint must not be able to run code). Use DDP (--multi_gpu) for resumable runs."
        )
    import peft
    import transformers

    identity = runstate.identity(
        {
            **(run_config or {}),
            "processes": accelerator.num_processes,
            "device": accelerator.device.type,
            "mixed precision": accelerator.mixed_precision,  # auto resolves per machine
            "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}",
        },
        runstate.examples_digest(train.ids, train.targets),
        runstate.examples_digest(val.ids, val.targets),
    )
    if cfg.trackers:
        accelerator.init_trackers("llmhead", config={k: str(v) for k, v in vars(cfg).items()})

    lengths = [len(x) for x in train.ids] if cfg.group_by_length else None
    sampler = EpochSampler(len(train.ids), seed, lengths, cfg.batch_size * accelerator.num_processes)
    loader = DataLoader(
        range(len(train.ids)), batch_size=cfg.batch_size, sampler=sampler, collate_fn=Collate(tokenizer, train)
    )
    by_length = sorted(range(len(val.ids)), key=lambda i: -len(val.ids[i]))  # little padding; order is irrelevant
    val_loader = DataLoader(by_length, batch_size=cfg.batch_size, collate_fn=Collate(tokenizer, val))
    # fused: one kernel per step for all parameters (CPU and CUDA), instead of a loop of small ones
    optimizer = torch.optim.AdamW(param_groups(model, cfg), fused=accelerator.device.type in ("cpu", "cuda"))
    from transformers import get_scheduler

    model, optimizer, loader, val_loader = accelerator.prepare(model, optimizer, loader, val_loader)
    # The warm start trains the head with its own optimizer and leaves its last gradients on the head's parameters:
    # the first step here would add them to its own (and a resumed run, whose first step is a later one, would not).
    model.zero_grad(set_to_none=True)
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    total = cfg.epochs * steps_per_epoch
    scheduler = get_scheduler(
        cfg.schedule if cfg.schedule != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * total),
        num_training_steps=total,
    )
    weights = None
    if cfg.class_weights is not None:
        weights = (
            labels.class_weights(train.targets)
            if cfg.class_weights == "auto"
            else torch.tensor(cfg.class_weights, dtype=torch.float32)
        ).to(accelerator.device)

    state = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best": math.inf, "stale": 0, "history": []}
    best_weights = None
    found = _checkpoints(run_dir) if run_dir else []
    latest = found[0] if found else None
    if cfg.resume and latest is None:
        log.warning("resume=True but %s has no complete checkpoint: starting from the beginning", run_dir)
    elif latest is not None and not cfg.resume:
        raise runstate.ResumeError(
            f"run_dir {run_dir} already holds checkpoints of a run (latest: {latest.name}); pass resume=True to "
            "continue it, or choose a new run_dir (nothing there was changed)"
        )
    elif latest is not None:
        for i, latest in enumerate(found):
            try:
                state, best_weights = _restore(accelerator, model, optimizer, scheduler, latest, identity, rank)
                break
            except runstate.DamagedCheckpoint as exc:
                if i + 1 == len(found):
                    raise
                log.warning("%s; resuming from the checkpoint before it, %s", exc, found[i + 1].name)
        log.info("resumed from %s (epoch %d, step %d)", latest, state["epoch"] + 1, state["step"])

    stop = {"term": False, "all": False}  # this rank got SIGTERM; some rank did (every rank stops at one step)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: stop.update(term=True))  # every rank checkpoints its own RNG state
    if run_dir and accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    jsonl = open(run_dir / "train_log.jsonl", "a") if run_dir and accelerator.is_main_process else None
    bar = tqdm(
        total=total,
        initial=state["step"],
        desc=f"train ({cfg.epochs} epochs)",
        unit="step",
        disable=not (cfg.progress and accelerator.is_main_process),
    )
    finished_early = False
    casts = contextlib.ExitStack()
    if accelerator.mixed_precision != "no":
        # peft casts each adapter's input to the adapter's float32 and autocast casts it straight back: a lossless
        # round trip per adapted projection, forward and backward, that costs ~4% of a step. Skip it while training.
        from peft.helpers import disable_input_dtype_casting

        casts.enter_context(disable_input_dtype_casting(model))
    neftune = None
    if cfg.neftune_alpha:  # noise on the input embeddings while training (Jain et al. 2023), off in eval
        from transformers.integrations.neftune import neftune_post_forward_hook

        embeddings = accelerator.unwrap_model(model).backbone.get_input_embeddings()
        embeddings.neftune_noise_alpha = cfg.neftune_alpha
        neftune = embeddings.register_forward_hook(neftune_post_forward_hook)

    def validate(best, final: bool):
        return _evaluate(accelerator, model, labels, val_loader, cfg, state, best, jsonl, extra_metrics, final=final)

    try:
        for epoch in range(state["epoch"], cfg.epochs):
            sampler.use_epoch(epoch)
            model.train()
            batches = (
                accelerator.skip_first_batches(loader, state["batch_in_epoch"]) if state["batch_in_epoch"] else loader
            )
            seen_start, clock = 0, time.perf_counter()
            for batch in rng_neutral(batches):
                with accelerator.accumulate(model):
                    logits = model(batch["input_ids"], batch["attention_mask"])
                    loss = labels.loss(logits, batch["targets"], weights, cfg.focal_gamma)
                    stop["all"] = _check_step(accelerator, loss, stop["term"], state["step"] + 1, rank) or stop["all"]
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:  # the schedule counts optimizer steps, not micro-batches
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                state["batch_in_epoch"] += 1
                seen_start += len(batch["targets"]) * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                state["step"] += 1
                mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
                record = {
                    "step": state["step"],
                    "epoch": epoch + 1,
                    "loss": mean_loss,
                    "lr": scheduler.get_last_lr()[0],
                    "examples_per_s": round(seen_start / (time.perf_counter() - clock), 2),
                }
                if jsonl:
                    jsonl.write(json.dumps(record) + "\n")
                    jsonl.flush()
                accelerator.log({"train/loss": mean_loss, "train/lr": record["lr"]}, step=state["step"])
                bar.update(1)
                bar.set_postfix(loss=f"{mean_loss:.4f}", ex_s=record["examples_per_s"])
                if cfg.eval_every and state["step"] % cfg.eval_every == 0:
                    best_weights, finished_early = validate(best_weights, final=state["step"] >= total)
                if stop["all"] or (cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0):
                    if run_dir and not sharded:
                        parts = (model, optimizer, scheduler)
                        _checkpoint(accelerator, parts, run_dir, state, identity, best_weights, cfg.keep_checkpoints)
                if stop["all"]:
                    if not run_dir or sharded:
                        raise TrainingInterrupted(f"SIGTERM at step {state['step']}: no run_dir, no checkpoint written")
                    raise TrainingInterrupted(
                        f"SIGTERM: checkpoint written at step {state['step']}; run again with resume=True to continue"
                    )
                if finished_early:
                    break
            if finished_early:
                break
            state["epoch"], state["batch_in_epoch"] = epoch + 1, 0
            last_eval = state["history"][-1]["step"] if state["history"] else None
            # Every epoch; with eval_every, once more at the end, so the last steps are never discarded.
            if not cfg.eval_every or (epoch + 1 == cfg.epochs and last_eval != state["step"]):
                best_weights, finished_early = validate(best_weights, final=epoch + 1 == cfg.epochs)
                if finished_early:
                    break
    finally:
        casts.close()
        if neftune is not None:
            neftune.remove()
        signal.signal(signal.SIGTERM, previous)
        bar.close()
        if jsonl:
            jsonl.close()
        if cfg.trackers:
            accelerator.end_training()
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # drops the autocast wrapper
    if best_weights is not None:
        unwrapped.load_state_dict(best_weights, strict=False)
    # Under FSDP / ZeRO-3 each rank holds a shard: gather the full weights before anything is saved.
    full = accelerator.get_state_dict(model)
    if accelerator.is_main_process and full is not None and accelerator.distributed_type.name in ("FSDP", "DEEPSPEED"):
        unwrapped.load_state_dict(full, strict=False)
    accelerator.wait_for_everyone()
    return state["history"]


def _check_step(accelerator, loss: torch.Tensor, terminated: bool, step: int, rank: int) -> bool:
    """All ranks learn whether any rank saw a non-finite loss, so they all stop at the same step, and whether any
    rank got SIGTERM (returned), so they all checkpoint the same step: a signal reaches each process at its own
    moment. One gather for both."""
    mine = torch.tensor([[0.0 if torch.isfinite(loss).all() else 1.0, float(terminated)]], device=accelerator.device)
    flags = accelerator.gather(mine).reshape(-1, 2)
    if flags[:, 1].sum() > 0 and not terminated:
        log.info("rank %d: another rank got SIGTERM; stopping at step %d with it", rank, step)
    if flags[:, 0].sum() > 0:
        ranks = [i for i, f in enumerate(flags[:, 0].tolist()) if f]
        raise FloatingPointError(
            f"non-finite training loss at step {step} on rank(s) {ranks} (this is rank {rank}); "
            "training stopped and nothing was saved. Lower lr, enable max_grad_norm, or check the inputs."
        )
    return bool(flags[:, 1].sum() > 0)


@torch.no_grad()
def _evaluate(
    accelerator,
    model,
    labels: LabelSpace,
    val_loader,
    cfg: TrainConfig,
    state: dict,
    best_weights,
    jsonl,
    extra_metrics: dict | None = None,
    final: bool = False,
) -> tuple[dict | None, bool]:
    """Validation loss and metrics over every example exactly once; early stopping bookkeeping.

    The best weights are copied when they improve, except at the ``final`` evaluation: nothing trains after it,
    so the weights in place are the best and no copy is kept (for full fine-tuning, a copy is the whole model)."""
    model.eval()
    logits, targets = [], []
    for batch in val_loader:
        out = model(batch["input_ids"], batch["attention_mask"])
        out, tgt = accelerator.gather_for_metrics((out.float(), batch["targets"]))
        logits.append(out.cpu())
        targets.append(tgt.cpu())
    model.train()
    logits, targets = torch.cat(logits), torch.cat(targets)
    record = {
        "step": state["step"],
        "epoch": state["epoch"] + (0 if state["batch_in_epoch"] == 0 else 1),
        "val_loss": labels.loss(logits, targets).item(),
        **validation_metrics(labels, logits, targets),
    }
    for name, metric in (extra_metrics or {}).items():
        predictions = logits.argmax(-1) if labels.task == "classification" else labels.values(logits)[:, 0]
        references = targets if labels.task == "classification" else labels.values(targets[:, None])[:, 0]
        computed = metric.compute(predictions=np.asarray(predictions), references=np.asarray(references))
        record.update({f"{name}/{k}": float(v) for k, v in computed.items() if np.isscalar(v)})
    score = record["val_loss"] if cfg.select_by == "loss" else record.get(cfg.select_by)
    if score is None:
        raise ValueError(f"select_by={cfg.select_by!r} is not a validation metric; have {sorted(record)}")
    lower_is_better = cfg.select_by in ("loss", "mse", "mae", "hamming_loss")
    value = score if lower_is_better else -score
    improved = value < state["best"] - 1e-6
    if improved:
        state["best"], state["stale"] = value, 0
        best_weights = None if final else trainable_state(accelerator.unwrap_model(model))
    else:
        state["stale"] += 1
    record["best"] = improved
    state["history"].append(record)
    if jsonl:
        jsonl.write(json.dumps({"eval": record}) + "\n")
        jsonl.flush()
    accelerator.log({f"val/{k}": v for k, v in record.items() if isinstance(v, float)}, step=state["step"])
    return best_weights, bool(cfg.patience) and state["stale"] >= cfg.patience


def validation_metrics(labels: LabelSpace, logits: torch.Tensor, targets: torch.Tensor) -> dict:
    if labels.task == "classification":
        m = metric_fns.classification(targets.numpy(), logits.argmax(-1).numpy(), labels.names)
    elif labels.task == "multilabel":
        m = metric_fns.multilabel(targets.numpy().astype(int), labels.multilabel_decisions(logits), labels.names)
    else:
        truth = targets.double().numpy() * np.asarray(labels.scale) + np.asarray(labels.shift)
        m = metric_fns.regression(truth, labels.values(logits), labels.names)
    return {k: v for k, v in m.items() if isinstance(v, float)}


def _restore(accelerator, model, optimizer, scheduler, latest: Path, identity: dict, rank: int):
    """Put a checkpoint's weights, optimizer, scheduler and this rank's RNG states back; return our counters and
    the best weights so far. Only safetensors and JSON are read."""
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
    return state, runstate.load_tensors(latest / runstate.BEST)


def _checkpoint(accelerator, parts, run_dir: Path, state: dict, identity: dict, best_weights, keep: int) -> None:
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
        runstate.save_tensors(tmp / runstate.BEST, best_weights)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        digests = runstate.digests(tmp)
        (tmp / TRAINER_STATE).write_text(json.dumps({**state, "identity": identity, "files": digests}))  # marks it done
        runstate.sync(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        done = sorted(folder.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()

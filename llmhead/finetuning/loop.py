"""The training loop for lora, qlora and full modes, built on Accelerate.

The same code runs on one CPU, under ``torchrun`` (several CPU processes over gloo) and under
``accelerate launch`` (DDP, FSDP, DeepSpeed). What it adds to a plain loop:

- the data order depends only on (seed, epoch), so a resumed run sees the same batches (batches.py);
- checkpoints (safetensors + JSON only, ``runstate.py``) are written to a temporary folder and renamed when
  complete; ``resume`` continues mid-epoch from the latest one, bit for bit, after checking that the data and
  the configuration are the run's (checkpoints.py);
- with ``handle_sigterm``, SIGTERM (cluster preemption) writes a checkpoint at the next step and raises
  ``TrainingInterrupted``; without it, the process's signal handling is left alone;
- a non-finite loss on any rank stops every rank at the same step with a message naming both;
- validation every epoch (or ``eval_every`` steps), early stopping, best weights restored at the end (evaluation.py);
- the process is left as it was found: the global RNGs are seeded inside and restored after, and accelerate's
  process-wide state is put back (accel.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from llmhead import budget
from llmhead.config import TrainConfig
from llmhead.config.train import PASS_TOKENS
from llmhead.data.labels import LabelSpace
from llmhead.finetuning import checkpoints, runstate
from llmhead.finetuning.accel import accelerator_scope
from llmhead.finetuning.batches import Collate, EpochSampler, Tokenized, passes, rng_neutral
from llmhead.finetuning.best import BestWeights
from llmhead.finetuning.evaluation import evaluate
from llmhead.finetuning.hooks import while_training
from llmhead.finetuning.optim import param_groups, resolve_precision
from llmhead.finetuning.process import check_step, seeded, sigterm_flag
from llmhead.progress import bar as progress_bar

log = logging.getLogger(__name__)
__all__ = ["TrainingInterrupted", "Tokenized", "finetune", "param_groups"]


class TrainingInterrupted(RuntimeError):
    """SIGTERM arrived; a checkpoint was written. Run again with resume=True to continue."""


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
    evaluation records. ``run_config``: what determines the training besides the data (the model's and training's
    settings, the base weights' fingerprint), as JSON values; a resume must match it."""
    accelerator_options = dict(
        mixed_precision=resolve_precision(cfg.mixed_precision),
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=cfg.trackers or None,
        project_dir=cfg.run_dir,
    )
    with accelerator_scope(**accelerator_options) as accelerator:
        lock = checkpoints.run_dir_lock(cfg.run_dir, accelerator.is_main_process)
        with lock, seeded(seed), sigterm_flag(cfg.handle_sigterm) as stop:
            run = Run(accelerator, model, labels, tokenizer, (train, val), cfg, seed, extra_metrics or {}, stop)
            return run.train(run_config or {})


def pass_tokens(setting: int | str | None, accelerator) -> int | None:
    """``max_pass_tokens`` for this run: "auto" is PASS_TOKENS on the CPU and whole batches elsewhere. FSDP and
    DeepSpeed accumulate gradients in their own way, so a number there is refused rather than ignored."""
    engine = accelerator.distributed_type.name
    if engine in ("FSDP", "DEEPSPEED"):
        if setting not in ("auto", None):
            raise ValueError(
                f"max_pass_tokens={setting} cannot split batches under {engine}, which accumulates gradients in its "
                "own way: set max_pass_tokens=None (or 'auto') and a smaller batch_size with grad_accum instead"
            )
        return None
    if setting == "auto":
        return PASS_TOKENS if accelerator.device.type == "cpu" else None
    return setting


class Run:
    """One fine-tuning run: the prepared model, optimizer, schedule and loaders, and the counters a checkpoint
    holds (``state``)."""

    def __init__(self, accelerator, model, labels, tokenizer, data, cfg, seed, extra_metrics, stop):
        self.accelerator, self.labels, self.cfg, self.extra_metrics, self.stop = (
            accelerator,
            labels,
            cfg,
            extra_metrics,
            stop,
        )
        self.train_data, self.val_data = data
        self.rank = accelerator.process_index
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else None
        self.sharded = accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")
        if self.sharded and (cfg.checkpoint_every or cfg.resume):
            raise ValueError(
                f"checkpoint_every / resume are not available under {accelerator.distributed_type.name} yet: its "
                "sharded optimizer state would need accelerate's pickle-based save_state, which llmhead does not use "
                "(a checkpoint must not be able to run code). Use DDP (--multi_gpu) for resumable runs."
            )
        self.pass_tokens = pass_tokens(cfg.max_pass_tokens, accelerator)
        train, val = data
        lengths = [len(x) for x in train.ids] if cfg.group_by_length else None
        self.sampler = EpochSampler(len(train.ids), seed, lengths, cfg.batch_size * accelerator.num_processes)
        loader = DataLoader(
            range(len(train.ids)), batch_size=cfg.batch_size, sampler=self.sampler, collate_fn=Collate(tokenizer, train)
        )
        by_length = sorted(range(len(val.ids)), key=lambda i: -len(val.ids[i]))  # little padding; order irrelevant
        val_loader = DataLoader(by_length, batch_size=cfg.batch_size, collate_fn=Collate(tokenizer, val))
        # fused: one kernel per step for all parameters (CPU and CUDA), instead of a loop of small ones
        optimizer = torch.optim.AdamW(param_groups(model, cfg), fused=accelerator.device.type in ("cpu", "cuda"))
        prepared = accelerator.prepare(model, optimizer, loader, val_loader)
        self.model, self.optimizer, self.loader, self.val_loader = prepared
        # The warm start trains the head with its own optimizer and leaves its last gradients on the head's
        # parameters: the first step here would add them to its own (and a resumed run's first step would not).
        self.model.zero_grad(set_to_none=True)
        steps_per_epoch = math.ceil(len(self.loader) / cfg.grad_accum)
        self.total = cfg.epochs * steps_per_epoch
        if cfg.patience is None:  # 3 epochs' worth of evaluations: watching a run more often must not shorten it
            evaluations = math.ceil(steps_per_epoch / cfg.eval_every) if cfg.eval_every else 1
            self.cfg = cfg = dataclasses.replace(cfg, patience=3 * evaluations)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            cfg.schedule if cfg.schedule != "constant" else "constant_with_warmup",
            self.optimizer,
            num_warmup_steps=int(cfg.warmup_ratio * self.total),
            num_training_steps=self.total,
        )
        weights = labels.resolve_class_weights(cfg.class_weights, train.targets)
        self.weights = None if weights is None else weights.to(accelerator.device)
        self.state = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best": math.inf, "stale": 0, "history": []}
        self.best_weights = BestWeights()  # in memory, or in a temporary file when large (full fine-tuning)
        self.jsonl = None

    def identity(self, run_config: dict) -> dict:
        import peft
        import transformers

        versions = f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"
        return runstate.identity(
            {
                **run_config,
                "processes": self.accelerator.num_processes,
                "device": self.accelerator.device.type,
                "mixed precision": self.accelerator.mixed_precision,  # auto resolves per machine
                # passes change rounding and dropout draws; whole batches leave it out, as runs from before it
                **({"tokens per pass": self.pass_tokens} if self.pass_tokens is not None else {}),
                "versions": versions,
            },
            runstate.examples_digest(self.train_data.ids, self.train_data.targets),
            runstate.examples_digest(self.val_data.ids, self.val_data.targets),
        )

    def resume(self) -> None:
        """Continue from the latest complete checkpoint (the one before it when it is damaged); refuse a fresh run
        into a run_dir that holds one."""
        found = checkpoints.listed(self.run_dir) if self.run_dir else []
        latest = found[0] if found else None
        if self.cfg.resume and latest is None:
            log.warning("resume=True but %s has no complete checkpoint: starting from the beginning", self.run_dir)
        elif latest is not None and not self.cfg.resume:
            raise runstate.ResumeError(
                f"run_dir {self.run_dir} already holds checkpoints of a run (latest: {latest.name}); pass resume=True "
                "to continue it, or choose a new run_dir (nothing there was changed)"
            )
        elif latest is not None:
            parts = (self.model, self.optimizer, self.scheduler)
            for i, latest in enumerate(found):
                try:
                    self.state = checkpoints.restore(
                        self.accelerator, *parts, latest, self.identity_now, self.rank, self.best_weights
                    )
                    break
                except runstate.DamagedCheckpoint as exc:
                    if i + 1 == len(found):
                        raise
                    log.warning("%s; resuming from the checkpoint before it, %s", exc, found[i + 1].name)
            log.info("resumed from %s (epoch %d, step %d)", latest, self.state["epoch"] + 1, self.state["step"])

    def train(self, run_config: dict) -> list[dict]:
        cfg, accelerator = self.cfg, self.accelerator
        self.identity_now = self.identity(run_config)
        if cfg.trackers:
            accelerator.init_trackers("llmhead", config={k: str(v) for k, v in vars(cfg).items()})
        self.resume()
        if self.run_dir and accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(self.run_dir / "train_log.jsonl", "a")
        show = cfg.progress and accelerator.is_main_process
        desc = f"train ({cfg.epochs} epochs)"
        self.bar = progress_bar(show, total=self.total, initial=self.state["step"], desc=desc, unit="step")
        try:
            with while_training(self.accelerator, self.model, self.cfg):
                self.epochs()
        finally:
            self.bar.close()
            if self.jsonl:
                self.jsonl.close()
            if cfg.trackers:
                accelerator.end_training()
        return self.finish()

    def epochs(self) -> None:
        cfg, state = self.cfg, self.state
        for epoch in range(state["epoch"], cfg.epochs):
            self.sampler.use_epoch(epoch)
            self.model.train()
            if self.epoch(epoch):
                return
            state["epoch"], state["batch_in_epoch"] = epoch + 1, 0
            last_eval = state["history"][-1]["step"] if state["history"] else None
            # Every epoch; with eval_every, once more at the end, so the last steps are never discarded.
            if not cfg.eval_every or (epoch + 1 == cfg.epochs and last_eval != state["step"]):
                if self.validate(final=epoch + 1 == cfg.epochs):
                    return

    def epoch(self, epoch: int) -> bool:
        """One epoch's steps (from where a resume left off); True when early stopping ends the run."""
        accelerator, cfg, state = self.accelerator, self.cfg, self.state
        skip = state["batch_in_epoch"]
        batches = accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
        seen, clock, micro = 0, time.perf_counter(), []  # micro: the losses of the optimizer step's micro-batches
        for batch in rng_neutral(batches):
            with accelerator.accumulate(self.model):
                micro.append(self.forward_backward(batch))
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                if accelerator.sync_gradients:  # the schedule counts optimizer steps, not micro-batches
                    self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            state["batch_in_epoch"] += 1
            seen += len(batch["targets"]) * accelerator.num_processes
            if accelerator.sync_gradients:
                state["step"] += 1
                step_loss, micro = torch.stack(micro).mean(), []  # with grad_accum: the mean of its micro-batches
                if self.after_step(epoch, step_loss, seen / (time.perf_counter() - clock)):
                    return True
                budget.check("fine-tuning")
        return False

    def forward_backward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's loss (detached), its gradients added to the parameters' in passes of at most
        ``pass_tokens`` tokens: each pass's loss is weighted by its share of the batch's, so the summed gradients
        are the whole batch's (for the same dropout draws), while only one pass's activations are held. Gradients
        are synchronised across processes on the last pass only, after every rank has checked the batch's loss
        (``check_step``): under DeepSpeed that backward is also the optimizer step, which a non-finite loss must
        not reach."""
        accelerator, parts, state = self.accelerator, passes(batch, self.pass_tokens), self.state
        whole = self.labels.loss_weight(batch["targets"], self.weights).clamp(min=torch.finfo(torch.float32).tiny)
        total = torch.zeros((), device=accelerator.device)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(self.model):
                logits = self.model(part["input_ids"], part["attention_mask"]).logits
                loss = self.labels.loss(logits, part["targets"], self.weights, self.cfg.focal_gamma)
                if len(parts) > 1:
                    loss = loss * (self.labels.loss_weight(part["targets"], self.weights) / whole)
                total += loss.detach()
                if last:
                    term = check_step(accelerator, total, self.stop["term"], state["step"] + 1, self.rank)
                    self.stop["all"] = term or self.stop.get("all", False)
                accelerator.backward(loss)
        return total

    def after_step(self, epoch: int, loss: torch.Tensor, examples_per_s: float) -> bool:
        """Log the step; evaluate and checkpoint when due; stop on SIGTERM. True when early stopping ends the run."""
        accelerator, cfg, state = self.accelerator, self.cfg, self.state
        mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
        lr = self.scheduler.get_last_lr()[0]
        record = {"step": state["step"], "epoch": epoch + 1, "loss": mean_loss, "lr": lr}
        record["examples_per_s"] = round(examples_per_s, 2)
        if self.jsonl:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        accelerator.log({"train/loss": mean_loss, "train/lr": lr}, step=state["step"])
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{mean_loss:.4f}", ex_s=record["examples_per_s"], refresh=False)
        finished = False
        if cfg.eval_every and state["step"] % cfg.eval_every == 0:
            finished = self.validate(final=state["step"] >= self.total)
        stopping = self.stop.get("all", False)
        if stopping or (cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0):
            if self.run_dir and not self.sharded:
                parts = (self.model, self.optimizer, self.scheduler)
                keep = cfg.keep_checkpoints
                checkpoints.write(accelerator, parts, self.run_dir, state, self.identity_now, self.best_weights, keep)
        if stopping:
            if not self.run_dir or self.sharded:
                raise TrainingInterrupted(f"SIGTERM at step {state['step']}: no run_dir, no checkpoint written")
            raise TrainingInterrupted(
                f"SIGTERM: checkpoint written at step {state['step']}; run again with resume=True to continue"
            )
        return finished

    def validate(self, final: bool) -> bool:
        return evaluate(
            self.accelerator,
            self.model,
            self.labels,
            self.val_loader,
            self.cfg,
            self.state,
            self.best_weights,
            self.jsonl,
            self.extra_metrics,
            final=final,
        )

    def finish(self) -> list[dict]:
        """The best weights back in place (gathered from every shard under FSDP / ZeRO-3); the evaluation records."""
        accelerator = self.accelerator
        unwrapped = accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)  # drops the autocast wrapper
        self.best_weights.restore(unwrapped)
        self.best_weights.close()
        full = accelerator.get_state_dict(self.model)
        if accelerator.is_main_process and full is not None and self.sharded:
            unwrapped.load_state_dict(full, strict=False)
        accelerator.wait_for_everyone()
        return self.state["history"]

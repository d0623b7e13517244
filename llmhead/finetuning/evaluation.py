"""Validation during fine-tuning: the loss and metrics over every example exactly once (across processes), the
selection score, early stopping, and the best weights so far."""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from llmhead import events
from llmhead import metrics as metric_fns
from llmhead.config import TrainConfig
from llmhead.data.labels import LabelSpace
from llmhead.finetuning.best import BestWeights


def _predict(accelerator, model, val_loader) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation logits and targets of every example, gathered from every process."""
    model.eval()
    logits, targets = [], []
    # One autocast around every batch: under mixed precision the float32 weights that train (full fine-tuning) are
    # cast once per evaluation, not once per batch (autocast drops its casts when its outermost context exits).
    with accelerator.autocast():
        for batch in val_loader:
            out = model(batch["input_ids"], batch["attention_mask"]).logits
            out, tgt = accelerator.gather_for_metrics((out.float(), batch["targets"]))
            logits.append(out.cpu())
            targets.append(tgt.cpu())
    model.train()
    return torch.cat(logits), torch.cat(targets)


def _extra(labels: LabelSpace, logits: torch.Tensor, targets: torch.Tensor, extra_metrics: dict) -> dict:
    """The caller's ``evaluate`` metrics (by name), each of their scalar results as ``name/key``."""
    record = {}
    for name, metric in extra_metrics.items():
        predictions = logits.argmax(-1) if labels.task == "classification" else labels.values(logits)[:, 0]
        references = targets if labels.task == "classification" else labels.values(targets[:, None])[:, 0]
        computed = metric.compute(predictions=np.asarray(predictions), references=np.asarray(references))
        record.update({f"{name}/{k}": float(v) for k, v in computed.items() if np.isscalar(v)})
    return record


@torch.no_grad()
def evaluate(
    accelerator,
    model,
    labels: LabelSpace,
    val_loader,
    cfg: TrainConfig,
    state: dict,
    best_weights: BestWeights,
    jsonl,
    extra_metrics: dict | None = None,
    final: bool = False,
) -> bool:
    """Validation loss and metrics over every example exactly once; early stopping bookkeeping.

    The best weights are copied into ``best_weights`` when they improve, except at the ``final`` evaluation:
    nothing trains after it, so the weights in place are the best and no copy is kept (for full fine-tuning, a copy
    is the whole model). True when early stopping ends the run."""
    began = time.perf_counter()
    logits, targets = _predict(accelerator, model, val_loader)
    record = {
        "step": state["step"],
        "epoch": state["epoch"] + (0 if state["batch_in_epoch"] == 0 else 1),
        "val_loss": labels.loss(logits, targets).item(),
        **metric_fns.validation(labels, logits, targets),
    }
    record.update(_extra(labels, logits, targets, extra_metrics or {}))
    score = record["val_loss"] if cfg.select_by == "loss" else record.get(cfg.select_by)
    if score is None:
        raise ValueError(f"select_by={cfg.select_by!r} is not a validation metric; have {sorted(record)}")
    lower_is_better = cfg.select_by in ("loss", "mse", "mae", "hamming_loss")
    value = score if lower_is_better else -score
    improved = value < state["best"] - 1e-6
    if improved:
        state["best"], state["stale"] = value, 0
        if final:
            best_weights.close()
        else:
            best_weights.keep(accelerator.unwrap_model(model))
    else:
        state["stale"] += 1
    record["best"] = improved
    state["history"].append(record)
    events.evaluated(record, time.perf_counter() - began, accelerator.is_main_process)
    if jsonl:
        jsonl.write(json.dumps({"eval": record}) + "\n")
        jsonl.flush()
    accelerator.log({f"val/{k}": v for k, v in record.items() if isinstance(v, float)}, step=state["step"])
    return bool(cfg.patience) and state["stale"] >= cfg.patience

"""The training loop for head mode: the head learns from cached pooled features.

A plain PyTorch loop (the features are already computed, so there is nothing for Accelerate to distribute); early
stopping on the validation loss restores the best epoch's weights.
"""

from __future__ import annotations

import copy
import logging
import math
import time

import torch
from torch.utils.data import DataLoader
from transformers import get_cosine_schedule_with_warmup

from llmhead import budget, events
from llmhead import metrics as metric_fns
from llmhead.config import TrainConfig
from llmhead.data.labels import LabelSpace
from llmhead.features.extract import FeatureSet
from llmhead.progress import bar as progress_bar
from llmhead.seeding import seeded_fork

log = logging.getLogger(__name__)


def is_main_process() -> bool:
    """Rank 0 (or no process group): where progress bars show."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def train_head(head, labels, train, val, cfg: TrainConfig, seed: int, progress=True, start_is_candidate=False):
    """``fit_head`` with the global torch generator seeded inside (the head's dropout masks follow ``seed``) and put
    back after: the caller's random stream is left as it was."""
    with seeded_fork(seed):
        return fit_head(head, labels, train, val, cfg, seed, progress, start_is_candidate)


def fit_head(
    head: torch.nn.Module,
    labels: LabelSpace,
    train: tuple[FeatureSet, torch.Tensor],  # features, targets
    val: tuple[FeatureSet, torch.Tensor],
    cfg: TrainConfig,
    seed: int,
    progress: bool = True,
    start_is_candidate: bool = False,
) -> list[dict]:
    """Train ``head`` in place; return one record per epoch (train_loss, val_loss, the validation metrics, best).

    ``start_is_candidate``: the initial head is meaningful (e.g. the zero-shot verbalizer head), so it is
    evaluated as epoch 0 and kept if no epoch beats it."""
    # A plain float32 loop on the CPU: the features are cached float32 and the head is small, so mixed precision
    # would only round and several devices would only communicate. Under several processes each rank trains the
    # same head on the same features and seed, so the ranks agree without any exchange.
    generator = torch.Generator().manual_seed(seed)  # the data order depends on the seed only
    features, targets = train
    loader = DataLoader(range(len(features)), batch_size=cfg.batch_size, shuffle=True, generator=generator)
    optimizer = head_optimizer(head, cfg)
    total = max(1, cfg.epochs * math.ceil(len(features) / cfg.batch_size))
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    head.to(torch.device("cpu"))
    weights = labels.resolve_class_weights(cfg.class_weights, targets)

    best_loss, best_state, stale, history = math.inf, None, 0, []
    if start_is_candidate or cfg.epochs == 0:
        began = time.perf_counter()
        best_loss, scores = evaluate(head, labels, val, cfg.batch_size)
        best_state = copy.deepcopy(head.state_dict())
        history.append({"epoch": 0, "val_loss": best_loss, **scores, "best": True})
        events.evaluated(history[-1], time.perf_counter() - began, is_main_process())
    bar = progress_bar(progress and is_main_process(), iterable=range(cfg.epochs), desc="head", unit="epoch")
    for epoch in bar:
        train_loss = one_epoch(head, labels, loader, train, weights, cfg, optimizer, scheduler, epoch)
        began = time.perf_counter()
        val_loss, scores = evaluate(head, labels, val, cfg.batch_size)
        improved = val_loss < best_loss - 1e-6
        if improved:
            best_loss, stale = val_loss, 0
            best_state = copy.deepcopy(head.state_dict())
        else:
            stale += 1
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, **scores, "best": improved})
        events.evaluated(history[-1], time.perf_counter() - began, is_main_process())
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", refresh=False)
        budget.check("head training")
        if cfg.patience and stale >= cfg.patience:
            log.info("early stop after epoch %d: no better validation loss for %d epochs", epoch + 1, stale)
            break
    bar.close()
    if best_state is not None:
        head.load_state_dict(best_state)
    return history


def head_optimizer(head: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on the weight matrices only (not on biases, norms or the layer mix)."""
    no_decay = [p for p in head.parameters() if p.ndim < 2]
    decay = [p for p in head.parameters() if p.ndim >= 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def one_epoch(head, labels: LabelSpace, loader, train, weights, cfg: TrainConfig, optimizer, scheduler, epoch: int):
    """One pass over the cached training features in ``loader``'s order; the mean training loss per example."""
    features, targets = train
    head.train()
    running, seen = 0.0, 0
    for index in loader:
        index = index.cpu()
        x, mask = features.take(index)
        loss = labels.loss(head(x, mask), targets[index], weights, cfg.focal_gamma)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at epoch {epoch + 1}; lower lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += loss.item() * len(index)
        seen += len(index)
    return running / seen


@torch.no_grad()
def head_logits(head: torch.nn.Module, features: FeatureSet, batch_size: int) -> torch.Tensor:
    """(N, num_outputs) head outputs on cached features, in batches, on the CPU."""
    head.eval()
    device = next(iter([*head.parameters(), *head.buffers()])).device
    out = []
    for start in range(0, len(features), batch_size):
        x, mask = features.take(torch.arange(start, min(start + batch_size, len(features))))
        out.append(head(x.to(device), mask.to(device) if mask is not None else None).float().cpu())
    return torch.cat(out)


def evaluate(head: torch.nn.Module, labels: LabelSpace, data: tuple[FeatureSet, torch.Tensor], batch_size: int):
    """The validation loss and metrics (accuracy, f1, pearson ... as the task has them) of ``head``."""
    features, targets = data
    logits = head_logits(head, features, 4 * batch_size)
    return labels.loss(logits, targets).item(), metric_fns.validation(labels, logits, targets)

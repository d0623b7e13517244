"""The training loop for head mode: the head learns from cached pooled features.

Built on ``Accelerator`` so the same loop runs on one CPU or several processes; early stopping on
the validation loss restores the best epoch's weights.
"""

from __future__ import annotations

import copy
import logging
import math

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from .config import TrainConfig
from .labels import LabelSpace

log = logging.getLogger(__name__)


def train_head(
    head: torch.nn.Module,
    labels: LabelSpace,
    train: tuple[torch.Tensor, torch.Tensor],  # (N, H) features, targets
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    seed: int,
    progress: bool = True,
) -> list[dict]:
    """Train ``head`` in place; return one record per epoch (train_loss, val_loss, best)."""
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    generator = torch.Generator().manual_seed(seed)  # the data order depends on the seed only
    loader = DataLoader(TensorDataset(*train), batch_size=cfg.batch_size, shuffle=True, generator=generator)
    no_decay = [p for n, p in head.named_parameters() if p.ndim < 2]
    decay = [p for n, p in head.named_parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    total = cfg.epochs * math.ceil(len(train[0]) / cfg.batch_size)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    head, optimizer, loader, scheduler = accelerator.prepare(head, optimizer, loader, scheduler)

    best_loss, best_state, stale, history = math.inf, None, 0, []
    bar = tqdm(range(cfg.epochs), desc="head", unit="epoch", disable=not (progress and accelerator.is_main_process))
    for epoch in bar:
        head.train()
        running, seen = 0.0, 0
        for features, targets in loader:
            loss = labels.loss(head(features), targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss {loss.item()} at epoch {epoch + 1}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(features)
            seen += len(features)
        val_loss = evaluate_loss(accelerator.unwrap_model(head), labels, val, cfg.batch_size)
        improved = val_loss < best_loss - 1e-6
        if improved:
            best_loss, stale = val_loss, 0
            best_state = copy.deepcopy(accelerator.unwrap_model(head).state_dict())
        else:
            stale += 1
        history.append({"epoch": epoch + 1, "train_loss": running / seen, "val_loss": val_loss, "best": improved})
        bar.set_postfix(train=f"{running / seen:.4f}", val=f"{val_loss:.4f}")
        if cfg.patience and stale >= cfg.patience:
            log.info("early stop after epoch %d: no better validation loss for %d epochs", epoch + 1, stale)
            break
    bar.close()
    accelerator.unwrap_model(head).load_state_dict(best_state)
    return history


@torch.no_grad()
def evaluate_loss(head: torch.nn.Module, labels: LabelSpace, data: tuple[torch.Tensor, torch.Tensor], batch_size: int):
    head.eval()
    device = next(head.parameters()).device
    features, targets = (t.to(device) for t in data)
    total = 0.0
    for i in range(0, len(features), 4 * batch_size):
        logits = head(features[i : i + 4 * batch_size])
        total += labels.loss(logits, targets[i : i + 4 * batch_size]).item() * len(logits)
    return total / len(features)

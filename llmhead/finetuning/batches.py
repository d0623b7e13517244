"""What the fine-tuning loop iterates over: tokenized examples, an epoch order that depends only on (seed, epoch),
length-grouped batches, padding, and batches drawn without touching the global RNG."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler


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


def passes(batch: dict[str, torch.Tensor], max_tokens: int | None) -> list[dict[str, torch.Tensor]]:
    """``batch`` cut into row slices of at most ``max_tokens`` padded tokens each (a row longer than that is a
    pass of its own), each trimmed of the padding columns after its own longest row; None: the batch whole.

    Only trailing all-padding columns are dropped, so every token keeps its position (a left-padded batch is not
    trimmed). The rows go in the batch's order; the loss of each pass is weighted by the caller."""
    rows, width = batch["input_ids"].shape
    if max_tokens is None or rows * width <= max_tokens:
        return [batch]
    count = math.ceil(rows / max(1, max_tokens // width))
    per_pass = math.ceil(rows / count)  # balanced: 32 rows at 20 a pass go as 16 + 16, not 20 + 12
    out = []
    for start in range(0, rows, per_pass):
        part = {name: tensor[start : start + per_pass] for name, tensor in batch.items()}
        real = part["attention_mask"].any(0).nonzero()
        end = int(real[-1]) + 1 if len(real) else width
        out.append({**part, "input_ids": part["input_ids"][:, :end], "attention_mask": part["attention_mask"][:, :end]})
    return out

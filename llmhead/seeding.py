"""Seeded work on the global torch generators without changing them for the caller.

torch's module initialisers (a new head, peft's adapters) and dropout draw from the global generators. Inside
``seeded_fork(seed)`` they are seeded with ``seed``; on exit the CPU generator and those of the CUDA devices in use
are back where the caller left them.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def seeded_fork(seed: int):
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield

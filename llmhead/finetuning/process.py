"""What a fine-tuning run may touch in the process, and how it puts it back: the global random generators (seeded
inside, restored after) and, when asked, the SIGTERM handler (installed inside, the previous one back after); and
how the processes of a run agree to stop at one step."""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading

import numpy as np
import torch

log = logging.getLogger(__name__)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed Python's, numpy's and torch's global generators (dropout and data order draw from them) inside, and put
    their previous states back after: a library call leaves the caller's random streams as they were."""
    from accelerate.utils import set_seed

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    set_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def sigterm_flag(enabled: bool):
    """A dict whose "term" turns True when SIGTERM arrives, while inside; the previous handler is back after. Not
    enabled: nothing is installed (the flag never turns)."""
    stop = {"term": False}
    if not enabled:
        yield stop
        return
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("handle_sigterm=True needs fit() on the main thread (Python delivers signals there only)")
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(term=True))
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_step(accelerator, loss: torch.Tensor, terminated: bool, step: int, rank: int) -> bool:
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

"""Evaluation records as they are made, for a caller's own callback (``fit(..., on_evaluate=fn)``).

A training loop calls ``evaluated(record)`` after each validation (a head epoch, a fine-tuning evaluation); inside
``listening(fn)`` that hands ``fn`` a copy of the record, on the main process only. The listener lives in a
ContextVar, so nothing outlives the fit and two fits in two threads never hear each other. The head warm start of
a fine-tuning run is ``muted()``: its records are scored on a sample of the training data, not the validation set.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable

_LISTENER: contextvars.ContextVar[Callable[[dict], None] | None] = contextvars.ContextVar(
    "llmhead_on_evaluate", default=None
)


@contextlib.contextmanager
def listening(fn: Callable[[dict], None] | None):
    if fn is not None and not callable(fn):
        raise TypeError(f"on_evaluate must be a callable taking one dict (an evaluation record), got {fn!r}")
    token = _LISTENER.set(fn)
    try:
        yield
    finally:
        _LISTENER.reset(token)


@contextlib.contextmanager
def muted():
    with listening(None):
        yield


def evaluated(record: dict, seconds: float, main_process: bool = True) -> None:
    """Hand a copy of ``record`` (the caller may keep or change it) to the listener, if any, with ``eval_seconds``:
    the validation pass's wall time (not kept in the history: a rerun's history is the same, its times are not)."""
    fn = _LISTENER.get()
    if fn is not None and main_process:
        fn({**record, "eval_seconds": seconds})

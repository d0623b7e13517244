"""A time budget that long-running work checks cooperatively.

The ladder gives each rung a deadline; the loops that can run for minutes (feature passes, in-context scoring,
fine-tuning steps, head epochs, cross-validation folds) call ``check()`` between units of work, so work past its
deadline stops within one batch or step instead of running on. The deadline lives in a ContextVar set by
``deadline()``: nothing outlives the block, and code run outside one never stops.
"""

from __future__ import annotations

import contextlib
import contextvars
import time

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("llmhead_deadline", default=None)


class BudgetExceeded(RuntimeError):  # not TimeoutError, an OSError that data-error handlers catch
    """The work reached the deadline it was given and stopped; what it had done is discarded."""


@contextlib.contextmanager
def deadline(at: float | None):
    """Inside: ``check()`` raises ``BudgetExceeded`` once ``time.perf_counter()`` passes ``at`` (None: never)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def left() -> float | None:
    """Seconds until the deadline (negative once past), or None outside a deadline."""
    at = _DEADLINE.get()
    return None if at is None else at - time.perf_counter()


def check(what: str, needs: float = 0.0) -> None:
    """Raise ``BudgetExceeded`` when the deadline has passed, or when ``needs`` more seconds would pass it."""
    remaining = left()
    if remaining is None or remaining >= needs:
        return
    if remaining < 0:
        raise BudgetExceeded(f"the time budget ran out during {what}")
    raise BudgetExceeded(f"{what} needs about {needs:.0f} s more, past the time budget ({remaining:.0f} s left)")

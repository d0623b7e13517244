"""What llmhead shows while it works: progress bars and one-line messages on standard error.

Every phase that can run for more than a couple of seconds shows a bar; a bar appears only once its phase has run
for ``DELAY`` seconds, so predicting a few texts prints nothing. ``progress=False`` (a fit's, the ladder's) turns
them off for that call (``shown``: a ContextVar, so nothing outlives the call), transformers' load bar included;
``LLMHEAD_QUIET=1`` in the environment turns off every bar and message of llmhead's in the process.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys

from tqdm.auto import tqdm

DELAY = 2.0  # seconds a phase runs before its bar appears
_SHOWN: contextvars.ContextVar[bool] = contextvars.ContextVar("llmhead_progress", default=True)


def quiet() -> bool:
    return os.environ.get("LLMHEAD_QUIET", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def shown(flag: bool):
    """Inside: bars and lines show only if ``flag`` (and every enclosing call's flag) allows."""
    token = _SHOWN.set(bool(flag) and _SHOWN.get())
    try:
        yield
    finally:
        _SHOWN.reset(token)


def enabled(show: bool = True) -> bool:
    return show and _SHOWN.get() and not quiet()


def bar(show: bool = True, **options) -> tqdm:
    """A tqdm bar (``options`` as tqdm's) that appears after ``DELAY`` seconds, unless hidden."""
    return tqdm(delay=DELAY, disable=not enabled(show), **options)


def say(line: str, show: bool = True) -> None:
    """One line on standard error (a fit's summary, a ladder rung's result)."""
    if enabled(show):
        print(line, file=sys.stderr, flush=True)

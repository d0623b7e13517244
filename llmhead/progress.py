"""What llmhead shows while it works: progress bars and one-line messages on standard error.

Every phase that can run for more than a couple of seconds shows a bar; a bar appears only once its phase has run
for ``DELAY`` seconds, so predicting a few texts prints nothing. ``progress=False`` (a fit's, the ladder's) turns
them off for that call; ``LLMHEAD_QUIET=1`` in the environment turns off every bar and message of the process.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

DELAY = 2.0  # seconds a phase runs before its bar appears


def quiet() -> bool:
    return os.environ.get("LLMHEAD_QUIET", "").strip().lower() in ("1", "true", "yes", "on")


def bar(show: bool = True, **options) -> tqdm:
    """A tqdm bar (``options`` as tqdm's) that appears after ``DELAY`` seconds, unless hidden."""
    return tqdm(delay=DELAY, disable=not show or quiet(), **options)


def say(line: str, show: bool = True) -> None:
    """One line on standard error (a fit's summary, a ladder rung's result)."""
    if show and not quiet():
        print(line, file=sys.stderr, flush=True)

"""Loads without expected noise: llmhead loads a base model (no LM head) from causal-LM checkpoints and cuts blocks
with ``layer=k``, so the checkpoint always holds weights the model does not use. transformers reports those in a
"LOAD REPORT" table, once per load and rank, and draws a "Loading weights" bar. Inside ``expected_load()`` a report
that lists only UNEXPECTED keys is dropped (a MISSING or MISMATCHED key is still reported: it would mean weights left
at random), and transformers' bars appear only after ``progress.DELAY`` seconds, as llmhead's own do (through
transformers' public tqdm hook, chained to any hook already set). Both are put back after; the hub's download bars
and the user's bar settings are never touched."""

from __future__ import annotations

import contextlib
import logging
import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOGGER = "transformers.modeling_utils"


class _UnexpectedOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", str(record.msg))
        if "LOAD REPORT" not in message:
            return True
        statuses = {cells[1].strip() for line in message.splitlines() if len(cells := line.split("|")) > 2}
        statuses = {s for s in statuses if s and s != "Status" and not set(s) <= {"-", "+"}}  # header, rules
        return statuses != {"UNEXPECTED"}


@contextlib.contextmanager
def expected_load():
    from transformers.utils import logging as hf_logging

    from llmhead import progress

    logger, drop = logging.getLogger(_LOGGER), _UnexpectedOnly()
    previous = None

    def delayed(factory, args, kwargs):
        kwargs = {**kwargs, "delay": max(kwargs.get("delay", 0), progress.DELAY)}
        kwargs["disable"] = kwargs.get("disable", False) or not progress.enabled()
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    logger.addFilter(drop)
    previous = hf_logging.set_tqdm_hook(delayed)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)
        logger.removeFilter(drop)

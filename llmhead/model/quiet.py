"""Loads without expected noise: llmhead loads a base model (no LM head) from causal-LM checkpoints and cuts blocks
with ``layer=k``, so the checkpoint always holds weights the model does not use. transformers reports those in a
"LOAD REPORT" table, once per load and rank, and draws a "Loading weights" bar. Inside ``expected_load()`` a report
that lists only UNEXPECTED keys is dropped (a MISSING or MISMATCHED key is still reported: it would mean weights
left at random), and transformers' bars are off; both are put back as they were after."""

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
        statuses -= {"Status", ""}  # the header; separator lines hold dashes only
        statuses = {s for s in statuses if not set(s) <= {"-", "+"}}
        return statuses != {"UNEXPECTED"}


@contextlib.contextmanager
def expected_load():
    from transformers.utils import logging as hf_logging

    logger, drop = logging.getLogger(_LOGGER), _UnexpectedOnly()
    bars = hf_logging.is_progress_bar_enabled()
    logger.addFilter(drop)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.removeFilter(drop)
        if bars:
            hf_logging.enable_progress_bar()

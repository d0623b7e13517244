"""One place that makes the ``Accelerator``, and puts accelerate's process-wide state back afterwards.

accelerate keeps its settings in process-wide singletons (``AcceleratorState``, ``GradientState``) and refuses a
second ``Accelerator`` with another precision. A fit may need another precision than the last one, or than the
caller's own ``Accelerator``; accelerate 1.x has no public way to start over, so the state is saved, reset (the
process group, ``PartialState``, is kept) and, when the fit returns, put back as it was, so the caller's own
accelerate objects keep working.

llmhead's options, not the environment, decide how training computes. accelerate reads
``ACCELERATE_MIXED_PRECISION`` when ``mixed_precision`` is not passed, and
``ACCELERATE_GRADIENT_ACCUMULATION_STEPS`` even when ``gradient_accumulation_steps`` is (``accelerate launch
--mixed_precision bf16`` sets the first): either would silently change a run. So the precision is always passed,
and the accumulation goes in as a ``GradientAccumulationPlugin``, which accelerate takes as it is.
"""

from __future__ import annotations

import contextlib

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import GradientAccumulationPlugin


@contextlib.contextmanager
def accelerator_scope(mixed_precision: str = "no", gradient_accumulation_steps: int = 1, **kwargs):
    """A fresh ``Accelerator`` inside; accelerate's singletons as they were after."""
    saved = [(cls, dict(cls._shared_state)) for cls in (AcceleratorState, GradientState)]
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    kwargs.setdefault("cpu", not torch.cuda.is_available())
    try:
        yield Accelerator(
            mixed_precision=mixed_precision,
            gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=gradient_accumulation_steps),
            **kwargs,
        )
    finally:
        for cls, state in saved:
            cls._shared_state.clear()
            cls._shared_state.update(state)

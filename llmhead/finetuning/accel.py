"""One place that makes the ``Accelerator``.

accelerate keeps its settings in process-wide singletons; a second ``fit`` in the same process (or a
head warm start before LoRA) may ask for another precision, so the settings are reset while the process
group (``PartialState``, the distributed part) is kept.

llmhead's options, not the environment, decide how training computes. accelerate reads
``ACCELERATE_MIXED_PRECISION`` when ``mixed_precision`` is not passed, and
``ACCELERATE_GRADIENT_ACCUMULATION_STEPS`` even when ``gradient_accumulation_steps`` is (``accelerate launch
--mixed_precision bf16`` sets the first): either would silently change a run. So the precision is always passed
(default ``"no"``: float32), and the accumulation goes in as a ``GradientAccumulationPlugin``, which accelerate
takes as it is. Nothing is refused: the variables are simply not read.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import GradientAccumulationPlugin


def make_accelerator(mixed_precision: str = "no", gradient_accumulation_steps: int = 1, **kwargs) -> Accelerator:
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    kwargs.setdefault("cpu", not torch.cuda.is_available())
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=gradient_accumulation_steps),
        **kwargs,
    )

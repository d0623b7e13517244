"""One place that makes the ``Accelerator``.

accelerate keeps its settings in process-wide singletons; a second ``fit`` in the same process (or a
head warm start before LoRA) may ask for another precision, so the settings are reset while the process
group (``PartialState``, the distributed part) is kept.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState


def make_accelerator(**kwargs) -> Accelerator:
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    kwargs.setdefault("cpu", not torch.cuda.is_available())
    return Accelerator(**kwargs)

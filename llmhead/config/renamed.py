"""Names of earlier versions. A config that still uses one is refused with an error naming what replaced it;
``upgrade`` reads options written under the old names (a saved model's manifest, a run's recorded settings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmhead.config.usage import FINE_TUNING, LINEAR, POOLED

# class name -> {old key: what to use instead}
RENAMED: dict[str, dict[str, str]] = {
    "ModelConfig": {
        "short_attention": "speedups (a list of the CPU speed-ups in use; short_attention=false is "
        "speedups=['mapped_load'])",
    },
    "TrainConfig": {
        "precision": "mixed_precision (the training autocast: auto, no, bf16 or fp16; dtype is the weights' dtype)",
    },
}
# option -> {old value: new value}
RENAMED_VALUES: dict[str, dict[str, str]] = {
    "head_init": {"verbalizer": "lmhead"},  # the same idea as mode='lmhead': the LM head's rows of the label words
}


def renamed_key(cls, key) -> str | None:
    """What replaced ``key`` of ``cls`` (or of a class it derives from), or None."""
    for klass in cls.__mro__:
        if isinstance(key, str) and key in RENAMED.get(klass.__name__, {}):
            return RENAMED[klass.__name__][key]
    return None


def renamed_value(name: str, value) -> str | None:
    """The problem with an old value of option ``name``, or None."""
    new = RENAMED_VALUES.get(name, {}).get(value) if isinstance(value, str) else None
    return None if new is None else f"{name}={value!r} was renamed: use {name}={new!r}"


def upgrade(cls, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (fields of ``cls``, written by an earlier version) under today's names, meaning the same."""
    out, names = dict(values), {klass.__name__ for klass in cls.__mro__}
    if "TrainConfig" in names and "precision" in out:
        out.setdefault("mixed_precision", out.pop("precision"))
    if "ModelConfig" not in names:
        return out
    if isinstance(out.get("speedups"), list):  # speed-ups removed since (no measured gain) are dropped
        out["speedups"] = [s for s in out["speedups"] if s not in ("fused_norms", "last_token_mlp")]
    if "short_attention" in out:
        on = out.pop("short_attention")
        if not on and "speedups" not in out:
            out["speedups"] = ["mapped_load"]
    for name, renames in RENAMED_VALUES.items():
        if isinstance(out.get(name), str) and out[name] in renames:
            out[name] = renames[out[name]]
    if out.get("probe") == "ridge" and out.get("probe_c") is not None and out.get("probe_alpha") is None:
        out["probe_alpha"], out["probe_c"] = out["probe_c"], None  # probe_c was ridge's alpha too
    # A frozen backbone's pooled vectors (modes head, probe, hybrid) were the final output's where layer was None;
    # today None means 3/4 of the depth (ModelConfig.FROZEN_FEATURES), and saves since name their layer
    pooled = out.get("mode") in POOLED and out.get("head_init") != "lmhead"
    if pooled and out.get("layer") is None and out.get("layers") is None:
        out["layer"] = -1
    # freeze_blocks was 0 in every save; today its default is None (the mode's: FULL_FROZEN for full), and a mode
    # that never reads it refuses any other value. A full or LoRA model keeps the 0 it was trained with.
    if out.get("mode") not in FINE_TUNING and out.get("freeze_blocks") == 0:
        out["freeze_blocks"] = None
    # probe was "logreg" in every save; today None (the task's linear model), refused by modes without one
    if out.get("mode") not in LINEAR and out.get("probe") == "logreg":
        out["probe"] = None
    # Fine-tuned heads read the last token where pooling was unnamed; today they read last+mean (FINETUNED_FEATURES)
    if out.get("mode") in FINE_TUNING and out.get("pooling") is None:
        out["pooling"] = "last"
    return out

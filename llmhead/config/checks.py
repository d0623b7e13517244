"""Small checks that the option validators share, and the error that carries their problems."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_layer(value) -> bool:
    """A block (a non-zero int; negative counts from the top) or a fraction of the depth in (0, 1)."""
    return (is_int(value) and value != 0) or (isinstance(value, float) and 0 < value < 1)


def is_number(value) -> bool:
    """A finite int or float; not a bool (True is an int to Python), not a string such as '1e-3'."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_str_list(value, allow_empty: bool = True) -> bool:
    return (
        isinstance(value, (list, tuple))
        and (allow_empty or len(value) > 0)
        and all(isinstance(v, str) and v for v in value)
    )


def is_path(value) -> bool:
    return (isinstance(value, str) and value.strip() != "") or isinstance(value, os.PathLike)


def choice(problems: list[str], config, name: str, allowed) -> None:
    """``allowed``: a tuple, shown as a tuple, or a list, shown as a list."""
    value = getattr(config, name)
    if not (isinstance(value, str) and value in allowed):  # a str check first: a list is not hashable
        choices = allowed if isinstance(allowed, list) else tuple(allowed)
        problems.append(f"{name} must be one of {choices}, got {value!r}")


def defaults(cls) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return out


def same(a, b) -> bool:
    if is_number(a) and is_number(b):
        return a == b  # lora_alpha=32.0 is the default 32
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # objects whose == is not a bool (arrays, ...) differ from a plain default
        return False


def changed(config, names) -> list[str]:
    """Those of ``names`` whose value in ``config`` differs from the field's default."""
    base = defaults(type(config))
    return [name for name in names if not same(getattr(config, name), base[name])]


def invalid(problems: list[str]) -> ValueError:
    """The error for configuration ``problems``: one line for one problem, a list for several."""
    if len(problems) == 1:
        return ValueError(f"invalid configuration: {problems[0]}")
    return ValueError("invalid configuration:\n  - " + "\n  - ".join(problems))

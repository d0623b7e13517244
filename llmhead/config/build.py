"""``build``: a config from a mapping (YAML sections, keyword options), with unknown and renamed keys named."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from llmhead.config.checks import invalid
from llmhead.config.renamed import renamed_key


def _unknown_key(cls, key, where: str, section: str, names: list[str]) -> str:
    new = renamed_key(cls, key)  # a key of an earlier version: the error names the one that replaced it
    if new is not None:
        return f"'{where}{key}' was renamed: use {new}"
    if not isinstance(key, str):
        return f"key {where}{key!r} in {section} is not a name: valid keys: {', '.join(names)}"
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"valid keys: {', '.join(names)}"
    return f"unknown key '{where}{key}': {hint}"


def build(cls, values: Mapping[str, Any], where: str = ""):
    """``cls(**values)``, but a section that is not a mapping is refused, a renamed key fails naming the key that
    replaced it (RENAMED) and other unknown keys fail with the nearest valid names."""
    section = f"the {where.rstrip('.')} section" if where else "the configuration"
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise invalid([f"{section} must be a mapping of key: value, got {values!r}"])
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise invalid([_unknown_key(cls, key, where, section, names) for key in unknown])
    try:
        return cls(**values)
    except ValueError as exc:
        if not where:
            raise
        message = str(exc).replace("invalid configuration", f"invalid configuration in {where.rstrip('.')}", 1)
        raise ValueError(message) from None

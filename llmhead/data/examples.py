"""The one data object: texts and raw labels (and groups) read and checked once, which splits, folds, augmentation
and ladder rungs index into instead of reading the data again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llmhead.data import DataError, distinct_roles, read_raw_labels, read_table, read_texts, require_columns


@dataclass
class Examples:
    texts: list[str]  # model inputs before the template (the two texts of a pair joined)
    raw: list  # labels as written: class names, lists of names (multilabel) or numbers (regression)
    origin: str  # where they came from, for messages: a file and the part of it
    groups: list | None = None  # a group per example (cross-validation keeps a group in one fold)

    @classmethod
    def read(
        cls, data: Any, text, label, task: str, separator: str = "\n", role: str = "train", group: str | None = None
    ) -> Examples:
        """``data`` (a file, a table, a datasets object...) read and checked, or ``data`` itself if it is Examples."""
        if isinstance(data, Examples):
            return data
        distinct_roles(text, label)
        table = read_table(data, role)
        texts = read_texts(table, text, "{text}", separator, empty_ok=role == "test")  # evaluate predicts them
        raw = read_raw_labels(table, label, task)
        groups = None
        if group is not None:
            require_columns(table, [group], "group")
            groups = table.columns[group]
            missing = [i + 1 for i, g in enumerate(groups) if g is None or (isinstance(g, float) and np.isnan(g))]
            if missing:
                raise DataError(f"{table.origin}: column {group!r} has no group in row(s) {missing[:10]}")
        return cls(texts, raw, table.origin, groups)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index, what: str) -> Examples:
        """The examples at ``index`` (0-based), described as ``what`` of these."""
        index = [int(i) for i in index]
        groups = [self.groups[i] for i in index] if self.groups is not None else None
        return Examples([self.texts[i] for i in index], [self.raw[i] for i in index], f"{self.origin} ({what})", groups)

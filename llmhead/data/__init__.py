"""Data: tables read from files or objects and checked (read.py), labels (labels.py), augmentation (augment.py),
the packaged corpora (corpora.py)."""

from llmhead.data.read import (
    MAX_REPORTED,
    DataError,
    NotATableError,
    Table,
    fold_label,
    read_inputs,
    read_raw_labels,
    read_table,
    read_texts,
    require_columns,
    suspicious_labels,
)

__all__ = [
    "MAX_REPORTED",
    "DataError",
    "NotATableError",
    "Table",
    "fold_label",
    "read_inputs",
    "read_raw_labels",
    "read_table",
    "read_texts",
    "require_columns",
    "suspicious_labels",
]

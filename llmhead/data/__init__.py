"""Data: tables read from files or objects and checked, labels (labels.py), augmentation (augment.py), the packaged
corpora (corpora.py).

    base.py     DataError, Table and how problems are reported
    files.py    csv / tsv / jsonl / json / parquet files, UTF-8 decoding
    tables.py   read_table: files, datasets, DataFrames, lists of dicts, dicts of lists
    columns.py  the checked columns: read_texts, read_inputs (what predict takes), read_raw_labels
"""

from llmhead.data.base import MAX_REPORTED, DataError, NotATableError, Table
from llmhead.data.columns import (
    distinct_roles,
    fold_label,
    read_inputs,
    read_raw_labels,
    read_texts,
    require_columns,
    suspicious_labels,
)
from llmhead.data.tables import read_table

__all__ = [
    "MAX_REPORTED",
    "DataError",
    "NotATableError",
    "Table",
    "distinct_roles",
    "fold_label",
    "read_inputs",
    "read_raw_labels",
    "read_table",
    "read_texts",
    "require_columns",
    "suspicious_labels",
]

"""``read_table``: the columns of a data file, a ``datasets.Dataset`` or ``DatasetDict``, a pandas DataFrame, a list
of dicts or a dict of lists. Nothing is dropped or guessed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmhead.data.base import MISSING, DataError, Table, duplicates, from_columns, names
from llmhead.data.files import read_file

_LISTS = ("Sequence", "List", "LargeList")


def read_table(source: Any, role: str = "train") -> Table:
    """Turn ``source`` into columns; ``role`` picks the split of a DatasetDict (train/eval/test)."""
    if isinstance(source, Table):
        return source
    if isinstance(source, (str, os.PathLike)):
        return read_file(Path(source))
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        datasets = None
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        split = _pick_split(source, role)
        return _from_dataset(source[split], f"DatasetDict split {split!r}")
    if datasets is not None and isinstance(source, datasets.Dataset):
        return _from_dataset(source, "Dataset")
    if type(source).__name__ == "DataFrame" and hasattr(source, "to_dict"):
        return _from_frame(source)
    if isinstance(source, dict):
        return from_columns(source, "dict of lists")
    if isinstance(source, (list, tuple)):
        return _from_rows(source, role)
    raise DataError(
        f"{role} data: unsupported source type {type(source).__name__}; pass a path (.csv .tsv .jsonl .json "
        ".parquet), a datasets.Dataset or DatasetDict, a pandas DataFrame, a list of dicts or a dict of lists"
    )


def _from_rows(source: list | tuple, role: str) -> Table:
    """A list of dicts, one per example; a key a row lacks is a missing value there."""
    if not source:
        raise DataError(f"{role} data is empty: got an empty list")
    if all(isinstance(row, dict) for row in source):
        keys: dict[str, None] = {}
        for i, row in enumerate(source):
            row_keys = [str(k) for k in row]
            twice = duplicates(row_keys)
            if twice:
                raise DataError(f"list of dicts: row {i + 1} has keys that read the same: {names(twice)}")
            keys.update(dict.fromkeys(row_keys))
        rows = [{str(k): v for k, v in row.items()} for row in source]
        return Table({k: [row.get(k, MISSING) for row in rows] for k in keys}, "list of dicts")
    bad = next(i for i, row in enumerate(source) if not isinstance(row, dict))
    raise DataError(
        f"{role} data: a list must hold one dict per example (e.g. {{'text': ..., 'label': ...}}); "
        f"row {bad + 1} is a {type(source[bad]).__name__}"
    )


def _from_dataset(ds, origin: str) -> Table:
    """A Dataset's columns, with ClassLabel ids (also inside a list, for multilabel) turned into their names."""
    if ds.num_rows == 0 or not ds.column_names:
        raise DataError(f"{origin} has no rows")
    columns = ds.to_dict()
    for name, feature in ds.features.items():
        classes = _class_label(feature)
        inner = _class_label(getattr(feature, "feature", None)) if type(feature).__name__ in _LISTS else None
        if classes is not None:
            columns[name] = [_class_name(classes, v, origin, name, i) for i, v in enumerate(columns[name])]
        elif inner is not None:
            columns[name] = [
                None if row is None else [_class_name(inner, v, origin, name, i) for v in row]
                for i, row in enumerate(columns[name])
            ]
    return Table(columns, origin)


def _class_label(feature):
    return feature if type(feature).__name__ == "ClassLabel" and getattr(feature, "names", None) else None


def _class_name(feature, value, origin: str, column: str, i: int):
    if value is None or value == -1:  # -1 is datasets' "no label"
        return None
    if isinstance(value, int) and 0 <= value < len(feature.names):
        return feature.names[value]
    raise DataError(
        f"{origin}: row {i + 1}, column {column!r}: class id {value!r} is not in its ClassLabel "
        f"(0..{len(feature.names) - 1})"
    )


def _from_frame(frame) -> Table:
    columns = [str(c) for c in frame.columns]
    twice = duplicates(columns)
    if twice:
        raise DataError(f"DataFrame: column(s) {names(twice)} appear more than once; column names must be unique")
    if len(frame) == 0 or not columns:
        raise DataError(f"DataFrame has no rows (shape {tuple(frame.shape)})")
    frame = frame.reset_index(drop=True)
    return Table({name: frame.iloc[:, j].tolist() for j, name in enumerate(columns)}, "DataFrame")


def _pick_split(dd, role: str) -> str:
    wanted = {"train": ("train",), "eval": ("validation", "valid", "dev", "eval"), "test": ("test",)}[role]
    for name in wanted:
        if name in dd:
            return name
    raise DataError(
        f"DatasetDict has splits {list(dd)} but none for {role} (looked for {list(wanted)}); pass dd[split]"
    )

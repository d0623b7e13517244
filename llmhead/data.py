"""Read examples from what users have and check them before any model loads.

Sources: a CSV/TSV/JSONL/JSON/Parquet path, a ``datasets.Dataset`` or ``DatasetDict``, a pandas
DataFrame, a list of dicts or a dict of lists. Every problem is reported with the source, the row
(numbered from 1, not counting a header line) and the column; nothing is dropped or guessed.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
MAX_REPORTED = 10


class DataError(ValueError):
    """Bad input data. The message names the source, rows, columns and what was expected."""


@dataclass
class Table:
    columns: dict[str, list]  # column name -> values, all the same length
    origin: str  # for messages: a file path or a description

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def rows(self, index, what: str) -> Table:
        """The rows ``index`` (0-based), as a table described as ``what`` of this one."""
        return Table({k: [v[i] for i in index] for k, v in self.columns.items()}, f"{self.origin} ({what})")


_MISSING = object()  # a key absent from one dict of a list of dicts


def read_table(source: Any, role: str = "train") -> Table:
    """Turn ``source`` into columns; ``role`` picks the split of a DatasetDict (train/eval/test)."""
    if isinstance(source, Table):
        return source
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source))
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        datasets = None
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        split = _pick_split(source, role)
        return Table(source[split].to_dict(), f"DatasetDict split {split!r}")
    if datasets is not None and isinstance(source, datasets.Dataset):
        return Table(source.to_dict(), "Dataset")
    if type(source).__name__ == "DataFrame" and hasattr(source, "to_dict"):
        frame = source.reset_index(drop=True)
        return Table({str(c): frame[c].tolist() for c in frame.columns}, "DataFrame")
    if isinstance(source, dict):
        lengths = {k: len(v) for k, v in source.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"dict of lists: columns have different lengths {lengths}")
        return Table({str(k): list(v) for k, v in source.items()}, "dict of lists")
    if isinstance(source, (list, tuple)):
        if not source:
            raise DataError(f"{role} data is empty: got an empty list")
        if all(isinstance(row, dict) for row in source):
            keys: dict[str, None] = {}
            for row in source:
                keys.update(dict.fromkeys(map(str, row)))
            return Table({k: [row.get(k, _MISSING) for row in source] for k in keys}, "list of dicts")
        bad = next(i for i, row in enumerate(source) if not isinstance(row, dict))
        raise DataError(
            f"{role} data: a list must hold one dict per example (e.g. {{'text': ..., 'label': ...}}); "
            f"row {bad + 1} is a {type(source[bad]).__name__}"
        )
    raise DataError(
        f"{role} data: unsupported source type {type(source).__name__}; pass a path (.csv .tsv .jsonl .json "
        ".parquet), a datasets.Dataset or DatasetDict, a pandas DataFrame, a list of dicts or a dict of lists"
    )


def _read_file(path: Path) -> Table:
    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected one of {sorted(FILE_FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    import datasets

    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    if suffix in (".csv", ".tsv"):
        # Keep every cell as written: no guessing of types, no "NA" strings turned into missing values.
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f, delimiter=kwargs.get("delimiter", ",")), [])
        features = datasets.Features({name: datasets.Value("string") for name in header})
        kwargs.update(keep_default_na=False, features=features)
    try:
        loaded = datasets.load_dataset(FILE_FORMATS[suffix], data_files=str(path), split="train", **kwargs)
    except Exception as exc:  # the loaders raise many types; all mean the same to the user
        raise DataError(f"{path}: could not be read as {FILE_FORMATS[suffix]}: {exc}") from exc
    columns = loaded.to_dict()
    if suffix in (".csv", ".tsv"):
        columns = {k: [None if v == "" else v for v in vals] for k, vals in columns.items()}
    return Table(columns, str(path))


def _pick_split(dd, role: str) -> str:
    wanted = {"train": ("train",), "eval": ("validation", "valid", "dev", "eval"), "test": ("test",)}[role]
    for name in wanted:
        if name in dd:
            return name
    raise DataError(
        f"DatasetDict has splits {list(dd)} but none for {role} (looked for {list(wanted)}); pass dd[split]"
    )


def require_columns(table: Table, names: list[str], what: str) -> None:
    for name in names:
        if name not in table.columns:
            close = difflib.get_close_matches(name, list(table.columns), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise DataError(
                f"{table.origin}: no {what} column {name!r}{hint} (columns: {', '.join(map(repr, table.columns))})"
            )


def _is_missing(value: Any) -> bool:
    return value is None or value is _MISSING or (isinstance(value, float) and math.isnan(value))


def _report(table: Table, problems: list[str]) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise DataError(
            f"{table.origin}: {len(problems)} problem(s) (rows numbered from 1, header not counted):\n  "
            + "\n  ".join(problems[:MAX_REPORTED])
            + more
        )


def read_texts(table: Table, text: str | tuple[str, str] | list[str], template: str, separator: str) -> list[str]:
    """The model inputs: one column, or a text pair joined by ``separator``, put into ``template``."""
    columns = [text] if isinstance(text, str) else list(text)
    if not 1 <= len(columns) <= 2 or not all(isinstance(c, str) for c in columns):
        raise DataError(f"text must be a column name or a pair of column names, got {text!r}")
    require_columns(table, columns, "text")
    problems = []
    for column in columns:
        for i, value in enumerate(table.columns[column]):
            if _is_missing(value):
                problems.append(f"row {i + 1}, column {column!r}: text is missing")
            elif not isinstance(value, str):
                problems.append(f"row {i + 1}, column {column!r}: expected text, got {type(value).__name__} {value!r}")
            elif not value.strip():
                problems.append(f"row {i + 1}, column {column!r}: text is empty")
    _report(table, problems)
    parts = [table.columns[c] for c in columns]
    joined = parts[0] if len(parts) == 1 else [a + separator + b for a, b in zip(*parts)]
    return [template.replace("{text}", t) for t in joined]


def read_raw_labels(table: Table, label: str | list[str], task: str) -> list:
    """Check the label column(s) for ``task`` and return one raw value per row.

    classification: a str/int/bool per row. multilabel: a list of names per row (one column) or one
    0/1 column per label. regression: a finite number per row, or a list of them (one column per target).
    """
    columns = [label] if isinstance(label, str) else list(label)
    if not columns or not all(isinstance(c, str) for c in columns):
        raise DataError(f"label must be a column name or a list of column names, got {label!r}")
    require_columns(table, columns, "label")
    if len(columns) > 1 and task == "classification":
        raise DataError(f"task='classification' takes one label column, got {columns}; use task='multilabel'")
    problems: list[str] = []
    rows: list = []
    n = len(table)
    for i in range(n):
        values = [table.columns[c][i] for c in columns]
        where = f"row {i + 1}, column {columns[0]!r}" if len(columns) == 1 else f"row {i + 1}"
        error = None
        for c, v in zip(columns, values):
            if _is_missing(v):
                error = f"row {i + 1}, column {c!r}: label is missing"
                break
        if error is None:
            if task == "classification":
                error, value = _class_label(values[0], where)
            elif task == "multilabel":
                error, value = _multilabel(values, columns, where)
            else:
                error, value = _targets(values, columns, i)
        if error:
            problems.append(error)
        else:
            rows.append(value)
    _report(table, problems)
    if task == "classification":
        kinds = {type(v).__name__ for v in rows}
        if len(kinds) > 1:
            raise DataError(f"{table.origin}, column {columns[0]!r}: labels mix types {sorted(kinds)}; use one type")
    return rows


def _class_label(value, where):
    if isinstance(value, str):
        return (f"{where}: label is empty", None) if not value.strip() else (None, value)
    if isinstance(value, (bool, int)):
        return None, value
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _class_label(value.item(), where)
    return f"{where}: expected a class label (string or integer), got {type(value).__name__} {value!r}" + (
        "; for numeric targets use task='regression'" if isinstance(value, float) else ""
    ), None


def _multilabel(values, columns, where):
    if len(columns) == 1:
        value = values[0]
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int)) for v in value):
            return f"{where}: expected a list of label names, got {type(value).__name__} {value!r}", None
        return None, list(value)
    for c, v in zip(columns, values):
        if v not in (0, 1, True, False, "0", "1"):
            return f"{where}, column {c!r}: expected 0 or 1, got {v!r}", None
    return None, [c for c, v in zip(columns, values) if v in (1, True, "1")]


def _targets(values, columns, i):
    out = []
    for c, v in zip(columns, values):
        if isinstance(v, str):
            try:
                v = float(v)  # CSV cells are read as text; a number written as text is still a number
            except ValueError:
                return f"row {i + 1}, column {c!r}: expected a number, got {v!r}", None
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
            return f"row {i + 1}, column {c!r}: expected a number, got {type(v).__name__} {v!r}", None
        v = float(v)
        if not math.isfinite(v):
            return f"row {i + 1}, column {c!r}: expected a finite number, got {v}", None
        out.append(v)
    return None, out

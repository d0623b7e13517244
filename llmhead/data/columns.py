"""The columns a model reads, checked: texts (a column or a text pair, or a plain list of texts for ``predict``) and
labels for a task. Every problem is reported with the source, the row (numbered from 1, not counting a header line)
and the column, all at once."""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any

from llmhead.data.base import MAX_REPORTED, MISSING, DataError, NotATableError, Table, fail, preview
from llmhead.data.files import FILE_FORMATS
from llmhead.data.tables import read_table


def require_columns(table: Table, names: list[str], what: str) -> None:
    for name in names:
        if name not in table.columns:
            close = difflib.get_close_matches(name, list(table.columns), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise DataError(
                f"{table.origin}: no {what} column {name!r}{hint} (columns: {', '.join(map(repr, table.columns))})"
            )


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or value is MISSING
        or (isinstance(value, float) and math.isnan(value))
        or type(value).__name__ in ("NAType", "NaTType")  # pandas' missing values
    )


def _report(table: Table, problems: list[tuple[int, str]]) -> None:
    """``problems``: (0-based row, message); a row read from a text file also gets its line."""
    lines = table.lines
    fail(table.origin, [m + (f" (line {lines[i]})" if lines and i < len(lines) else "") for i, m in problems])


def column_names(value) -> list:
    """A column option as a list: one name, or a list / tuple of them (anything else stays one entry, for the
    reader's type check to name)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def distinct_roles(text, label) -> None:
    """A column is a text or a label, not both: a label among the inputs would be learned from itself."""
    labels = column_names(label)
    both = [c for c in column_names(text) if c in labels]
    if both:
        raise DataError(
            f"column {both[0]!r} is both a text and a label column: the model would read its own label; "
            "name different columns"
        )


def read_texts(
    table: Table,
    text: str | tuple[str, str] | list[str],
    template: str,
    separator: str,
    empty_ok: bool = False,
    first_row: int = 1,
) -> list[str]:
    """The model inputs: one column, or a text pair joined by ``separator``, put into ``template``. ``empty_ok``
    (prediction): an empty text is a text to predict; in training data it is a problem. ``first_row``: the number
    of the table's first row in its source (a chunk of a file streamed in parts)."""
    columns = column_names(text)
    if not 1 <= len(columns) <= 2 or not all(isinstance(c, str) for c in columns):
        raise DataError(f"text must be a column name or a pair of column names, got {preview(text)}")
    if len(columns) == 2 and columns[0] == columns[1]:
        raise DataError(f"the text pair names column {columns[0]!r} twice; a pair is two different columns")
    require_columns(table, columns, "text")
    problems = []
    for column in columns:
        for i, value in enumerate(table.columns[column]):
            if _is_missing(value):
                problems.append((i, f"row {i + first_row}, column {column!r}: text is missing"))
            elif not isinstance(value, str):
                got = f"{type(value).__name__} {preview(value)}"
                problems.append((i, f"row {i + first_row}, column {column!r}: expected text, got {got}"))
            elif not value.strip() and not empty_ok:
                problems.append((i, f"row {i + first_row}, column {column!r}: text is empty"))
    _report(table, sorted(problems, key=lambda p: p[0]) if len(columns) > 1 else problems)
    parts = [table.columns[c] for c in columns]
    joined = parts[0] if len(parts) == 1 else [a + separator + b for a, b in zip(*parts)]
    return [template.replace("{text}", t) for t in joined]


def _no_rows(data: Any) -> bool:
    """An in-memory table with columns but no rows (an empty file stays an error: usually a wrong path)."""
    if isinstance(data, dict):
        return bool(data) and all(hasattr(v, "__len__") and len(v) == 0 for v in data.values())
    kind = type(data).__name__
    return kind in ("DataFrame", "Dataset") and hasattr(data, "__len__") and len(data) == 0


def read_inputs(
    data: Any, text: str | tuple[str, str] | list[str], role: str, template: str, separator: str
) -> list[str]:
    """What ``predict`` takes, as model inputs: a list (or tuple, pandas Series, 1-D array) of texts, a list of
    dicts, a file path or any table ``read_table`` reads. ``text`` names the column(s) of a table; a list of
    texts is the texts themselves. An empty list gives no inputs; an empty text is predicted like any other (put
    into the template); a missing one (None, NaN) is an error naming its row."""
    if isinstance(data, str) and Path(data).suffix.lower() not in FILE_FORMATS:
        raise NotATableError(
            f"{role} data: got a single string {preview(data)}, which is not a path to a "
            f"{'/'.join(sorted(FILE_FORMATS))} file; predict takes a list of texts (wrap a single text in a list: "
            "[text]) or a data file/table"
        )
    if type(data).__name__ in ("Series", "ndarray") and hasattr(data, "tolist") and getattr(data, "ndim", 0) == 1:
        data = data.tolist()
    if isinstance(data, (list, tuple)) and not data:
        return []
    if not isinstance(data, (str, os.PathLike)) and _no_rows(data):  # a DataFrame, Dataset or dict of empty columns
        return []
    if isinstance(data, (list, tuple)) and not isinstance(data[0], dict):
        origin = "list of texts"
        problems = []
        for i, value in enumerate(data):
            if isinstance(value, str):
                continue
            hint = ""
            if isinstance(value, dict):
                hint = "; a list holds either texts or dicts (one per example), not both"
            elif isinstance(value, (list, tuple)):
                hint = (
                    "; for a text pair pass dicts with the two text columns, e.g. [{'premise': ..., 'hypothesis': ...}]"
                )
            got = "None" if value is None else f"{type(value).__name__} {preview(value)}"
            problems.append(f"row {i + 1}: expected a text (str), got {got}{hint}")
        fail(origin, problems, "rows numbered from 1")
        return [template.replace("{text}", t) for t in data]
    if isinstance(data, (list, tuple)) and data:
        bad = [i for i, row in enumerate(data) if not isinstance(row, dict)]
        fail(
            "list of dicts",
            [f"row {i + 1}: expected a dict (one per example, as in row 1), got {type(data[i]).__name__}" for i in bad],
            "rows numbered from 1",
        )
    return read_texts(read_table(data, role), text, template, separator, empty_ok=True)


def read_raw_labels(table: Table, label: str | list[str], task: str) -> list:
    """Check the label column(s) for ``task`` and return one raw value per row.

    classification: a str/int/bool per row. multilabel: a list of names per row (one column) or one
    0/1 column per label. regression: a finite number per row, or a list of them (one column per target).
    """
    columns = column_names(label)
    if not columns or not all(isinstance(c, str) for c in columns):
        raise DataError(f"label must be a column name or a list of column names, got {preview(label)}")
    require_columns(table, columns, "label")
    if len(columns) > 1 and task == "classification":
        raise DataError(f"task='classification' takes one label column, got {columns}; use task='multilabel'")
    problems: list[tuple[int, str]] = []
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
                error, value = _class_value(values[0], where)
            elif task == "multilabel":
                error, value = _multilabel(values, columns, where)
            else:
                error, value = _targets(values, columns, i)
        if error:
            problems.append((i, error))
        else:
            rows.append(value)
    _report(table, problems)
    if task in ("classification", "multilabel") and len(columns) == 1:
        _one_type(table.origin, columns[0], rows, task)
    return rows


def _one_type(origin: str, column: str, rows: list, task: str) -> None:
    """Label names of one type: 1 and "1" would be two classes that print alike. Names the first row that differs."""
    names = [(i, v) for i, row in enumerate(rows) for v in (row if task == "multilabel" else [row])]
    kinds = {type(v).__name__ for _, v in names}
    if len(kinds) > 1:
        first = type(names[0][1])
        i, odd = next((i, v) for i, v in names if type(v) is not first)
        raise DataError(
            f"{origin}, column {column!r}: labels mix types {sorted(kinds)}: row {i + 1} has {type(odd).__name__} "
            f"{preview(odd)} where row {names[0][0] + 1} has {first.__name__} {preview(names[0][1])}; use one type"
        )


def _class_value(value, where):
    if isinstance(value, str):
        return (f"{where}: label is empty", None) if not value.strip() else (None, value)
    if isinstance(value, (bool, int)):
        return None, value
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _class_value(value.item(), where)
    return f"{where}: expected a class label (string or integer), got {type(value).__name__} {preview(value)}" + (
        "; for numeric targets use task='regression'" if isinstance(value, float) else ""
    ), None


def _multilabel(values, columns, where):
    if len(columns) == 1:
        value = values[0]
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int)) for v in value):
            return f"{where}: expected a list of label names, got {type(value).__name__} {preview(value)}", None
        if any(isinstance(v, str) and not v.strip() for v in value):
            return f"{where}: a label name is empty in {preview(value)}", None
        return None, list(value)
    values = [v.item() if type(v).__module__ == "numpy" and hasattr(v, "item") else v for v in values]
    for c, v in zip(columns, values):
        if not isinstance(v, (bool, int, str)) or v not in (0, 1, True, False, "0", "1"):
            return f"{where}, column {c!r}: expected 0 or 1, got {preview(v)}", None
    return None, [c for c, v in zip(columns, values) if v in (1, True, "1")]


def _targets(values, columns, i):
    out = []
    for c, v in zip(columns, values):
        if isinstance(v, str):
            try:
                v = float(v)  # CSV cells are read as text; a number written as text is still a number
            except ValueError:
                return f"row {i + 1}, column {c!r}: expected a number, got {preview(v)}", None
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
            return f"row {i + 1}, column {c!r}: expected a number, got {type(v).__name__} {preview(v)}", None
        try:
            v = float(v)
        except (TypeError, ValueError, OverflowError):
            return f"row {i + 1}, column {c!r}: expected a number, got {type(v).__name__} {preview(v)}", None
        if not math.isfinite(v):
            return f"row {i + 1}, column {c!r}: expected a finite number, got {v}", None
        out.append(v)
    return None, out


MISSING_WORDS = ("nan", "na", "n/a", "#n/a", "null", "none")  # label cells that read as "no value", any case


def fold_label(name: str) -> str:
    return name.strip().casefold()


def suspicious_labels(names_by_row: list[list]) -> list[str]:
    """String labels that would each silently become a class of their own: ones that differ only by case or
    surrounding spaces (``'pos'``, ``'Pos'``, ``'pos '``) and ones that look like a missing value (``'NA'``)."""
    rows: dict[str, list[int]] = {}
    for i, names in enumerate(names_by_row):
        for name in names:
            if isinstance(name, str):
                numbers = rows.setdefault(name, [])
                if not numbers or numbers[-1] != i + 1:
                    numbers.append(i + 1)
    groups: dict[str, list[str]] = {}
    for name in rows:  # in order of first appearance
        groups.setdefault(fold_label(name), []).append(name)

    def at(name: str) -> str:
        numbers = rows[name]
        listed = ", ".join(map(str, numbers[:MAX_REPORTED]))
        more = f", ... ({len(numbers)} rows)" if len(numbers) > MAX_REPORTED else ""
        return f"row{'s' if len(numbers) > 1 else ''} {listed}{more}"

    problems = []
    for key, spellings in groups.items():
        if len(spellings) > 1:
            described = [f"{name!r} ({at(name)})" for name in spellings]
            problems.append(
                f"labels {', '.join(described[:-1])} and {described[-1]} differ only by case or surrounding spaces"
            )
        if key in MISSING_WORDS:
            problems.extend(f"{at(name)}: label {name!r} looks like a missing value" for name in spellings)
    return problems

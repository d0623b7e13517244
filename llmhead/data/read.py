"""Read examples from what users have and check them before any model loads.

Sources: a CSV/TSV/JSONL/JSON/Parquet path, a ``datasets.Dataset`` or ``DatasetDict``, a pandas
DataFrame, a list of dicts or a dict of lists. Every problem is reported with the source, the row
(numbered from 1, not counting a header line) and the column; nothing is dropped or guessed.

Files are read directly (Python's ``csv`` and ``json`` modules, pyarrow for Parquet), every time:
no cache, so a file edited in place is read as it is now.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
MAX_REPORTED = 10


class DataError(ValueError):
    """Bad input data. The message names the source, rows, columns and what was expected."""


class NotATableError(DataError, TypeError):
    """A bare string given where a list of texts or a data file is expected (also a TypeError, as it used to be)."""


@dataclass
class Table:
    columns: dict[str, list]  # column name -> values, all the same length
    origin: str  # for messages: a file path or a description
    lines: list[int] | None = None  # for a text file, the line each row starts on (1-based)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def rows(self, index, what: str) -> Table:
        """The rows ``index`` (0-based), as a table described as ``what`` of this one."""
        index = list(index)
        lines = [self.lines[i] for i in index] if self.lines else None
        return Table({k: [v[i] for i in index] for k, v in self.columns.items()}, f"{self.origin} ({what})", lines)


_MISSING = object()  # a key absent from one dict of a list of dicts


def _preview(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened, and never raising (any object may reach a message)."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real problem
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(names) -> str:
    return ", ".join(_preview(n) for n in names)


def _duplicates(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    return [name for name, count in seen.items() if count > 1]


def _fail(origin: str, problems: list[str], numbering: str = "rows numbered from 1, header not counted") -> None:
    if problems:
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise DataError(
            f"{origin}: {len(problems)} problem(s) ({numbering}):\n  " + "\n  ".join(problems[:MAX_REPORTED]) + more
        )


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
        return _from_dataset(source[split], f"DatasetDict split {split!r}")
    if datasets is not None and isinstance(source, datasets.Dataset):
        return _from_dataset(source, "Dataset")
    if type(source).__name__ == "DataFrame" and hasattr(source, "to_dict"):
        return _from_frame(source)
    if isinstance(source, dict):
        return _from_columns(source, "dict of lists")
    if isinstance(source, (list, tuple)):
        if not source:
            raise DataError(f"{role} data is empty: got an empty list")
        if all(isinstance(row, dict) for row in source):
            keys: dict[str, None] = {}
            for i, row in enumerate(source):
                names = [str(k) for k in row]
                twice = _duplicates(names)
                if twice:
                    raise DataError(f"list of dicts: row {i + 1} has keys that read the same: {_names(twice)}")
                keys.update(dict.fromkeys(names))
            rows = [{str(k): v for k, v in row.items()} for row in source]
            return Table({k: [row.get(k, _MISSING) for row in rows] for k in keys}, "list of dicts")
        bad = next(i for i, row in enumerate(source) if not isinstance(row, dict))
        raise DataError(
            f"{role} data: a list must hold one dict per example (e.g. {{'text': ..., 'label': ...}}); "
            f"row {bad + 1} is a {type(source[bad]).__name__}"
        )
    raise DataError(
        f"{role} data: unsupported source type {type(source).__name__}; pass a path (.csv .tsv .jsonl .json "
        ".parquet), a datasets.Dataset or DatasetDict, a pandas DataFrame, a list of dicts or a dict of lists"
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


_LISTS = ("Sequence", "List", "LargeList")


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
    names = [str(c) for c in frame.columns]
    twice = _duplicates(names)
    if twice:
        raise DataError(f"DataFrame: column(s) {_names(twice)} appear more than once; column names must be unique")
    if len(frame) == 0 or not names:
        raise DataError(f"DataFrame has no rows (shape {tuple(frame.shape)})")
    frame = frame.reset_index(drop=True)
    return Table({name: frame.iloc[:, j].tolist() for j, name in enumerate(names)}, "DataFrame")


def _from_columns(source: dict, origin: str) -> Table:
    if not source:
        raise DataError(f"{origin} is empty: no columns")
    names = [str(k) for k in source]
    twice = _duplicates(names)
    if twice:
        raise DataError(f"{origin}: keys that read the same: {_names(twice)}")
    columns = {}
    for name, values in zip(names, source.values()):
        if hasattr(values, "tolist") and getattr(values, "ndim", 1) == 1:
            values = values.tolist()  # numpy array, pandas Series
        if not isinstance(values, (list, tuple)):
            raise DataError(
                f"{origin}: column {name!r} is a {type(values).__name__}, not a list of values "
                f"(for one example, write {{{name!r}: [...]}})"
            )
        columns[name] = list(values)
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{origin}: columns have different lengths {lengths}")
    if not next(iter(lengths.values())):
        raise DataError(f"{origin} has no rows: every column is empty")
    return Table(columns, origin)


def _read_file(path: Path) -> Table:
    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected one of {sorted(FILE_FORMATS)}")
    try:
        if path.is_dir():
            raise DataError(f"{path} is a directory, not a file")
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        if suffix == ".parquet":
            return _read_parquet(path)
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: could not be read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # e.g. a NUL character in the path
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a usable path: {exc}") from exc
    text = _decode(data, path)
    if not text.strip():
        raise DataError(f"{path} is empty")
    if suffix in (".csv", ".tsv"):
        return _read_csv(text, path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".jsonl":
        return _read_jsonl(text, path)
    return _read_json(text, path)


def _decode(data: bytes, path: Path) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(
            f"{path}: the file is UTF-16 encoded (it starts with a UTF-16 byte order mark); save it as UTF-8"
        )
    skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # a byte order mark is not part of the first column's name
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start + skip
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise DataError(
            f"{path}: line {line}, byte offset {start} (byte {column} of the line): byte 0x{data[start]:02x} is not "
            "valid UTF-8; the file must be UTF-8 encoded (re-save it as UTF-8, e.g. from Latin-1 or Windows-1252)"
        ) from None


def _read_csv(text: str, path: Path, delimiter: str) -> Table:
    """Every cell as written, as a string; an empty cell is a missing value (None). Blank lines are skipped."""
    name = "tab" if delimiter == "\t" else "','"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, 2**31 - 1))  # a long document is a text, not an error
    try:
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                where = f"line {start}" if reader.line_num <= start else f"lines {start}-{reader.line_num}"
                raise DataError(
                    f"{path}: {where}: not valid CSV: {exc} (a cell that starts with a quote must end with a quote; "
                    'write a quote inside a quoted cell as "")'
                ) from None
            if record:  # a blank line holds no example
                records.append((start, record))
    finally:
        csv.field_size_limit(limit)
    if not records:
        raise DataError(f"{path} is empty")
    (header_line, header), body = records[0], records[1:]
    unnamed = [j + 1 for j, h in enumerate(header) if not h.strip()]
    if unnamed:
        raise DataError(
            f"{path}: line {header_line}: the header has no name for column(s) {unnamed} (header: {_names(header)}); "
            f"every column needs a name (a {name} at the end of each line makes an extra, unnamed column)"
        )
    twice = _duplicates(header)
    if twice:
        raise DataError(
            f"{path}: line {header_line}: the header names column(s) {_names(twice)} more than once "
            f"(header: {_names(header)}); column names must be unique"
        )
    if not body:
        raise DataError(f"{path} has a header but no rows")
    problems = []
    for row, (line, record) in enumerate(body, 1):
        if len(record) != len(header):
            hint = f"; quote a cell that contains a {name}" if len(record) > len(header) else ""
            problems.append(
                f"row {row} (line {line}): expected {len(header)} fields, as in the header, found {len(record)}{hint}"
            )
    _fail(str(path), problems)
    columns = {h: [None if r[j] == "" else r[j] for _, r in body] for j, h in enumerate(header)}
    return Table(columns, str(path), [line for line, _ in body])


class _DuplicateKeys(Exception):
    def __init__(self, keys: list[str]):
        self.keys = keys


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` for ``json``: a key written twice in one object is an error, not "the last wins"."""
    out = dict(pairs)
    if len(out) < len(pairs):
        raise _DuplicateKeys(_duplicates([k for k, _ in pairs]))
    return out


def _parse(text: str):
    return json.loads(text, object_pairs_hook=_unique_keys)


def _json_kind(value) -> str:
    kinds = {list: "an array", dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _read_jsonl(text: str, path: Path) -> Table:
    """One JSON object per line; blank lines are skipped. Errors name the line of the file."""
    rows, lines, problems = [], [], []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = _parse(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON: {exc.msg} at character {exc.colno}")
            continue
        except _DuplicateKeys as exc:
            problems.append(f"line {number}: key(s) {_names(exc.keys)} appear more than once in one object")
            continue
        except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
            problems.append(f"line {number}: not valid JSON: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number}: expected a JSON object (one example per line), got {_json_kind(value)}")
            continue
        rows.append(value)
        lines.append(number)
    _fail(str(path), problems, "lines of the file numbered from 1")
    return _from_objects(rows, path, lines)


def _read_json(text: str, path: Path) -> Table:
    """A list of objects, or an object of equal-length column lists; a file of JSON Lines also reads."""
    try:
        value = _parse(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # more than one value: JSON Lines in a .json file
            return _read_jsonl(text, path)
        raise DataError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg} at character {exc.colno}") from None
    except _DuplicateKeys as exc:
        raise DataError(f"{path}: key(s) {_names(exc.keys)} appear more than once in one object") from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not valid JSON: {type(exc).__name__}: {exc}") from None
    expected = "a list of objects (one per example) or an object of column lists"
    if isinstance(value, list):
        if not value:
            raise DataError(f"{path} has no rows: it holds an empty list")
        bad = [f"row {i + 1}: expected a JSON object, got {_json_kind(v)}" for i, v in enumerate(value)]
        _fail(str(path), [b for b, v in zip(bad, value) if not isinstance(v, dict)], "rows numbered from 1")
        return _from_objects(value, path, None)
    if isinstance(value, dict):
        if not value:
            raise DataError(f"{path} is empty: it holds an empty object; expected {expected}")
        not_lists = [k for k, v in value.items() if not isinstance(v, list)]
        if not_lists:
            raise DataError(
                f"{path}: the file holds one object whose key(s) {_names(not_lists[:MAX_REPORTED])} are not lists; "
                f"expected {expected}"
            )
        return _from_columns(value, str(path))
    raise DataError(f"{path}: expected {expected}, got {_json_kind(value)}")


def _from_objects(rows: list[dict], path: Path, lines: list[int] | None) -> Table:
    if not rows:
        raise DataError(f"{path} is empty")
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return Table({k: [row.get(k) for row in rows] for k in keys}, str(path), lines)


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(str(path))
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise
    except Exception as exc:  # pyarrow raises several types for a broken file; all mean the same to the user
        raise DataError(f"{path}: could not be read as Parquet: {exc}") from exc
    twice = _duplicates(table.column_names)
    if twice:
        raise DataError(f"{path}: column(s) {_names(twice)} appear more than once; column names must be unique")
    if table.num_rows == 0 or table.num_columns == 0:
        raise DataError(f"{path} has no rows")
    try:
        columns = table.to_pydict()
    except Exception as exc:  # a type pyarrow cannot turn into Python objects
        raise DataError(f"{path}: could not be read as Parquet: {exc}") from exc
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
    return (
        value is None
        or value is _MISSING
        or (isinstance(value, float) and math.isnan(value))
        or type(value).__name__ in ("NAType", "NaTType")  # pandas' missing values
    )


def _report(table: Table, problems: list[tuple[int, str]]) -> None:
    """``problems``: (0-based row, message); a row read from a text file also gets its line."""
    lines = table.lines
    _fail(table.origin, [m + (f" (line {lines[i]})" if lines and i < len(lines) else "") for i, m in problems])


def read_texts(table: Table, text: str | tuple[str, str] | list[str], template: str, separator: str) -> list[str]:
    """The model inputs: one column, or a text pair joined by ``separator``, put into ``template``."""
    columns = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else [text]
    if not 1 <= len(columns) <= 2 or not all(isinstance(c, str) for c in columns):
        raise DataError(f"text must be a column name or a pair of column names, got {_preview(text)}")
    require_columns(table, columns, "text")
    problems = []
    for column in columns:
        for i, value in enumerate(table.columns[column]):
            if _is_missing(value):
                problems.append((i, f"row {i + 1}, column {column!r}: text is missing"))
            elif not isinstance(value, str):
                problems.append(
                    (i, f"row {i + 1}, column {column!r}: expected text, got {type(value).__name__} {_preview(value)}")
                )
            elif not value.strip():
                problems.append((i, f"row {i + 1}, column {column!r}: text is empty"))
    _report(table, sorted(problems, key=lambda p: p[0]) if len(columns) > 1 else problems)
    parts = [table.columns[c] for c in columns]
    joined = parts[0] if len(parts) == 1 else [a + separator + b for a, b in zip(*parts)]
    return [template.replace("{text}", t) for t in joined]


def read_inputs(
    data: Any, text: str | tuple[str, str] | list[str], role: str, template: str, separator: str
) -> list[str]:
    """What ``predict`` takes, as model inputs: a list (or tuple, pandas Series, 1-D array) of texts, a list of
    dicts, a file path or any table ``read_table`` reads. ``text`` names the column(s) of a table; a list of
    texts is the texts themselves."""
    if isinstance(data, str) and Path(data).suffix.lower() not in FILE_FORMATS:
        raise NotATableError(
            f"{role} data: got a single string {_preview(data)}, which is not a path to a "
            f"{'/'.join(sorted(FILE_FORMATS))} file; predict takes a list of texts (wrap a single text in a list: "
            "[text]) or a data file/table"
        )
    if type(data).__name__ in ("Series", "ndarray") and hasattr(data, "tolist") and getattr(data, "ndim", 0) == 1:
        data = data.tolist()
    if isinstance(data, (list, tuple)) and data and not isinstance(data[0], dict):
        origin = "list of texts"
        problems = []
        for i, value in enumerate(data):
            if isinstance(value, str):
                if not value.strip():
                    problems.append(f"row {i + 1}: text is empty")
                continue
            hint = ""
            if isinstance(value, dict):
                hint = "; a list holds either texts or dicts (one per example), not both"
            elif isinstance(value, (list, tuple)):
                hint = (
                    "; for a text pair pass dicts with the two text columns, e.g. [{'premise': ..., 'hypothesis': ...}]"
                )
            got = "None" if value is None else f"{type(value).__name__} {_preview(value)}"
            problems.append(f"row {i + 1}: expected a text (str), got {got}{hint}")
        _fail(origin, problems, "rows numbered from 1")
        return [template.replace("{text}", t) for t in data]
    if isinstance(data, (list, tuple)) and data:
        bad = [i for i, row in enumerate(data) if not isinstance(row, dict)]
        _fail(
            "list of dicts",
            [f"row {i + 1}: expected a dict (one per example, as in row 1), got {type(data[i]).__name__}" for i in bad],
            "rows numbered from 1",
        )
    return read_texts(read_table(data, role), text, template, separator)


def read_raw_labels(table: Table, label: str | list[str], task: str) -> list:
    """Check the label column(s) for ``task`` and return one raw value per row.

    classification: a str/int/bool per row. multilabel: a list of names per row (one column) or one
    0/1 column per label. regression: a finite number per row, or a list of them (one column per target).
    """
    columns = [label] if isinstance(label, str) else list(label) if isinstance(label, (list, tuple)) else [label]
    if not columns or not all(isinstance(c, str) for c in columns):
        raise DataError(f"label must be a column name or a list of column names, got {_preview(label)}")
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
    if task == "classification":
        kinds = {type(v).__name__ for v in rows}
        if len(kinds) > 1:
            raise DataError(f"{table.origin}, column {columns[0]!r}: labels mix types {sorted(kinds)}; use one type")
    return rows


def _class_value(value, where):
    if isinstance(value, str):
        return (f"{where}: label is empty", None) if not value.strip() else (None, value)
    if isinstance(value, (bool, int)):
        return None, value
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _class_value(value.item(), where)
    return f"{where}: expected a class label (string or integer), got {type(value).__name__} {_preview(value)}" + (
        "; for numeric targets use task='regression'" if isinstance(value, float) else ""
    ), None


def _multilabel(values, columns, where):
    if len(columns) == 1:
        value = values[0]
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int)) for v in value):
            return f"{where}: expected a list of label names, got {type(value).__name__} {_preview(value)}", None
        return None, list(value)
    values = [v.item() if type(v).__module__ == "numpy" and hasattr(v, "item") else v for v in values]
    for c, v in zip(columns, values):
        if not isinstance(v, (bool, int, str)) or v not in (0, 1, True, False, "0", "1"):
            return f"{where}, column {c!r}: expected 0 or 1, got {_preview(v)}", None
    return None, [c for c, v in zip(columns, values) if v in (1, True, "1")]


def _targets(values, columns, i):
    out = []
    for c, v in zip(columns, values):
        if isinstance(v, str):
            try:
                v = float(v)  # CSV cells are read as text; a number written as text is still a number
            except ValueError:
                return f"row {i + 1}, column {c!r}: expected a number, got {_preview(v)}", None
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
            return f"row {i + 1}, column {c!r}: expected a number, got {type(v).__name__} {_preview(v)}", None
        try:
            v = float(v)
        except (TypeError, ValueError, OverflowError):
            return f"row {i + 1}, column {c!r}: expected a number, got {type(v).__name__} {_preview(v)}", None
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

"""Data files, read directly (Python's ``csv`` and ``json`` modules, pyarrow for Parquet), every time: no cache, so
a file edited in place is read as it is now. UTF-8 only; every problem names the file and the line."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmhead.data.base import MAX_REPORTED, DataError, Table, duplicates, fail, from_columns, names

log = logging.getLogger(__name__)

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def read_file(path: Path) -> Table:
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


def csv_records(text, origin, delimiter: str, say_blank_lines: bool = True) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, its cells) for each record of the text stream ``text`` that is not a blank line,
    read as it is consumed (``predict`` streams a file through it chunk by chunk). A cell may be as long as a
    document (csv's field size limit is raised while reading and put back after)."""
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, 2**31 - 1))  # a long document is a text, not an error
    records, one_column = 0, False
    blank, between = _Blank(), _Blank()  # blank lines since the last record; those followed by a record
    try:
        while True:
            start = reader.line_num + 1
            where = "the header" if records == 0 else f"row {records}"
            try:
                record = next(reader)
            except StopIteration:
                if say_blank_lines:
                    _say_blank_lines(origin, between)
                return
            except csv.Error as exc:
                lines = f"line {start}" if reader.line_num <= start else f"lines {start}-{reader.line_num}"
                raise DataError(
                    f"{origin}: {lines}: not valid CSV: {exc} ({where}; a cell that starts with a quote must end with "
                    'a quote; write a quote inside a quoted cell as "")'
                ) from None
            except UnicodeDecodeError as exc:  # a stream decoded as it is read
                raise DataError(
                    f"{origin}: near line {start} ({where}): byte 0x{exc.object[exc.start]:02x} is not valid UTF-8; "
                    "the file must be UTF-8 encoded (re-save it as UTF-8)"
                ) from None
            if not record:  # a blank line holds no example
                if one_column:
                    blank.add([start], 1)
                continue
            one_column = one_column or (records == 0 and len(record) == 1)
            between.add(blank.lines, blank.count)
            blank, records = _Blank(), records + 1
            yield start, record
    finally:
        csv.field_size_limit(limit)


class _Blank:
    """A count of blank lines and the first few of their numbers (a file of millions of rows keeps no more)."""

    def __init__(self):
        self.count, self.lines = 0, []

    def add(self, lines: list[int], count: int) -> None:
        self.count += count
        self.lines += lines[: MAX_REPORTED - len(self.lines)]


def _say_blank_lines(origin, blank: _Blank) -> None:
    """A one-column file's blank line between rows may have been meant as a row: it is skipped, and said, so that
    nothing is dropped unseen (blank lines at the end are not said; an empty cell is a missing value anyway)."""
    if blank.count:
        shown = ", ".join(map(str, blank.lines)) + (", ..." if blank.count > len(blank.lines) else "")
        plural = "s" if blank.count > 1 else ""
        log.warning("%s: %d blank line%s between rows skipped (line%s %s)", origin, blank.count, plural, plural, shown)


def check_header(header: list[str], origin, line: int, delimiter: str) -> list[str]:
    """``header`` when every column has a name, once; else the error naming the line and the columns."""
    unnamed = [j + 1 for j, h in enumerate(header) if not h.strip()]
    if unnamed:
        raise DataError(
            f"{origin}: line {line}: the header has no name for column(s) {unnamed} (header: {names(header)}); every "
            f"column needs a name (a {delimiter_name(delimiter)} at the end of each line makes an extra, unnamed "
            "column)"
        )
    twice = duplicates(header)
    if twice:
        raise DataError(
            f"{origin}: line {line}: the header names column(s) {names(twice)} more than once "
            f"(header: {names(header)}); column names must be unique"
        )
    return header


def delimiter_name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def width_problem(row: int, line: int, header: list[str], record: list[str], delimiter: str) -> str | None:
    """What is wrong with a record that has not as many fields as the header (None when it has)."""
    if len(record) == len(header):
        return None
    hint = f"; quote a cell that contains a {delimiter_name(delimiter)}" if len(record) > len(header) else ""
    return f"row {row} (line {line}): expected {len(header)} fields, as in the header, found {len(record)}{hint}"


def _read_csv(text: str, path: Path, delimiter: str) -> Table:
    """Every cell as written, as a string; an empty cell is a missing value (None). Blank lines are skipped."""
    records = list(csv_records(io.StringIO(text, newline=""), path, delimiter))
    if not records:
        raise DataError(f"{path} is empty")
    (header_line, header), body = records[0], records[1:]
    check_header(header, path, header_line, delimiter)
    if not body:
        raise DataError(f"{path} has a header but no rows")
    problems = [width_problem(row, line, header, record, delimiter) for row, (line, record) in enumerate(body, 1)]
    fail(str(path), [p for p in problems if p])
    columns = {h: [None if r[j] == "" else r[j] for _, r in body] for j, h in enumerate(header)}
    return Table(columns, str(path), [line for line, _ in body])


class DuplicateKeys(Exception):
    def __init__(self, keys: list[str]):
        self.keys = keys


def unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` for ``json``: a key written twice in one object is an error, not "the last wins"."""
    out = dict(pairs)
    if len(out) < len(pairs):
        raise DuplicateKeys(duplicates([k for k, _ in pairs]))
    return out


def _parse(text: str):
    return json.loads(text, object_pairs_hook=unique_keys)


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
        except DuplicateKeys as exc:
            problems.append(f"line {number}: key(s) {names(exc.keys)} appear more than once in one object")
            continue
        except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
            problems.append(f"line {number}: not valid JSON: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number}: expected a JSON object (one example per line), got {_json_kind(value)}")
            continue
        rows.append(value)
        lines.append(number)
    fail(str(path), problems, "lines of the file numbered from 1")
    return _from_objects(rows, path, lines)


def _read_json(text: str, path: Path) -> Table:
    """A list of objects, or an object of equal-length column lists; a file of JSON Lines also reads."""
    try:
        value = _parse(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # more than one value: JSON Lines in a .json file
            return _read_jsonl(text, path)
        raise DataError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg} at character {exc.colno}") from None
    except DuplicateKeys as exc:
        raise DataError(f"{path}: key(s) {names(exc.keys)} appear more than once in one object") from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not valid JSON: {type(exc).__name__}: {exc}") from None
    expected = "a list of objects (one per example) or an object of column lists"
    if isinstance(value, list):
        if not value:
            raise DataError(f"{path} has no rows: it holds an empty list")
        bad = [f"row {i + 1}: expected a JSON object, got {_json_kind(v)}" for i, v in enumerate(value)]
        fail(str(path), [b for b, v in zip(bad, value) if not isinstance(v, dict)], "rows numbered from 1")
        return _from_objects(value, path, None)
    if isinstance(value, dict):
        if not value:
            raise DataError(f"{path} is empty: it holds an empty object; expected {expected}")
        not_lists = [k for k, v in value.items() if not isinstance(v, list)]
        if not_lists:
            raise DataError(
                f"{path}: the file holds one object whose key(s) {names(not_lists[:MAX_REPORTED])} are not lists; "
                f"expected {expected}"
            )
        return from_columns(value, str(path))
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
    twice = duplicates(table.column_names)
    if twice:
        raise DataError(f"{path}: column(s) {names(twice)} appear more than once; column names must be unique")
    if table.num_rows == 0 or table.num_columns == 0:
        raise DataError(f"{path} has no rows")
    try:
        columns = table.to_pydict()
    except Exception as exc:  # a type pyarrow cannot turn into Python objects
        raise DataError(f"{path}: could not be read as Parquet: {exc}") from exc
    return Table(columns, str(path))

"""Tables read and written in chunks, so that scoring a file takes memory for one chunk whatever its length.

Readers (CSV, TSV, JSON Lines, Parquet, or JSON Lines on standard input) yield ``Chunk``s that keep every cell as it
was written: a CSV cell stays the string it was ('007', 'NA', ''), a JSON value its JSON type, a Parquet column
its Arrow type. Problems are ``DataError``s naming the file and the row (from 1, header not counted) or line, as
llmhead's other readers do (data/files.py). Writers put the input's columns first, then the added ones, and write
to a temporary file next to the output, renamed over it only when every row is written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llmhead.data import DataError
from llmhead.data.base import duplicates, names
from llmhead.data.files import DuplicateKeys, check_header, csv_records, unique_keys, width_problem

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
STDIO = "-"


@dataclass
class Chunk:
    columns: dict[str, list]  # column -> values, as read
    first_row: int  # the number of its first row in the file (from 1, header not counted)
    lines: list[int] | None = None  # the line each row starts on, for text files
    batch: object = None  # the pyarrow RecordBatch, for Parquet input

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def file_format(path: str, role: str) -> str:
    if path == STDIO:
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        hint = " (a .json file is read whole: write it as JSON Lines, .jsonl, one object per line)" * (
            suffix == ".json"
        )
        raise DataError(f"{path}: unsupported {role} file type {suffix!r}; expected one of {sorted(FORMATS)}{hint}")
    return FORMATS[suffix]


# ---- reading -----------------------------------------------------------------------------------------------
def read_chunks(path: str, size: int, say_blank_lines: bool = True) -> Iterator[Chunk]:
    """The rows of ``path`` (or JSON Lines on standard input for ``-``), ``size`` rows at a time; a CSV's skipped
    blank lines are said unless ``say_blank_lines`` is False (a second pass over a file already checked)."""
    kind = file_format(path, "input")
    if path != STDIO:
        file = Path(path)
        if file.is_dir():
            raise DataError(f"{path} is a directory, not a file")
        if not file.is_file():
            raise DataError(f"{path}: file not found")
    if kind == "parquet":
        yield from _parquet_chunks(path, size)
        return
    with contextlib.ExitStack() as stack:
        raw = sys.stdin.buffer if path == STDIO else stack.enter_context(open(path, "rb"))
        origin = "standard input" if path == STDIO else path
        if kind == "jsonl":
            yield from _jsonl_chunks(raw, origin, size)
        else:
            yield from _csv_chunks(raw, origin, size, "\t" if kind == "tsv" else ",", say_blank_lines)


def _text(raw, origin: str) -> io.TextIOWrapper:
    head = raw.peek(3)[:3] if hasattr(raw, "peek") else b""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(
            f"{origin}: the file is UTF-16 encoded (it starts with a UTF-16 byte order mark); save it as UTF-8"
        )
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")  # -sig: a byte order mark is not a column name


def _csv_chunks(raw, origin: str, size: int, delimiter: str, say_blank_lines: bool) -> Iterator[Chunk]:
    text = _text(raw, origin)
    try:
        header, row, records, lines = None, 0, [], []
        for start, record in csv_records(text, origin, delimiter, say_blank_lines):
            if header is None:
                header = check_header(record, origin, start, delimiter)
                continue
            row += 1
            problem = width_problem(row, start, header, record, delimiter)
            if problem:
                raise DataError(f"{origin}: {problem}")
            records.append(record)
            lines.append(start)
            if len(records) == size:
                yield Chunk({h: [r[j] for r in records] for j, h in enumerate(header)}, row - size + 1, lines)
                records, lines = [], []
        if header is None:
            raise DataError(f"{origin} is empty")
        if row == 0:
            raise DataError(f"{origin} has a header but no rows")
        if records:
            yield Chunk({h: [r[j] for r in records] for j, h in enumerate(header)}, row - len(records) + 1, lines)
    finally:
        text.detach()  # the caller closes the file


def _jsonl_chunks(raw, origin: str, size: int) -> Iterator[Chunk]:
    rows, lines, row = [], [], 0
    for number, data in enumerate(raw, 1):
        if number == 1:
            if data.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise DataError(f"{origin}: the input is UTF-16 encoded; save it as UTF-8")
            data = data.removeprefix(b"\xef\xbb\xbf")
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{origin}: line {number}: byte 0x{data[exc.start]:02x} is not valid UTF-8; the input must be UTF-8"
            ) from None
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=unique_keys)
        except DuplicateKeys as exc:
            raise DataError(f"{origin}: line {number}: key(s) {names(exc.keys)} appear more than once") from None
        except (ValueError, RecursionError) as exc:
            raise DataError(f"{origin}: line {number}: not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise DataError(f"{origin}: line {number}: expected a JSON object (one example per line)")
        row += 1
        rows.append(value)
        lines.append(number)
        if len(rows) == size:
            yield _objects_chunk(rows, row - size + 1, lines)
            rows, lines = [], []
    if row == 0:
        raise DataError(f"{origin} is empty")
    if rows:
        yield _objects_chunk(rows, row - len(rows) + 1, lines)


def _objects_chunk(rows: list[dict], first_row: int, lines: list[int]) -> Chunk:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return Chunk({k: [row.get(k, _ABSENT) for row in rows] for k in keys}, first_row, lines)


class _Absent:
    """A key one JSON object of a chunk lacks: written back as absent (JSON Lines) or an empty cell."""

    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _parquet_chunks(path: str, size: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken file; all mean the same to the user
        raise DataError(f"{path}: could not be read as Parquet: {exc}") from exc
    twice = duplicates(file.schema_arrow.names)
    if twice:
        raise DataError(f"{path}: column(s) {names(twice)} appear more than once; column names must be unique")
    if file.metadata.num_rows == 0:
        raise DataError(f"{path} has no rows")
    row = 0
    try:
        for batch in file.iter_batches(batch_size=size):
            if batch.num_rows:
                yield Chunk(batch.to_pydict(), row + 1, None, batch)
                row += batch.num_rows
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: could not be read as Parquet after row {row}: {exc}") from exc


def missing(value) -> bool:
    return value is None or value is _ABSENT


# ---- writing -----------------------------------------------------------------------------------------------
class Writer:
    """Rows out, chunk by chunk, in the format of ``path``'s extension (``fmt`` for standard output). A file is
    written under a temporary name in its folder and renamed into place by ``commit``; ``abort`` removes it."""

    def __init__(self, path: str | None, fmt: str):
        self.path, self.fmt, self.columns, self.schema = path, fmt, None, None
        self.tmp: Path | None = None
        if path is None:  # standard output: written as it comes
            self.stream, self.parquet = sys.stdout, None
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
        self.tmp = Path(name)
        if fmt == "parquet":
            os.close(fd)
            self.stream, self.parquet = None, None  # the ParquetWriter opens with the first chunk's schema
        else:
            self.stream, self.parquet = open(fd, "w", encoding="utf-8", newline=""), None

    def write(self, chunk: Chunk, added: dict[str, list], origin: str) -> None:
        if self.fmt == "parquet":
            self._parquet(chunk, added, origin)
        elif self.fmt == "jsonl":
            self._jsonl(chunk, added)
        else:
            self._csv(chunk, added, origin)

    def _header(self, chunk: Chunk, added: dict[str, list], origin: str) -> list[str]:
        if self.columns is None:
            self.columns = [*chunk.columns, *added]
        else:
            new = [c for c in chunk.columns if c not in self.columns]
            if new:  # JSON objects of later rows with keys the first rows lacked: a table has fixed columns
                raise DataError(
                    f"{origin}: row {chunk.first_row} or later has the key {new[0]!r}, which the first "
                    f"{chunk.first_row - 1} rows lack; a {self.fmt.upper()} output has the first rows' columns: "
                    "write the output as .jsonl to keep every key"
                )
        return self.columns

    def _csv(self, chunk: Chunk, added: dict[str, list], origin: str) -> None:
        first = self.columns is None
        header = self._header(chunk, added, origin)
        writer = csv.writer(self.stream, delimiter="\t" if self.fmt == "tsv" else ",", lineterminator="\n")
        if first:
            writer.writerow(header)
        values = {**chunk.columns, **added}
        n = len(chunk)
        cells = [values.get(c) or [None] * n for c in header]
        writer.writerows([_cell(v) for v in row] for row in zip(*cells))

    def _jsonl(self, chunk: Chunk, added: dict[str, list]) -> None:
        values = {**chunk.columns, **added}
        keys = list(values)
        lines = []
        for i in range(len(chunk)):
            row = {k: values[k][i] for k in keys if values[k][i] is not _ABSENT}
            lines.append(json.dumps(row, ensure_ascii=False, default=str))
        self.stream.write("\n".join(lines) + "\n")

    def _parquet(self, chunk: Chunk, added: dict[str, list], origin: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if chunk.batch is not None:
                table = pa.Table.from_batches([chunk.batch])
            else:
                header = self._header(chunk, {}, origin)
                n = len(chunk)
                table = pa.table(
                    {c: [None if missing(v) else v for v in chunk.columns.get(c, [None] * n)] for c in header}
                )
            for name, values in added.items():
                table = table.append_column(name, pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DataError(
                f"{origin}: rows {chunk.first_row}-{chunk.first_row + len(chunk) - 1} do not make a Parquet table "
                f"({exc}); write the output as .jsonl or .csv"
            ) from None
        if self.parquet is None:
            self.schema = table.schema
            self.parquet = pq.ParquetWriter(str(self.tmp), self.schema)
        try:
            table = table.cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise DataError(
                f"{origin}: rows from {chunk.first_row} have types that differ from the first rows' ({exc}); write "
                "the output as .jsonl or .csv"
            ) from None
        self.parquet.write_table(table)

    def commit(self) -> None:
        if self.tmp is None:
            self.stream.flush()
            return
        if self.parquet is not None:
            self.parquet.close()
        if self.stream is not None:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()
        os.replace(self.tmp, self.path)  # the complete output, or the previous file: never a part

    def abort(self) -> None:
        if self.tmp is None:
            return
        with contextlib.suppress(Exception):
            if self.parquet is not None:
                self.parquet.close()
            if self.stream is not None:
                self.stream.close()
        self.tmp.unlink(missing_ok=True)


def _cell(value) -> str:
    """A CSV cell: strings as they are, nothing (None, an absent key) as an empty cell, anything else as JSON."""
    if isinstance(value, str):
        return value
    if missing(value):
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)

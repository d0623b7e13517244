"""What every reader shares: the error, the table it returns, and how problems are reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_REPORTED = 10
MISSING = object()  # a key absent from one dict of a list of dicts


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


def preview(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened, and never raising (any object may reach a message)."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real problem
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def names(values) -> str:
    return ", ".join(preview(n) for n in values)


def duplicates(values: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for name in values:
        seen[name] = seen.get(name, 0) + 1
    return [name for name, count in seen.items() if count > 1]


def fail(origin: str, problems: list[str], numbering: str = "rows numbered from 1, header not counted") -> None:
    if problems:
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise DataError(
            f"{origin}: {len(problems)} problem(s) ({numbering}):\n  " + "\n  ".join(problems[:MAX_REPORTED]) + more
        )


def from_columns(source: dict, origin: str) -> Table:
    """A dict of equal-length column lists (also what a JSON file of column lists holds)."""
    if not source:
        raise DataError(f"{origin} is empty: no columns")
    keys = [str(k) for k in source]
    twice = duplicates(keys)
    if twice:
        raise DataError(f"{origin}: keys that read the same: {names(twice)}")
    columns = {}
    for name, values in zip(keys, source.values()):
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

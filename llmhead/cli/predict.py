"""``llmhead predict``: score a file of any length with a saved model, chunk by chunk.

The input is read twice when it is a file: once to check every row's text (no model loaded yet, so a bad row
deep in a large file costs seconds, not a scoring run), then to score it. Standard input is read once and checked
chunk by chunk. Memory holds one chunk of rows and its predictions, whatever the number of rows.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from llmhead.cli.info import read_manifest
from llmhead.cli.stream import STDIO, Chunk, Writer, file_format, missing, read_chunks
from llmhead.data import DataError, Table, read_texts, require_columns

CHUNK_ROWS = 1024  # rows per chunk: enough to fill batches sorted by length, small next to the model


@dataclass
class Plan:
    """What to read and write, checked before the model loads."""

    model: str
    input: str
    in_format: str
    out: str | None  # None: standard output
    out_format: str
    text: list[str]
    proba: bool
    template: str
    separator: str
    added: list[str]  # the columns predictions add


def plan(model: str, input: str, out: str | None, text: list[str] | None, proba: bool) -> Plan:
    manifest = read_manifest(model)
    labels, config = manifest["labels"], manifest["model"]
    if proba and labels.get("task") == "regression":
        raise ValueError(f"{model} is a regression model: it predicts numbers, so there are no probabilities (--proba)")
    text = text or _trained_text(manifest)
    in_format = file_format(input, "input")
    if out in (None, STDIO):
        out, out_format = None, in_format if in_format != "parquet" else "jsonl"
    else:
        out_format = file_format(out, "output")
        if input != STDIO and Path(out).exists() and Path(out).resolve() == Path(input).resolve():
            raise ValueError(f"--out {out} is the input file; write the predictions to another file")
        if Path(out).is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name such as {Path(out) / 'scored.csv'}")
    added = ["prediction"] + ([f"proba_{name}" for name in labels["names"]] if proba else [])
    template, separator = config.get("template", "{text}"), config.get("pair_separator", "\n")
    return Plan(model, input, in_format, out, out_format, text, proba, template, separator, added)


def _trained_text(manifest: dict) -> list[str]:
    text = (manifest.get("data") or {}).get("text") or "text"
    return [text] if isinstance(text, str) else list(text)


def inputs(chunk: Chunk, p: Plan, origin: str) -> list[str]:
    """The chunk's model inputs, each row's text checked (named by its row in the file)."""
    require_columns(Table(chunk.columns, origin), p.text, "text")
    empty = ("",) if p.in_format in ("csv", "tsv") else ()  # an empty CSV cell is a missing value, as in training
    table = Table({c: [None if missing(v) or v in empty else v for v in chunk.columns[c]] for c in p.text}, origin)
    clash = [c for c in p.added if c in chunk.columns]
    if clash:
        raise DataError(
            f"{origin}: already has a column {clash[0]!r}, which predict adds; rename that column in the input"
        )
    table.lines = chunk.lines
    text = p.text[0] if len(p.text) == 1 else tuple(p.text)
    return read_texts(table, text, p.template, p.separator, empty_ok=True, first_row=chunk.first_row)  # as predict


def check(p: Plan) -> int:
    """Read the whole input file and check it; the number of rows. (Standard input is checked as it is scored.)"""
    rows, columns = 0, None
    for chunk in read_chunks(p.input, CHUNK_ROWS):
        inputs(chunk, p, p.input)
        columns = columns or list(chunk.columns)
        new = [c for c in chunk.columns if c not in columns]
        if new and p.out_format != "jsonl":  # JSON objects with keys the first rows lack: a table has fixed columns
            raise DataError(
                f"{p.input}: row {chunk.first_row} or later has the key {new[0]!r}, which the first {rows} rows lack; "
                f"a {p.out_format.upper()} output has the first rows' columns: write the output as .jsonl to keep "
                "every key"
            )
        rows += len(chunk)
    return rows


def run(p: Plan, batch_size: int, rows: int | None) -> int:
    """Score the input into the output; the number of rows written."""
    import llmhead

    origin = "standard input" if p.input == STDIO else p.input
    clf = llmhead.load(p.model)
    clf.extractor.progress = False  # the bar below counts rows of the whole file
    labels = clf.labels
    writer = Writer(p.out, p.out_format)
    done = 0
    from llmhead.progress import bar as progress_bar

    bar = progress_bar(sys.stderr.isatty(), total=rows, unit="rows", file=sys.stderr, desc="predict")
    try:
        for chunk in read_chunks(p.input, CHUNK_ROWS, say_blank_lines=False):  # check() has said them
            logits = clf.logits(inputs(chunk, p, origin), batch_size=batch_size, templated=True)  # (N, outputs)
            added = {"prediction": labels.decode(logits)}
            if p.proba:
                probabilities = labels.probabilities(logits)  # (N, labels)
                for j, name in enumerate(p.added[1:]):
                    added[name] = [float(str(v)) for v in probabilities[:, j]]  # float32's shortest digits
            writer.write(chunk, added, origin)
            done += len(chunk)
            bar.update(len(chunk))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return done

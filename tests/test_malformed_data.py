"""Malformed input: every reader fails with a DataError that names the file (or source), the row or line and
what was expected; nothing is dropped, guessed or read from a stale cache; no other exception type escapes.
All in-process and model-free, except two fits that are stopped by the data check before any weights load."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_rows
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import llmhead
from llmhead import data
from llmhead.data import DataError, Table, read_raw_labels, read_table, read_texts
from llmhead.data.labels import LabelSpace

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


def pipeline(source, task="classification", fixed=None, text="text", label="label"):
    """What ``fit`` does with its data before any weights load."""
    table = read_table(source)
    texts = read_texts(table, text, "{text}", " | ")
    raw = read_raw_labels(table, label, task)
    return table, texts, raw, LabelSpace.learn(task, raw, fixed, label, origin=table.origin)


def inputs(value):
    """What ``predict`` does with its data: ``read_inputs`` with the default template."""
    return data.read_inputs(value, "text", "test", "{text}", " | ")


def lines(*rows: str, end: str = "\n") -> bytes:
    return (end.join(rows) + end).encode()


def jsonl(*rows) -> bytes:
    return lines(*(r if isinstance(r, str) else json.dumps(r) for r in rows))


def frame_with_duplicate_columns():
    frame = pd.DataFrame([["a", "pos", "b"], ["c", "neg", "d"]])
    frame.columns = ["text", "label", "text"]
    return frame


def empty_dataset():
    import datasets

    return datasets.Dataset.from_dict({"text": [], "label": []})


def write_parquet(rows):
    def write(path):
        pd.DataFrame(rows, columns=["text", "label"]).to_parquet(path)

    return write


GOOD = ['{"text": "fine", "label": "pos"}', '{"text": "bad", "label": "neg"}']


def case(name, where, source, *fragments, **options):
    """``where``: a file name (``source``: its bytes, a writer of the path, or None for a directory), 'source'
    (``source``: a function returning the object) or 'inputs' (``source`` goes to ``read_inputs``).
    ``{path}`` in a fragment is the file's path."""
    return pytest.param(where, source, fragments, options, id=name)


CASES = [
    # 4. CSV rows with too many / too few fields
    case(
        "csv-extra-field",
        "train.csv",
        lines("text,label", "good film,pos", "bad, boring film,neg"),
        "{path}",
        "row 2 (line 3): expected 2 fields, as in the header, found 3",
        "quote a cell that contains a ','",
    ),
    case(
        "csv-missing-field",
        "train.csv",
        lines("text,label", "good,pos", "bad", "ok,neg"),
        "{path}",
        "row 2 (line 3): expected 2 fields, as in the header, found 1",
    ),
    case(
        "csv-field-count-after-multiline-cell",
        "train.csv",
        lines("text,label", '"two\nlines",pos', "x,neg,extra"),
        "{path}",
        "row 2 (line 4): expected 2 fields",
    ),
    case(
        "tsv-extra-field",
        "train.tsv",
        lines("text\tlabel", "a\tpos\tx", "b\tneg"),
        "{path}",
        "row 1 (line 2): expected 2 fields, as in the header, found 3",
        "quote a cell that contains a tab",
    ),
    case(
        "csv-unterminated-quote",
        "train.csv",
        lines("text,label", "fine,pos", '"open,neg', "x,pos"),
        "{path}: lines 3-4: not valid CSV: unexpected end of data",
    ),
    case(
        "csv-text-after-closing-quote",
        "train.csv",
        lines("text,label", '"a"b,pos', "c,neg"),
        "{path}: line 2: not valid CSV",
    ),
    # 3. empty files
    case("csv-empty", "train.csv", b"", "{path} is empty"),
    case("csv-blank-lines-only", "train.csv", b"\n \r\n\n", "{path} is empty"),
    case("csv-header-only", "train.csv", lines("text,label"), "{path} has a header but no rows"),
    case("csv-header-only-bom-crlf", "train.csv", b"\xef\xbb\xbftext,label\r\n\r\n", "{path} has a header but no rows"),
    case("jsonl-empty", "train.jsonl", b"\n\n", "{path} is empty"),
    case("json-empty-list", "train.json", b"[]", "{path} has no rows"),
    case("parquet-no-rows", "train.parquet", write_parquet([]), "{path} has no rows"),
    # 7. duplicate and unnamed columns
    case(
        "csv-duplicate-column",
        "train.csv",
        lines("text,label,text", "a,pos,b", "c,neg,d"),
        "{path}: line 1: the header names column(s) 'text' more than once",
    ),
    case(
        "csv-unnamed-column",
        "train.csv",
        lines("text,label,", "a,pos,", "b,neg,"),
        "{path}: line 1: the header has no name for column(s) [3]",
    ),
    case(
        "jsonl-duplicate-key",
        "train.jsonl",
        jsonl(GOOD[0], '{"text": "b", "label": "neg", "label": "pos"}'),
        "{path}",
        "line 2: key(s) 'label' appear more than once in one object",
    ),
    case(
        "json-duplicate-key",
        "train.json",
        b'[{"text": "a", "text": "b", "label": "pos"}]',
        "{path}: key(s) 'text' appear more than once",
    ),
    case(
        "dataframe-duplicate-columns",
        "source",
        frame_with_duplicate_columns,
        "DataFrame: column(s) 'text' appear more than once",
    ),
    # 2. encoding
    case(
        "csv-latin1-byte",
        "train.csv",
        b"text,label\ngood,pos\ncaf\xe9 bad,neg\n",
        "{path}: line 3, byte offset 23",
        "byte 0xe9 is not valid UTF-8",
        "must be UTF-8",
    ),
    case(
        "csv-bom-then-latin1-byte",
        "train.csv",
        b"\xef\xbb\xbftext,label\ncaf\xe9,pos\n",
        "{path}: line 2, byte offset 17",
        "must be UTF-8",
    ),
    case("csv-utf16", "train.csv", "text,label\na,pos\n".encode("utf-16"), "{path}: the file is UTF-16", "UTF-8"),
    case(
        "jsonl-latin1-byte",
        "train.jsonl",
        jsonl(GOOD[0]) + b'{"text": "na\xefve", "label": "neg"}\n',
        "{path}: line 2, byte offset",
        "must be UTF-8",
    ),
    # 5. JSONL / JSON structure
    case(
        "jsonl-broken-line",
        "train.jsonl",
        jsonl(GOOD[0], '{"text": "b" "label": "neg"}', GOOD[1]),
        "{path}",
        "line 2: not valid JSON: Expecting ',' delimiter at character 14",
    ),
    case(
        "jsonl-array-line",
        "train.jsonl",
        jsonl(GOOD[0], '["b", "neg"]'),
        "{path}",
        "line 2: expected a JSON object (one example per line), got an array",
    ),
    case("jsonl-number-line", "train.jsonl", jsonl(GOOD[0], "", "42"), "{path}", "line 3: expected a JSON object"),
    case("jsonl-string-line", "train.jsonl", jsonl('"just text"', GOOD[1]), "line 1: expected a JSON object"),
    case(
        "jsonl-row-problem-names-line",
        "train.jsonl",
        jsonl(GOOD[0], "", GOOD[1], '{"text": "c"}'),
        "{path}",
        "row 3, column 'label': label is missing (line 4)",
    ),
    case(
        "json-object-not-columns",
        "train.json",
        b'{"text": "a", "label": "pos"}',
        "{path}: the file holds one object whose key(s) 'text', 'label' are not lists",
        "expected a list of objects (one per example) or an object of column lists",
    ),
    case("json-scalar", "train.json", b"42", "{path}: expected a list of objects", "got a number"),
    case(
        "json-list-of-non-objects",
        "train.json",
        b'[{"text": "a", "label": "pos"}, ["b", "neg"]]',
        "{path}",
        "row 2: expected a JSON object, got an array",
    ),
    case("json-syntax", "train.json", b'[{"text": "a",\n  "label": }]', "{path}: line 2: not valid JSON"),
    case(
        "json-columns-unequal",
        "train.json",
        b'{"text": ["a", "b"], "label": ["pos"]}',
        "{path}: columns have different lengths",
    ),
    # 6. a directory with a data file's name; a file that is not Parquet
    case("directory-named-csv", "x.csv", None, "{path} is a directory, not a file"),
    case("parquet-corrupt", "train.parquet", b"PAR1 not parquet", "{path}: could not be read as Parquet"),
    # 3. empty in-memory sources
    case("dataframe-empty", "source", lambda: pd.DataFrame({"text": [], "label": []}), "DataFrame has no rows"),
    case("dataframe-no-columns", "source", pd.DataFrame, "DataFrame has no rows"),
    case("dict-empty", "source", dict, "dict of lists is empty: no columns"),
    case("dict-no-rows", "source", lambda: {"text": [], "label": []}, "dict of lists has no rows"),
    case(
        "dict-of-scalars",
        "source",
        lambda: {"text": "abc", "label": "pos"},
        "dict of lists: column 'text' is a str, not a list",
    ),
    case("dataset-empty", "source", empty_dataset, "Dataset has no rows"),
    # 8. labels that would silently become classes of their own
    case(
        "labels-differ-by-case",
        "train.csv",
        lines("text,label", "a,pos", "b,neg", "c,pos", "d,neg", "e,Pos"),
        "{path}, column 'label'",
        "labels 'pos' (rows 1, 3) and 'Pos' (row 5) differ only by case or surrounding spaces",
        "correct the data, or pass labels=[...] listing every class as written to keep them",
    ),
    case(
        "labels-differ-by-spaces",
        "train.csv",
        lines("text,label", "a,pos", 'b,"pos "', "c,neg"),
        "{path}, column 'label'",
        "labels 'pos' (row 1) and 'pos ' (row 2) differ only by case or surrounding spaces",
    ),
    *[
        case(
            f"label-{word}-looks-missing",
            "train.csv",
            lines("text,label", "a,pos", f"b,{word}", "c,neg"),
            "{path}, column 'label'",
            f"row 2: label '{word}' looks like a missing value",
        )
        for word in ("NA", "NaN", "nan", "null", "None", "N/A", "n/a")
    ],
    case(
        "label-null-string-in-jsonl",
        "train.jsonl",
        jsonl(GOOD[0], GOOD[1], {"text": "c", "label": "null"}),
        "{path}, column 'label'",
        "row 3: label 'null' looks like a missing value",
    ),
    case(
        "labels-many-rows-listed-up-to-10",
        "source",
        lambda: [{"text": "t", "label": y} for y in ["Pos"] + ["pos"] * 12 + ["neg"]],
        "labels 'Pos' (row 1) and 'pos' (rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (12 rows))",
    ),
    case(
        "multilabel-names-differ-by-case",
        "source",
        lambda: [{"text": "a", "label": ["pos", "fun"]}, {"text": "b", "label": ["Fun"]}],
        "labels 'fun' (row 1) and 'Fun' (row 2) differ only by case",
        task="multilabel",
    ),
    case(
        "fixed-labels-hint-near-miss",
        "source",
        lambda: [{"text": "a", "label": "Pos"}, {"text": "b", "label": "neg"}],
        "training labels 'Pos' are not in labels=['pos', 'neg']",
        "'Pos' differs from 'pos' only by case",
        fixed=["pos", "neg"],
    ),
    # 10. prediction input
    case("inputs-none-after-good", "inputs", ["ok", None], "list of texts", "row 2: expected a text (str), got None"),
    case("inputs-only-none", "inputs", [None], "list of texts", "row 1: expected a text (str), got None"),
    case("inputs-int", "inputs", [5], "list of texts", "row 1: expected a text (str), got int 5"),
    case("inputs-bare-string", "inputs", "just one text", "got a single string", "wrap a single text in a list"),
    case("inputs-dict-among-texts", "inputs", ["ok", {"text": "x"}], "row 2: expected a text (str), got dict"),
    case("inputs-text-among-dicts", "inputs", [{"text": "x"}, "ok"], "list of dicts", "row 2: expected a dict"),
    case("inputs-pair-tuple", "inputs", [("a", "b")], "row 1: expected a text (str)", "for a text pair pass dicts"),
    case("inputs-missing-text-in-dicts", "inputs", [{"text": "a"}, {"text": None}], "row 2, column 'text': text is"),
]


def materialise(where, source, tmp_path):
    """The source the case describes, and the path (or None) its messages must name."""
    if where == "source":
        return source(), None
    if where == "inputs":
        return source, None
    path = tmp_path / where
    if source is None:
        path.mkdir()
    elif callable(source):
        source(path)
    else:
        path.write_bytes(source)
    return path, path


@pytest.mark.parametrize("where, source, fragments, options", CASES)
def test_malformed_input_is_a_clear_data_error(where, source, fragments, options, tmp_path):
    value, path = materialise(where, source, tmp_path)
    with pytest.raises(DataError) as err:
        inputs(value) if where == "inputs" else pipeline(value, **options)
    message = str(err.value)
    for fragment in fragments:
        fragment = fragment.replace("{path}", str(path))
        assert fragment.lower() in message.lower(), f"{fragment!r} not in:\n{message}"


def test_cases_cover_the_list():
    assert len(CASES) >= 30


# ---- reads that must work ------------------------------------------------------------------------------------


def test_file_edited_in_place_is_read_again(tmp_path):
    """Same size, same mtime, different labels: the second read sees the new labels (no cache on path/size/mtime)."""
    path = tmp_path / "train.csv"
    path.write_bytes(lines("text,label", "good,pos", "bad,neg"))
    stat = path.stat()
    assert read_table(path).columns["label"] == ["pos", "neg"]
    path.write_bytes(lines("text,label", "good,neg", "bad,pos"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert read_table(path).columns["label"] == ["neg", "pos"]


def test_csv_cells_are_kept_as_written(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(
        b'\xef\xbb\xbftext,label,score\r\n"a, quoted ""cell""",NA,1\r\n"two\nlines",pos,\r\n\r\nplain,0,2.50\r\n'
    )
    table = read_table(path)
    assert list(table.columns) == ["text", "label", "score"]  # the byte order mark is not in the first name
    assert table.columns == {
        "text": ['a, quoted "cell"', "two\nlines", "plain"],
        "label": ["NA", "pos", "0"],  # "NA" stays a string; no type guessing
        "score": ["1", None, "2.50"],  # an empty cell is a missing value
    }
    assert table.lines == [2, 3, 6]
    assert table.rows([2], "subset").lines == [6]


def test_blank_lines_of_a_one_column_file_are_said(tmp_path, caplog):
    """A blank line holds no row; in a one-column file it may have been meant as one, so blank lines between rows
    are said (file and lines); trailing ones, and those of a wider file, are not."""
    path = tmp_path / "texts.csv"
    path.write_text('text\ngood film\n\n\nbad film\n""\n\n', encoding="utf-8")
    with caplog.at_level("WARNING", logger="llmhead.data.files"):
        table = read_table(path)
    assert table.columns == {"text": ["good film", "bad film", None]} and table.lines == [2, 5, 6]
    assert [r.getMessage() for r in caplog.records] == [f"{path}: 2 blank lines between rows skipped (lines 3, 4)"]
    caplog.clear()
    wide = tmp_path / "wide.csv"
    wide.write_text("text,label\na,1\n\nb,2\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="llmhead.data.files"):
        assert read_table(wide).columns == {"text": ["a", "b"], "label": ["1", "2"]}
    assert not caplog.records


def test_long_csv_cell_reads(tmp_path):
    long = "word " * 40_000  # more than the csv module's default field limit (128 KiB)
    path = tmp_path / "train.csv"
    path.write_text(f"text,label\n{long},pos\nshort,neg\n", encoding="utf-8")
    assert read_table(path).columns["text"][0] == long
    assert csv.field_size_limit() == 131072  # the limit is restored


def test_json_forms(tmp_path):
    rows = sentiment_rows(1)
    expected = {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
    listed, columns, ndjson = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    listed.write_text(json.dumps(rows))
    columns.write_text(json.dumps(expected))  # before: read as one row of lists
    ndjson.write_text("\n".join(json.dumps(r) for r in rows))  # JSON Lines in a .json file, as datasets read it
    for path in (listed, columns, ndjson):
        assert read_table(path).columns == expected, path


def test_jsonl_keeps_values_and_fills_absent_keys(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(jsonl({"text": "a", "label": 1, "extra": [1, 2]}, "", {"label": 2, "text": "b"}) + b"\r\n")
    table = read_table(path)
    assert table.columns == {"text": ["a", "b"], "label": [1, 2], "extra": [[1, 2], None]}
    assert table.lines == [1, 3]


def test_parquet_reads(tmp_path):
    path = tmp_path / "d.parquet"
    write_parquet([["a", "pos"], ["b", "neg"]])(path)
    assert read_table(path).columns == {"text": ["a", "b"], "label": ["pos", "neg"]}


def test_class_label_columns_read_as_names():
    import datasets

    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
            "tags": datasets.Sequence(datasets.ClassLabel(names=["fun", "sad"])),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"text": ["a", "b", "c"], "label": [1, 0, 1], "tags": [[0], [1, 0], []]}, features=features
    )
    table = read_table(ds)
    assert table.columns["label"] == ["pos", "neg", "pos"]
    assert table.columns["tags"] == [["fun"], ["sad", "fun"], []]
    assert LabelSpace.learn(
        "classification", read_raw_labels(table, "label", "classification"), None, "label"
    ).names == [
        "neg",
        "pos",
    ]
    raw = read_raw_labels(table, "tags", "multilabel")
    assert LabelSpace.learn("multilabel", raw, None, "tags").names == ["fun", "sad"]
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([0])})
    assert read_table(dd, "test").columns["label"] == ["pos"]
    del features["tags"]
    unlabelled = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [-1, 0]}, features=features)
    with pytest.raises(DataError, match=r"Dataset: 1 problem.*\n  row 1, column 'label': label is missing"):
        pipeline(unlabelled)


def test_listed_labels_keep_variants_as_written():
    rows = [{"text": t, "label": y} for t, y in zip("abcd", ["pos", "Pos", "NA", "neg"])]
    space = pipeline(rows, fixed=["pos", "Pos", "NA", "neg"])[3]
    assert space.names == ["pos", "Pos", "NA", "neg"]
    ints = [{"text": t, "label": y} for t, y in zip("abc", [0, 1, 0])]
    assert pipeline(ints)[3].names == [0, 1]  # integers and booleans are not looked at
    assert pipeline([{"text": "a", "label": True}, {"text": "b", "label": False}])[3].names == [False, True]
    tags = [{"text": "a", "pos": 1, "Pos": 0}, {"text": "b", "pos": 0, "Pos": 1}]  # 0/1 columns: the user named them
    assert pipeline(tags, task="multilabel", label=["pos", "Pos"])[3].names == ["pos", "Pos"]


def test_learn_names_its_origin():
    with pytest.raises(DataError, match=r"^train.csv, column 'label': task='classification' needs at least 2"):
        LabelSpace.learn("classification", ["pos", "pos"], None, "label", origin="train.csv")
    with pytest.raises(DataError, match=r"^training data, column 'y': 1 problem"):
        LabelSpace.learn("classification", ["pos", "null"], None, "y")


def test_read_inputs_reads_what_predict_takes(tmp_path):
    template, sep = "<{text}>", " | "

    def read(value, text="text"):
        return data.read_inputs(value, text, "test", template, sep)

    assert read(["a", "b"]) == read(("a", "b")) == read(pd.Series(["a", "b"])) == ["<a>", "<b>"]
    rows = [{"p": "a", "h": "b"}, {"p": "c", "h": "d"}]
    assert read(rows, ("p", "h")) == ["<a | b>", "<c | d>"]
    path = tmp_path / "t.jsonl"
    path.write_bytes(jsonl({"text": "x"}, {"text": "y"}))
    assert read(path) == read(str(path)) == read(Table({"text": ["x", "y"]}, "table")) == ["<x>", "<y>"]
    assert read([]) == read(()) == []  # nothing to predict is no error
    assert read(["", "  "]) == ["<>", "<  >"]  # an empty text is predicted like any other (put into the template)
    with pytest.raises(TypeError, match="wrap a single text in a list"):  # also a TypeError, as predict raised
        read("one text")
    with pytest.raises(DataError, match=r"unsupported file type '.txt'"):
        read(Path("notes.txt"))


def test_fit_refuses_label_variants_and_malformed_csv_before_loading(tiny_llama, tmp_path, no_model_load):
    rows = sentiment_rows(1)
    rows[3]["label"] = "Neg"
    path = tmp_path / "train.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"labels 'neg' \(rows 2, 6, 8\) and 'Neg' \(row 4\) differ only by case"):
        llmhead.from_pretrained(tiny_llama, dtype="float32").fit(path)
    path.write_bytes(lines("text,label", "a,pos", "b,neg,x"))
    with pytest.raises(DataError, match=r"row 2 \(line 3\): expected 2 fields"):
        llmhead.from_pretrained(tiny_llama, dtype="float32").fit(path)


# ---- 11. fuzzing: a correct read or a DataError naming the source, never another exception --------------------

CELL = st.text(st.sampled_from(list("ab ,;\t\"'\n\r\\{}[]:é€\x00\ufeff")) | st.characters(), max_size=12)
NAMES = st.sampled_from(["text", "label", "Text", "", " text", "label ", "x"])


@st.composite
def csv_bytes(draw, delimiter=","):
    header = draw(st.lists(NAMES, min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(CELL | st.sampled_from(["pos", "neg", "Pos", "NA", ""]), max_size=5), max_size=6))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerows([header, *rows])
    text = out.getvalue()
    if draw(st.booleans()):  # cut or splice the text
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["", '"', "\n", ",", "\t", "\r"])) + text[i + draw(st.integers(0, 3)) :]
    encoded = text.encode("utf-8", "surrogatepass")
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"])) + encoded + draw(st.sampled_from([b"", b"\xe9"]))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.sampled_from(["pos", "neg"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES | st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def json_bytes(draw):
    rows = draw(st.lists(JSON_VALUES | st.fixed_dictionaries({"text": JSON_VALUES, "label": JSON_VALUES}), max_size=5))
    form = draw(st.sampled_from(["lines", "list", "columns", "one"]))
    if form == "lines":
        text = "\n".join(json.dumps(r) for r in rows)
    elif form == "list":
        text = json.dumps(rows)
    elif form == "columns":
        text = json.dumps({"text": [r for r in rows], "label": draw(st.lists(JSON_VALUES, max_size=5))})
    else:
        text = json.dumps(rows[0] if rows else draw(JSON_VALUES))
    if draw(st.booleans()):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["", "{", "]", ",", '"', "\n", '"text": 1, "text": 2'])) + text[i:]
    return text.encode("utf-8", "surrogatepass") + draw(st.sampled_from([b"", b"\n", b"\x80"]))


def read_or_data_error(path: Path):
    try:
        table, texts, raw, space = pipeline(path)
    except DataError as exc:
        assert str(path) in str(exc), str(exc)
        return None
    assert len(texts) == len(raw) == len(table) > 0
    assert all(isinstance(t, str) and t.strip() for t in texts)
    return table


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(
    content=st.binary(max_size=200) | csv_bytes() | csv_bytes("\t") | json_bytes(),
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]),
)
def test_fuzz_any_bytes_read_or_data_error(fuzz_dir, content, suffix):
    path = fuzz_dir / f"train{suffix}"
    path.write_bytes(content)
    read_or_data_error(path)


@FUZZ
@given(
    header=st.lists(
        st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=6).filter(str.strip),
        min_size=1,
        max_size=4,
        unique=True,
    ),
    body=st.data(),
    end=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_fuzz_csv_round_trip(fuzz_dir, header, body, end, bom):
    """Whatever csv.writer writes (without blank-only single-column rows), read_table reads back exactly."""
    # csv.writer leaves a lone "\r" unquoted when the line ends are "\n"; any CSV reader takes it for a line end
    assume(end == "\r\n" or not any("\r" in h for h in header))  # the header's names as well as the cells
    cell = st.text(
        st.characters(blacklist_categories=["Cs"], blacklist_characters="\r" if end == "\n" else ""), max_size=8
    )
    rows = body.draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), min_size=1, max_size=5))
    out = io.StringIO()
    csv.writer(out, lineterminator=end).writerows([header, *rows])
    path = fuzz_dir / "round.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode())
    table = read_table(path)
    assert table.columns == {h: [r[j] or None for r in rows] for j, h in enumerate(header)}


@FUZZ
@given(rows=st.lists(st.dictionaries(st.text(max_size=4), JSON_VALUES, min_size=1, max_size=3), min_size=1, max_size=5))
def test_fuzz_jsonl_round_trip(fuzz_dir, rows):
    path = fuzz_dir / "round.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    table = read_table(path)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    expected = {k: [r.get(k) for r in rows] for k in keys}
    assert json.dumps(table.columns) == json.dumps(expected)  # NaN-tolerant equality


class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr")


ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=4)
    | st.builds(Unprintable)
    | st.builds(object),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.sampled_from(["text", "label", 1]), inner, max_size=2)
    ),
    max_leaves=6,
)


@FUZZ
@given(values=st.lists(ANY_VALUE | st.text(max_size=10), max_size=6) | ANY_VALUE)
def test_fuzz_read_inputs_any_values(values):
    try:
        texts = inputs(values)
    except DataError as exc:
        message = str(exc)
        origins = ("list of texts", "list of dicts", "test data", "dict of lists", "text must be")
        assert message.startswith(origins + ((values,) if isinstance(values, str) else ())), message
        return
    assert all(isinstance(t, str) for t in texts)
    assert len(texts) == len(values) if isinstance(values, (list, tuple)) else isinstance(values, dict)


@pytest.mark.parametrize(
    "content,message",
    [
        (["text,label", "fine,pos", '"open,neg', "x,pos"], "lines 3-4: not valid CSV: unexpected end of data (row 2;"),
        (["text,label", '"a"b,pos', "c,neg"], "line 2: not valid CSV: ',' expected after '\"' (row 1;"),
        (['"text,label', "a,pos"], "lines 1-2: not valid CSV: unexpected end of data (the header;"),
        (["text,text", "a,b"], "line 1: the header names column(s) 'text' more than once (header: 'text', 'text')"),
    ],
    ids=["unterminated", "after-quote", "header", "duplicate-column"],
)
def test_a_csv_mistake_reads_the_same_whole_and_streamed(content, message, tmp_path):
    """`read_table` (training data) and `llmhead predict`'s chunked reader share one CSV reader: the same mistake
    gets the same message, naming the file, the line and the row."""
    from llmhead.cli.stream import read_chunks

    path = tmp_path / "data.csv"
    path.write_text("\n".join(content) + "\n")
    with pytest.raises(DataError) as whole:
        read_table(str(path))
    with pytest.raises(DataError) as streamed:
        list(read_chunks(str(path), 1))
    assert f"{path}: {message}" in str(whole.value) and f"{path}: {message}" in str(streamed.value), (whole, streamed)

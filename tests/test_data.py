"""Bad input fails with the source, row and column, before any model loads; every source type reads."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import sentiment_rows

import llmhead
from llmhead.data import DataError


def clf_for(tiny_llama, **options):
    return llmhead.from_pretrained(tiny_llama, dtype="float32", **options)


def write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_missing_and_empty_text_named_by_file_row_column(tiny_llama, tmp_path, no_model_load):
    rows = sentiment_rows(1)
    rows[2]["text"] = ""
    rows[5]["text"] = "   "
    path = write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(DataError) as err:
        clf_for(tiny_llama).fit(path)
    msg = str(err.value)
    assert str(path) in msg and "2 problem(s)" in msg
    assert "row 3, column 'text': text is missing" in msg  # an empty CSV cell is a missing value
    assert "row 6, column 'text': text is empty" in msg


def test_missing_label_in_jsonl(tiny_llama, tmp_path, no_model_load):
    path = tmp_path / "train.jsonl"
    rows = sentiment_rows(1)
    rows[4]["label"] = None
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"(?s)train.jsonl.*row 5, column 'label': label is missing"):
        clf_for(tiny_llama).fit(path)


def test_missing_key_in_list_of_dicts(tiny_llama, no_model_load):
    rows = sentiment_rows(1)
    del rows[1]["label"]
    with pytest.raises(DataError, match=r"row 2, column 'label': label is missing"):
        clf_for(tiny_llama).fit(rows)


def test_misspelled_column_suggests_nearest(tiny_llama, no_model_load):
    rows = [{"review_text": r["text"], "label": r["label"]} for r in sentiment_rows(1)]
    with pytest.raises(DataError, match=r"no text column 'review_txt'; did you mean 'review_text'"):
        clf_for(tiny_llama).fit(rows, text="review_txt")
    with pytest.raises(DataError, match=r"no label column 'lable'; did you mean 'label'"):
        clf_for(tiny_llama).fit(rows, text="review_text", label="lable")


def test_eval_label_unseen_in_training(tiny_llama, no_model_load):
    eval_rows = sentiment_rows(1)
    eval_rows[3]["label"] = "neutral"
    with pytest.raises(DataError, match=r"label\(s\) that training never saw: row 4: 'neutral'"):
        clf_for(tiny_llama).fit(sentiment_rows(1), eval_rows)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_regression_targets(tiny_llama, bad, no_model_load):
    rows = [{"text": r["text"], "y": float(i)} for i, r in enumerate(sentiment_rows(1))]
    rows[6]["y"] = bad
    frame = pd.DataFrame(rows)
    expected = "label is missing" if math.isnan(bad) else "expected a finite number"
    with pytest.raises(DataError, match=rf"(?s)DataFrame.*row 7, column 'y': {expected}"):
        clf_for(tiny_llama, task="regression").fit(frame, label="y")


def test_regression_text_target_in_csv(tiny_llama, tmp_path, no_model_load):
    rows = [{"text": r["text"], "y": str(i)} for i, r in enumerate(sentiment_rows(1))]
    rows[0]["y"] = "high"
    path = write_csv(tmp_path / "r.csv", rows)
    with pytest.raises(DataError, match=r"row 1, column 'y': expected a number, got 'high'"):
        clf_for(tiny_llama, task="regression").fit(path, label="y")


def test_float_class_labels_point_to_regression(tiny_llama, no_model_load):
    rows = [{"text": r["text"], "label": 0.5} for r in sentiment_rows(1)]
    with pytest.raises(DataError, match="use task='regression'"):
        clf_for(tiny_llama).fit(rows)


def test_single_class_is_refused(tiny_llama, no_model_load):
    rows = [{"text": r["text"], "label": "pos"} for r in sentiment_rows(1)]
    with pytest.raises(DataError, match="at least 2 classes"):
        clf_for(tiny_llama).fit(rows)


def test_all_problems_reported_together(tiny_llama, no_model_load):
    rows = sentiment_rows(2)
    for i in (0, 3, 9):
        rows[i]["text"] = None
    with pytest.raises(DataError) as err:
        clf_for(tiny_llama).fit(rows)
    assert "3 problem(s)" in str(err.value)
    assert all(f"row {i + 1}," in str(err.value) for i in (0, 3, 9))


def test_unsupported_file_and_missing_file(tiny_llama, tmp_path, no_model_load):
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        clf_for(tiny_llama).fit(tmp_path / "train.txt")
    with pytest.raises(DataError, match="file not found"):
        clf_for(tiny_llama).fit(tmp_path / "absent.csv")


def test_every_source_type_reads_the_same(tiny_llama, tmp_path):
    import datasets

    rows = sentiment_rows(1)
    frame = pd.DataFrame(rows)
    csv = write_csv(tmp_path / "d.csv", rows)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    parquet = tmp_path / "d.parquet"
    frame.to_parquet(parquet)
    ds = datasets.Dataset.from_list(rows)
    sources = [csv, str(jsonl), parquet, ds, frame, rows, frame.to_dict("list")]
    clf = clf_for(tiny_llama).fit(rows, epochs=2)
    reference = clf.evaluate(rows)
    for source in sources:
        assert clf.evaluate(source) == reference, type(source)
    dd = datasets.DatasetDict({"train": ds, "validation": ds, "test": ds})
    clf.fit(dd, epochs=2)  # validation split is used as eval
    assert clf.evaluate(dd)["n"] == len(rows)


def test_text_pair_and_multilabel_columns(tiny_llama):
    rows = [
        {
            "premise": r["text"],
            "hypothesis": "it is good",
            "pos": int(r["label"] == "pos"),
            "neg": int(r["label"] == "neg"),
        }
        for r in sentiment_rows(1)
    ]
    clf = clf_for(tiny_llama, task="multilabel").fit(
        rows, text=("premise", "hypothesis"), label=["pos", "neg"], epochs=2
    )
    assert clf.labels.names == ["pos", "neg"]
    preds = clf.predict(rows[:2], text=("premise", "hypothesis"))
    assert all(isinstance(p, list) for p in preds)


def test_fixed_label_order_and_unknown_training_label(tiny_llama, no_model_load):
    with pytest.raises(DataError, match=r"training labels 'neg' are not in labels="):
        clf_for(tiny_llama, labels=["pos", "other"]).fit(sentiment_rows(1))


def test_predict_rejects_a_bare_string(tiny_llama):
    clf = clf_for(tiny_llama).fit(sentiment_rows(1), epochs=1)
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        clf.predict("just one text")


@pytest.mark.parametrize(
    "rows, options, message",
    [
        (  # 1 and "1" would be two classes that print alike
            [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}, {"text": "c", "label": 1}],
            {},
            r"labels mix types \['int', 'str'\]: row 3 has int 1 where row 1 has str 'pos'",
        ),
        (
            [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": ["x", " "]}],
            {"task": "multilabel"},
            r"row 2, column 'label': a label name is empty in \['x', ' '\]",
        ),
        (
            [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": [1, "y"]}],
            {"task": "multilabel"},
            r"labels mix types \['int', 'str'\]: row 2 has int 1 where row 1 has str 'x'",
        ),
    ],
)
def test_label_names_are_one_type_and_never_empty(tiny_llama, no_model_load, rows, options, message):
    with pytest.raises(DataError, match=message):
        clf_for(tiny_llama, **options).fit(rows)


@pytest.mark.parametrize(
    "text, label, message",
    [
        ("label", "label", "column 'label' is both a text and a label column"),
        (["text", "label"], "label", "column 'label' is both a text and a label column"),
        (["text", "text"], "label", "the text pair names column 'text' twice"),
    ],
)
def test_a_column_is_a_text_or_a_label_once(tiny_llama, no_model_load, text, label, message):
    with pytest.raises(DataError, match=message):
        clf_for(tiny_llama).fit(sentiment_rows(2), text=text, label=label)

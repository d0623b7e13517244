"""evaluate(..., report=DIR): the files it writes, the figures each task gets, the training curves it reads, the
HTML escaped and self-contained, and the page rendered in real headless Chromium with every picture loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from browser import rendered, screenshot
from conftest import CORPUS, sentiment_rows

import llmhead
from llmhead.report import Evaluation, training
from llmhead.report.files import write_report

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)> "quoted"'
FIT = dict(epochs=30, lr=1e-2, batch_size=8, progress=False)
PNG = b"\x89PNG\r\n\x1a\n"


def synthetic(task: str, n: int = 60, classes: int = 2, seed: int = 0) -> Evaluation:
    """An evaluation from random but plausible arrays: the report's logic without a model."""
    rng = np.random.default_rng(seed)
    texts = [f"text {i}" for i in range(n)]
    texts[3] = HOSTILE
    if task == "regression":
        y = rng.normal(size=(n, 1)) * 2
        return Evaluation(
            "regression", ["score"], texts, y, y + rng.normal(size=(n, 1)) * 0.5, {"mse": 0.25, "r2": float("nan")}
        )
    logits = rng.normal(size=(n, classes)) * 2
    if task == "classification":
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = np.array([rng.choice(classes, p=row) for row in p])
        pred = p.argmax(1)
    else:
        p = 1 / (1 + np.exp(-logits))
        y = (rng.random((n, classes)) < p).astype(int)
        pred = (p >= 0.5).astype(int)
    names = [f"c{k}" for k in range(classes)]
    per = {n_: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 10} for n_ in names}
    m = {"accuracy": 0.7, "per_class": per, "ece": 0.05, "brier": 0.2}
    return Evaluation(task, names, texts, y, pred, m, p, np.clip(p * 1.1, 0, 1) if task == "multilabel" else None)


@pytest.mark.parametrize(
    ("task", "classes", "figures"),
    [
        (
            "classification",
            2,
            {"confusion_counts", "confusion_normalized", "per_class", "reliability", "roc", "precision_recall"},
        ),
        (
            "classification",
            4,
            {"confusion_counts", "confusion_normalized", "per_class", "reliability", "roc", "precision_recall"},
        ),
        ("multilabel", 3, {"per_class", "reliability", "roc", "precision_recall"}),
        ("regression", 1, {"predicted_vs_true", "residuals"}),
    ],
)
def test_each_task_gets_its_figures_and_files(tmp_path, task, classes, figures):
    ev = synthetic(task, classes=classes)
    page = write_report(tmp_path / "r", ev)
    pngs = {p.stem for p in (tmp_path / "r").glob("*.png")}
    assert pngs == figures  # no training curves: this evaluation has no history
    assert all(p.read_bytes().startswith(PNG) for p in (tmp_path / "r").glob("*.png"))
    text = page.read_text()
    assert text.count('src="data:image/png;base64,') == len(figures)
    assert "no training curves" in text
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())  # valid JSON: NaN written as null
    assert saved == {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in ev.metrics.items()}
    worst = [json.loads(line) for line in (tmp_path / "r" / "worst.jsonl").read_text().splitlines()]
    key = {"classification": "p_true", "multilabel": "log_loss", "regression": "abs_error"}[task]
    values = [w[key] for w in worst]
    assert len(worst) == 20 and values == sorted(values, reverse=task != "classification")


def test_text_is_escaped_and_the_page_loads_nothing_from_outside(tmp_path):
    ev = synthetic("classification")
    ev.worst = lambda k=20: [
        {"row": 4, "text": HOSTILE, "true": HOSTILE, "predicted": "c0", "p_true": 0.1, "p_predicted": 0.9}
    ]
    ev.about = {"model": HOSTILE}
    text = write_report(tmp_path / "r", ev).read_text()
    assert (
        HOSTILE not in text
        and "<script" not in text
        and "onerror=alert" not in text.replace("onerror=alert(1)&gt;", "")
    )
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "default-src 'none'; img-src data:" in text  # the policy: only its own data: images


def test_training_curves_from_the_log_and_the_history(tmp_path):
    log = tmp_path / "train_log.jsonl"
    lines = [{"step": s, "epoch": 1, "loss": 1 / s, "lr": 1e-3 * s} for s in (1, 2, 3, 4)]
    lines += [{"eval": {"step": 2, "val_loss": 0.6, "accuracy": 0.7}}, {"step": 3, "loss": 0.2, "lr": 5e-3}]  # resumed
    text = (
        "\n".join(json.dumps(x) for x in lines)
        + "\n{broken\n"
        + json.dumps({"eval": {"step": 4, "val_loss": 0.5, "accuracy": 0.8}})
    )
    log.write_text(text + "\n")
    curves = training.curves([], log)
    assert curves.x_label == "step" and curves.metric == "accuracy"
    assert curves.series["train_loss"] == ([1, 2, 3, 4], [1.0, 0.5, 0.2, 0.25])  # the resumed step's line wins
    assert curves.series["lr"][1][2] == 5e-3 and curves.series["val_loss"] == ([2, 4], [0.6, 0.5])
    assert curves.notes == [f"{log}: line 7 is not JSON (Expecting property name enclosed in double quotes); left out"]
    head = [{"epoch": e, "train_loss": 1 / e, "val_loss": 2 / e, "best": True} for e in (1, 2, 3)]
    from_history = training.curves(head, tmp_path / "gone" / "train_log.jsonl")
    assert from_history.x_label == "epoch" and set(from_history.series) == {"train_loss", "val_loss"}
    assert "does not exist" in from_history.notes[0]
    assert not training.curves([{"probe": "logreg", "C": 1.0}], None)  # nothing to draw


def test_figures_leave_matplotlib_global_state_alone(tmp_path):
    """No pyplot, no backend switch: run in a fresh interpreter, where nothing else imported them."""
    code = f"""
import sys, matplotlib, numpy as np
backend = dict.__getitem__(matplotlib.rcParams, "backend")  # get_backend() would itself import pyplot
from llmhead.report import Evaluation
from llmhead.report.files import write_report
p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
per = {{c: {{"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}} for c in "ab"}}
metrics = {{"accuracy": 0.75, "per_class": per, "ece": 0.1, "brier": 0.1}}
ev = Evaluation("classification", ["a", "b"], list("wxyz"), np.array([0, 1, 1, 1]), p.argmax(1), metrics, p)
write_report({str(tmp_path / "r")!r}, ev)
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "r" / "reliability.png").is_file()


def test_a_missing_matplotlib_names_the_extra(tiny_llama, monkeypatch, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama).fit(sentiment_rows(1), epochs=1, progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'llmhead\[report\]'"):
        clf.evaluate(sentiment_rows(1), report=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_report_renders_in_chromium_with_every_picture(tiny_llama, tmp_path):
    """End to end: a fitted, calibrated classifier's report, opened in headless Chromium."""
    flip = {"pos": "neg", "neg": "pos"}
    val = [{**r, "label": flip[r["label"]] if i % 4 == 0 else r["label"]} for i, r in enumerate(sentiment_rows(3))]
    val[1]["text"] = HOSTILE
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(4), val, **FIT)
    metrics = clf.evaluate(val, report=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "metrics.json").read_text()) == metrics
    record, dom = rendered(tmp_path / "r" / "report.html")
    expected = {
        "confusion_counts",
        "confusion_normalized",
        "per_class",
        "reliability",
        "roc",
        "precision_recall",
        "training",
    }
    assert {p.stem for p in (tmp_path / "r").glob("*.png")} == expected
    assert record == {"images": 7, "loaded": 7, "broken": [], "scripts": 1}  # 1: the probe; the hostile text is text
    assert '<td class="text">&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;img' in dom  # shown as text
    shot = screenshot(tmp_path / "r" / "report.html", tmp_path / "shot.png")
    assert shot.read_bytes().startswith(PNG)


def test_the_browser_check_sees_a_broken_picture(tmp_path):
    """The check above can fail: a damaged image and an outside one (blocked by the page's policy) are reported."""
    page = write_report(tmp_path / "r", synthetic("regression"))
    text = page.read_text().replace("base64,iVBOR", "base64,AAAA", 1)
    page.write_text(text.replace("</body>", '<img src="http://127.0.0.1:9/x.png" alt="outside"></body>'))
    record, _ = rendered(page)
    assert record["images"] == 3 and record["loaded"] == 1
    assert record["broken"] == ["predicted vs true: score", "outside"]


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_multilabel_and_regression_reports_from_a_model(tiny_llama, tmp_path, task):
    if task == "multilabel":
        rows = [
            {"text": t, "labels": (["positive"] if j % 2 == 0 else []) + (["film"] if j < 4 else [])}
            for j, t in enumerate(CORPUS)
        ] * 3
        label, expected = "labels", {"per_class", "reliability", "roc", "precision_recall", "training"}
    else:
        rows = [{"text": t, "labels": float(j)} for j, t in enumerate(CORPUS)] * 3
        label, expected = "labels", {"predicted_vs_true", "residuals", "training"}
    clf = llmhead.from_pretrained(tiny_llama, task=task, dtype="float32").fit(rows, label=label, **{**FIT, "epochs": 3})
    clf.evaluate(rows, label=label, report=tmp_path / "r")
    assert {p.stem for p in (tmp_path / "r").glob("*.png")} == expected
    assert len((tmp_path / "r" / "worst.jsonl").read_text().splitlines()) == 20


def test_a_fine_tuned_model_reports_its_train_log_also_after_load(tiny_llama, tmp_path):
    """LoRA with a run_dir: the curves come from run_dir/train_log.jsonl (loss, validation metric, learning rate),
    the fit calibrates after fine-tuning, and a loaded save still finds the log."""
    flip = {"pos": "neg", "neg": "pos"}
    val = [{**r, "label": flip[r["label"]] if i % 4 == 0 else r["label"]} for i, r in enumerate(sentiment_rows(3))]
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", dtype="float32", lora_r=2)
    clf.fit(
        sentiment_rows(2), val, epochs=2, batch_size=4, warm_start=False, run_dir=str(tmp_path / "run"), progress=False
    )
    assert clf.calibration["method"] == "temperature"  # after fine-tuning, on the validation split
    clf.save(tmp_path / "m")
    again = llmhead.load(tmp_path / "m")
    assert again.run_dir == str(tmp_path / "run")
    again.evaluate(val, report=tmp_path / "r")
    text = (tmp_path / "r" / "report.html").read_text()
    assert "From run_dir/train_log.jsonl, per step." in text
    curves = training.curves(again.history, Path(again.run_dir) / "train_log.jsonl")
    assert {"train_loss", "lr", "val_loss", "accuracy"} <= set(curves.series) and not curves.notes

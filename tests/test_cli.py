"""The ``llmhead`` command: each subcommand run as a subprocess on a tiny model, and the streaming of ``predict``
(chunk boundaries, formats, errors, atomic output) in-process with small chunks."""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_rows

import llmhead
from llmhead.cli import main as cli
from llmhead.cli import predict as scoring

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [r["text"] for r in sentiment_rows(1)]


def llmhead_cli(*args, stdin: str | None = None, cwd=None) -> subprocess.Popen:
    """``python -m llmhead ARGS`` with this checkout's package, started (not waited for)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmhead", *map(str, args)],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    proc.given = stdin
    return proc


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(proc.given, timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "kernels" not in line]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_the_console_script_names_a_callable_that_exists():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, name = scripts["llmhead"].split(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_every_command_has_usage_and_a_handler():
    assert set(cli.USAGE) == set(cli.COMMANDS) == set(cli.EXAMPLES)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and re.search(r"^examples?:\n  llmhead " + command, out, re.M), out


def test_every_command_as_a_subprocess(tiny_llama, tmp_path):
    pd.DataFrame(sentiment_rows(3)).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(sentiment_rows(1)).to_csv(tmp_path / "test.csv", index=False)
    bad_column = llmhead_cli("train", "--model", tiny_llama, "--train", tmp_path / "train.csv", "--label", "lable")
    train = finish(
        llmhead_cli(
            *("train", "--model", tiny_llama, "--train", tmp_path / "train.csv", "--test", tmp_path / "test.csv"),
            *("--out", tmp_path / "run", "train.epochs=2", "model.dtype=float32", "model.head_hidden=[]"),
            *("model.head_bias=false", "model.input_norm=scale", "model.pooling=last"),  # a head that exports
        )
    )
    assert train.returncode == 0, train.stderr
    model = tmp_path / "run" / "model"
    assert (model / "README.md").is_file() and "test metrics:" in train.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())

    table = pd.DataFrame({"id": range(8), "text": TEXTS, "note": ["007", "NA", "", "x, y", "a", "b", "c", "d"]})
    table.to_csv(tmp_path / "in.csv", index=False)
    started = {
        "predict": llmhead_cli("predict", model, tmp_path / "in.csv", "--out", tmp_path / "out.csv", "--proba"),
        "evaluate": llmhead_cli("evaluate", model, tmp_path / "test.csv"),
        "check": llmhead_cli("check", model),
        "export": llmhead_cli("export", model, tmp_path / "hf"),
        "info": llmhead_cli("info", model, "--json"),
        "bad text column": llmhead_cli("predict", model, tmp_path / "in.csv", "--text", "txet"),
    }
    done = {name: finish(proc) for name, proc in started.items()}
    for name in ("predict", "evaluate", "check", "export", "info"):
        assert done[name].returncode == 0, (name, done[name].stderr)

    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(out.columns) == ["id", "text", "note", "prediction", "proba_neg", "proba_pos"]
    assert out["note"].tolist() == table["note"].fillna("").tolist() and out["text"].tolist() == TEXTS
    clf = llmhead.load(model)
    assert out["prediction"].tolist() == clf.predict(TEXTS)
    assert out[["proba_neg", "proba_pos"]].astype(float).values == pytest.approx(clf.predict_proba(TEXTS), abs=1e-6)
    assert json.loads(done["evaluate"].stdout) == metrics["test"]
    assert "PASSED" in done["check"].stdout and (tmp_path / "hf" / "config.json").is_file()
    info = json.loads(done["info"].stdout)
    assert info["mode"] == "head" and info["labels"] == ["neg", "pos"] and info["train_examples"] == 22
    assert info["layer"] == 0.75 and info["reads"] == "block 2 of 2 (the final output)"  # 3/4 of 2 blocks: 2
    scalars = {k: v for k, v in metrics["test"].items() if isinstance(v, float)}  # accuracy, macro_f1, ece, brier
    assert info["metrics"] == {str(tmp_path / "test.csv"): scalars} and "accuracy" in scalars
    assert re.search(r"in.csv: no text column 'txet'; did you mean 'text'", error_line(done["bad text column"]))
    assert re.search(r"train.csv: no label column 'lable'; did you mean 'label'", error_line(finish(bad_column)))


# ---- predict, in-process ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tiny_llama, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "model"
    llmhead.from_pretrained(tiny_llama, dtype="float32").fit(sentiment_rows(2), epochs=1, progress=False).save(folder)
    return folder


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(scoring, "CHUNK_ROWS", 3)  # 8 rows: chunks of 3, 3 and 2


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_any(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)


def test_predict_keeps_every_row_and_column_in_order_across_chunks(saved, tmp_path, capsys, small_chunks):
    clf = llmhead.load(saved)
    table = pd.DataFrame({"code": [f"{i:03d}" for i in range(8)], "text": TEXTS, "score": [0.5] * 8})
    table.to_csv(tmp_path / "in.csv", index=False)
    table.to_csv(tmp_path / "in.tsv", sep="\t", index=False)
    table.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    table.to_parquet(tmp_path / "in.parquet")
    # every format is read and every format written
    for source, target in [
        ("csv", "csv"),
        ("csv", "parquet"),
        ("tsv", "tsv"),
        ("jsonl", "csv"),
        ("parquet", "jsonl"),
        ("parquet", "parquet"),
    ]:
        path, out = tmp_path / f"in.{source}", tmp_path / f"out-{source}.{target}"
        code, _, err = run(capsys, "predict", saved, path, "--out", out, "--proba", "--batch-size", 2)
        assert code == 0, err
        got = read_any(out)
        assert list(got.columns) == ["code", "text", "score", "prediction", "proba_neg", "proba_pos"]
        assert got["code"].tolist() == table["code"].tolist() and got["text"].tolist() == TEXTS, (source, target)
        assert got["prediction"].tolist() == clf.predict(TEXTS)
        if source == target == "parquet":  # Arrow types carry through
            assert got["score"].tolist() == [0.5] * 8
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_bad_row_deep_in_the_file_is_named_before_the_model_loads(saved, tmp_path, capsys, small_chunks, monkeypatch):
    rows = [{"text": t} for t in TEXTS]
    rows[6]["text"] = None  # an empty cell
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "out.csv").write_text("previous output\n")
    monkeypatch.setattr(llmhead, "load", lambda *a, **k: pytest.fail("the model loaded before the data was checked"))
    code, _, err = run(capsys, "predict", saved, tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 2 and re.search(
        r"^error: .*in.csv: 1 problem\(s\).* row 7, column 'text': text is missing \(line 8\)", err
    )
    assert (tmp_path / "out.csv").read_text() == "previous output\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_blank_lines_of_a_one_column_input_are_said_once(saved, tmp_path, capsys, caplog):
    (tmp_path / "in.csv").write_text("text\ngood film\n\nbad film\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="llmhead.data.files"):
        code, _, err = run(capsys, "predict", saved, tmp_path / "in.csv", "--out", tmp_path / "out.csv")
    assert code == 0, err
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'in.csv'}: 1 blank line between rows skipped (line 3)"
    ]
    assert pd.read_csv(tmp_path / "out.csv")["text"].tolist() == ["good film", "bad film"]


def stdin(monkeypatch, lines: list[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO("\n".join(lines).encode()))))


def test_standard_input_is_scored_as_it_streams_and_checked_chunk_by_chunk(
    saved, tmp_path, capsys, small_chunks, monkeypatch
):
    lines = [json.dumps({"text": t, "n": i}) for i, t in enumerate(TEXTS)]
    stdin(monkeypatch, lines)
    code, out, err = run(capsys, "predict", saved, "-", "--proba")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["n"] for r in rows] == list(range(8)), err
    assert [r["prediction"] for r in rows] == llmhead.load(saved).predict(TEXTS) and "proba_pos" in rows[0]
    lines[5] = json.dumps({"text": None})
    stdin(monkeypatch, lines)
    code, _, err = run(capsys, "predict", saved, "-", "--out", tmp_path / "out.jsonl")
    assert (
        code == 2 and "standard input: 1 problem(s)" in err and "row 6, column 'text': text is missing (line 6)" in err
    )
    assert list(tmp_path.iterdir()) == []  # the partial output was removed


@pytest.mark.parametrize(
    "make,args,message",
    [
        ("prediction", [], r"in.csv: already has a column 'prediction', which predict adds"),
        (None, ["--out", "{in}"], r"--out .*in.csv is the input file"),
        (None, ["--out", "x.xlsx"], r"x.xlsx: unsupported output file type '.xlsx'"),
        (None, ["--text", "txt"], r"no text column 'txt'; did you mean 'text'"),
        ("json", [], r"in.json: unsupported input file type '.json'.*JSON Lines"),
        ("jsonl-keys", ["--out", "o.csv"], r"row 4 or later has the key 'extra'.*write the output as .jsonl"),
    ],
)
def test_predict_mistakes_are_one_error_line(saved, tmp_path, capsys, small_chunks, make, args, message):
    path = tmp_path / "in.csv"
    frame = pd.DataFrame({"text": TEXTS, "prediction": "x"} if make == "prediction" else {"text": TEXTS})
    frame.to_csv(path, index=False)
    if make == "json":
        path = tmp_path / "in.json"
        frame.to_json(path, orient="records")
    if make == "jsonl-keys":
        path = tmp_path / "in.jsonl"
        rows = [{"text": t} for t in TEXTS]
        rows[4]["extra"] = 1
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [a.replace("{in}", str(path)) if a.startswith("{") else str(tmp_path / a) if "." in a else a for a in args]
    code, _, err = run(capsys, "predict", saved, path, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_regression_has_no_probabilities_and_debug_shows_the_traceback(tiny_llama, tmp_path, capsys):
    rows = [{"text": t, "label": float(i)} for i, t in enumerate(TEXTS)]
    folder = llmhead.from_pretrained(tiny_llama, task="regression", dtype="float32")
    folder = folder.fit(rows, epochs=1, progress=False).save(tmp_path / "r")
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    code, _, err = run(capsys, "predict", folder, tmp_path / "in.csv", "--proba")
    assert code == 2 and "is a regression model: it predicts numbers, so there are no probabilities" in err
    code, out, _ = run(capsys, "predict", folder, tmp_path / "in.csv")
    assert code == 0 and len(pd.read_csv(io.StringIO(out))["prediction"]) == 8
    with pytest.raises(FileNotFoundError, match="is not a saved llmhead model"):
        cli.main(["info", str(tmp_path / "nothing"), "--debug"])


def test_evaluate_passes_report_on_or_says_it_cannot(saved, tmp_path, capsys):
    pd.DataFrame(sentiment_rows(1)).to_csv(tmp_path / "test.csv", index=False)
    code, out, err = run(capsys, "evaluate", saved, tmp_path / "test.csv", "--report", tmp_path / "report")
    if "report" in inspect.signature(llmhead.Classifier.evaluate).parameters:
        assert code == 0 and json.loads(out)["n"] == 8 and (tmp_path / "report").is_dir(), err
    else:
        assert code == 2 and "--report: this version of llmhead cannot write evaluation reports yet" in err
    code, _, err = run(capsys, "evaluate", saved, tmp_path / "test.csv", "--label", "sentiment")
    assert code == 2 and "test.csv: no label column 'sentiment'" in err
    code, _, err = run(capsys, "evaluate", saved, tmp_path / "test.csv", "--report", tmp_path / "report")
    assert code == 0, err  # an earlier report's folder (it has report.html) is written again
    run_dir = tmp_path / "run"  # a training run's folder: its own metrics.json must survive
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"fit_seconds": 1}')
    code, _, err = run(capsys, "evaluate", saved, tmp_path / "test.csv", "--report", run_dir)
    assert code == 2 and "already holds files and no report.html (metrics.json)" in err, err
    assert (run_dir / "metrics.json").read_text() == '{"fit_seconds": 1}' and len(list(run_dir.iterdir())) == 1
    code, _, err = run(capsys, "evaluate", saved, tmp_path / "test.csv", "--report", tmp_path / "test.csv")
    assert code == 2 and "is a file, not a folder" in err


def test_the_llmhead_commands_the_readme_shows_parse():
    """Each `llmhead ...` line of README.md's bash blocks names a real subcommand with its real options."""
    shown = [
        line.split("  #")[0].strip()
        for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
        for line in block.splitlines()
        if line.startswith("llmhead ")
    ]
    assert len(shown) >= 7 and {line.split()[1] for line in shown} == set(cli.COMMANDS)
    for line in shown:
        cli.build_parser().parse_args(shlex.split(line)[1:])  # argparse exits 2 on an unknown option


# ---- the process a command owns -----------------------------------------------------------------------------------
def test_commands_set_glibc_thresholds_at_start_up_and_main_alone_does_not(monkeypatch):
    """`llmhead ...` (the console script) and the recipes keep glibc's heap (startup.keep_heap); cli.main, which
    Python code and these tests call, sets nothing."""
    import runpy

    from llmhead.cli import startup

    calls = []
    monkeypatch.setattr(startup, "keep_heap", lambda: calls.append(1) or True)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the recipes add their folders
    assert not hasattr(cli, "keep_heap")  # imported where it is called, so the patch above is what runs
    with pytest.raises(SystemExit):
        cli.main(["info", "--help"])
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["llmhead", "--help"])
    with pytest.raises(SystemExit):
        cli.run()
    assert calls == [1]
    for recipe in ("train", "ladder", "check"):
        monkeypatch.setattr(sys, "argv", [f"{recipe}.py", "--help"])
        with pytest.raises(SystemExit):
            runpy.run_path(str(ROOT / "recipes" / f"{recipe}.py"), run_name="__main__")
    assert calls == [1] * 4


def test_keep_heap_leaves_the_user_s_choice_alone(monkeypatch):
    from llmhead.cli import startup

    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("LLMHEAD_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert not startup.user_tuned()
    for name, value in (
        ("LLMHEAD_MALLOC", "Default"),
        ("MALLOC_TRIM_THRESHOLD_", "1"),
        ("MALLOC_MMAP_THRESHOLD_", "1048576"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1"),
    ):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            assert startup.user_tuned() and startup.keep_heap() is False, name
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX2")  # not malloc's
    assert not startup.user_tuned()


MALLINFO = """
import ctypes, sys
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Mallinfo2, ctypes.c_void_p
libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
from llmhead.cli.startup import keep_heap
kept = keep_heap()
block = libc.malloc(20 * 2**20)
mapped = libc.mallinfo2().hblkhd  # bytes in blocks mmap'd apart from the heap
libc.free(block)
print(kept, mapped >= 20 * 2**20, libc.mallinfo2().arena >= 20 * 2**20)
"""


@pytest.mark.skipif(sys.platform != "linux" or __import__("platform").libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_heap_makes_glibc_keep_a_freed_20_mb_block_in_its_heap():
    # With glibc's defaults a fresh process maps a 20 MB block apart from the heap and unmaps it when freed; with
    # keep_heap it comes from the heap and stays there after free (mallinfo2: glibc >= 2.33)
    def run(**env):
        clean = {k: v for k, v in os.environ.items() if k not in (*startup_names(), "GLIBC_TUNABLES")}
        proc = subprocess.run(
            [sys.executable, "-c", MALLINFO], capture_output=True, text=True, env={**clean, **env}, cwd=ROOT
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert run() == ["True", "False", "True"]
    assert run(LLMHEAD_MALLOC="default") == ["False", "True", "False"]


def startup_names() -> tuple[str, ...]:
    from llmhead.cli import startup

    return (startup.OPT_OUT, *startup.USERS)


def test_train_overrides_may_follow_options_and_are_never_taken_as_columns(tmp_path, monkeypatch, capsys):
    from llmhead.cli import recipe

    seen = []
    monkeypatch.setattr(recipe, "train", lambda raw: seen.append(raw) or {})
    args = ("train", "--train", "t.csv", "threads=1", "--mode", "probe", "train.epochs=1", "--out", tmp_path / "r")
    code, _, err = run(capsys, *args)
    assert code == 0, err
    assert seen[-1]["threads"] == 1 and seen[-1]["train"]["epochs"] == 1 and seen[-1]["model"]["mode"] == "probe"
    code, _, err = run(capsys, "train", "--train", "t.csv", "--label", "label", "threads=1")
    assert code == 2 and "--label label threads=1: 'threads=1' is a key=value override, not a column name" in err
    code, _, err = run(capsys, "train", "--train", "t.csv", "--mode", "probe", "stray")
    assert code == 2 and "config file not found: stray" in err
    code, _, err = run(capsys, "info", tmp_path, "threads=1")
    assert code == 2 and "unrecognized arguments: threads=1" in err


def test_export_refuses_its_own_folder_and_a_foreign_one_before_loading(saved, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(llmhead, "load", lambda *a, **k: pytest.fail("the model loaded before the folder was checked"))
    code, _, err = run(capsys, "export", saved, saved)
    assert code == 2 and "is the model's own folder: export to another folder" in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")
    code, _, err = run(capsys, "export", saved, tmp_path / "notes")
    assert code == 2 and "is a non-empty folder that is not a transformers export (no config.json)" in err
    assert (tmp_path / "notes" / "mine.txt").read_text() == "mine"

"""The training recipe end to end on a tiny model, asserting on the files it writes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_rows

import llmhead

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
import train as recipe  # noqa: E402


def test_recipe_trains_saves_and_reports(tiny_llama, tmp_path):
    pd.DataFrame(sentiment_rows(3)).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(sentiment_rows(1)).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    out = tmp_path / "run"
    result = recipe.main(
        [
            "--config",
            str(ROOT / "recipes/configs/csv_example.yaml"),
            f"output_dir={out}",
            f"model.model={tiny_llama}",
            "model.dtype=float32",
            f"data.train={tmp_path / 'train.csv'}",
            f"data.test={tmp_path / 'test.jsonl'}",
            "train.epochs=3",
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 8 and 0 <= metrics["test"]["accuracy"] <= 1
    assert metrics["evaluations"] == 3 and metrics["config"]["train"]["epochs"] == 3
    assert result["test"] == metrics["test"]
    assert {p.name for p in (out / "model").iterdir()} == {"llmhead.json", "head.safetensors", "tokenizer", "README.md"}
    clf = llmhead.load(out / "model")
    assert clf.evaluate(tmp_path / "test.jsonl") == metrics["test"]


def test_unknown_key_names_the_nearest(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key 'train.epoch': did you mean 'epochs'"):
        recipe.load_config(str(ROOT / "recipes/configs/csv_example.yaml"), ["train.epoch=3"])
    with pytest.raises(ValueError, match=r"unknown key 'ouput_dir'.*'output_dir'"):
        recipe.load_config(None, ["ouput_dir=x", "data.train=a.csv"])


def test_unseen_test_label_fails_before_training(tiny_llama, tmp_path, monkeypatch, capsys):
    pd.DataFrame(sentiment_rows(2)).to_csv(tmp_path / "train.csv", index=False)
    rows = sentiment_rows(1)
    rows[2]["label"] = "mixed"
    pd.DataFrame(rows).to_csv(tmp_path / "test.csv", index=False)
    monkeypatch.setattr(llmhead.Classifier, "fit", lambda *a, **k: pytest.fail("trained before checking test data"))
    with pytest.raises(SystemExit) as exit_:
        recipe.main(
            [
                f"model.model={tiny_llama}",
                f"data.train={tmp_path / 'train.csv'}",
                f"data.test={tmp_path / 'test.csv'}",
                f"output_dir={tmp_path / 'run'}",
            ]
        )
    assert exit_.value.code == 2 and re.search(r"^error: .*row 3: 'mixed'", capsys.readouterr().err)


@pytest.mark.parametrize(
    "make, message",
    [
        ("file", r"run is a file, so .*run/model cannot be made under it"),
        ("foreign", r"run/model is a non-empty folder that is not a saved llmhead model"),
        ("metrics dir", r"run/metrics.json is not a file: the run writes its metrics there"),
    ],
)
def test_an_output_dir_that_cannot_take_the_run_fails_before_training(
    tiny_llama, tmp_path, monkeypatch, capsys, make, message
):
    pd.DataFrame(sentiment_rows(2)).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "run"
    if make == "file":
        out.write_text("notes")
    elif make == "foreign":
        (out / "model").mkdir(parents=True)
        (out / "model" / "notes.txt").write_text("mine")
    else:
        (out / "metrics.json").mkdir(parents=True)
    monkeypatch.setattr(llmhead.Classifier, "fit", lambda *a, **k: pytest.fail("trained before checking output_dir"))
    with pytest.raises(SystemExit) as exit_:
        recipe.main([f"model.model={tiny_llama}", f"data.train={tmp_path / 'train.csv'}", f"output_dir={out}"])
    assert exit_.value.code == 2 and re.search("^error: .*" + message, capsys.readouterr().err.strip().split("\n")[-1])
    assert make != "foreign" or (out / "model" / "notes.txt").read_text() == "mine"


def test_recipe_cli_reports_errors_cleanly(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes/train.py"), "data.train=" + str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "missing.csv: file not found" in proc.stderr


# ---- every configuration or data problem: one error line, exit code 2, before any model loads -------------------
def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_model(monkeypatch):
    """Fail if anything of a model (tokenizer, config, weights) would load."""
    from llmhead.model import backbone

    for name in ("load_tokenizer", "model_config", "load_backbone"):
        monkeypatch.setattr(backbone, name, lambda *a, _n=name, **k: pytest.fail(f"{_n} called: a model loads"))


def error_line(capsys, exit_) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "kernels" not in line]
    assert exit_.value.code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


TRAIN_CASES = [  # (config file text or None, overrides, the error line)
    ("train:\n  lr: 1e-3\n  epochs: [\n", [], r"bad.yaml is not valid YAML \(line 4, column 1\)"),
    ("model: {mode: head\n", [], r"is not valid YAML \(line \d+, column \d+\)"),
    ("- a\n- b\n", [], r"must hold a mapping of sections \(data:, model:, train:...\), got \['a', 'b'\]"),
    ("train: [1, 2]\n", [], r"invalid configuration: the train section must be a mapping of key: value, got \[1, 2\]"),
    ("model: 5\n", [], r"the model section must be a mapping of key: value, got 5"),
    ("train:\n  lr: abc\n", [], r"invalid configuration in train: lr must be a positive number, got 'abc'"),
    (None, ["threads=two"], r"invalid configuration: threads must be an int >= 1 or null, got 'two'"),
    (None, ["output_dir=[]"], r"output_dir must be a folder path, got \[\]"),
    (None, ["train.epoch=3"], r"unknown key 'train.epoch': did you mean 'epochs'"),
    (None, ["ouput_dir=x"], r"unknown key 'ouput_dir': did you mean 'output_dir'"),
    (None, ["train.epochs=1.5"], r"epochs must be an int >= 0 .*got 1.5"),
    (None, ["model.seed=x"], r"invalid configuration in model: seed must be an int .*got 'x'"),
    (None, ["train.lr=-1", "train.epochs=-2"], r"invalid configuration in train: epochs must be .*; lr must be"),
    (None, ["train.run_dir=r"], r"run_dir is not used by mode='head' \(only by lora, qlora, full\): remove it"),
    (None, ["train.grad_accum=2"], r"grad_accum is not used by mode='head'"),
    (None, ["model.lora_r=8"], r"lora_r is not used by mode='head' \(only by lora, qlora, auto\)"),
    (None, ["model.mode=icl", "train.augment=2"], r"augment is not used by mode='icl'"),
    (None, ["model.mode=probe", "model.probe_c=0"], r"probe_c must be a number > 0 or None, got 0"),
    (None, ["data.train_limit=x"], r"invalid configuration in data: train_limit must be an int >= 1 or null, got 'x'"),
    (
        None,
        ["data.dataset=rotten_tomatoes"],
        r"in data: set exactly one of dataset \(a packaged corpus\) or train \(a file\)",
    ),
    (None, ["data.text=5"], r"in data: text must be a column name or a list of column names, got 5"),
    (None, ["train.lr"], r"override 'train.lr' must look like key=value"),
    (None, ["train=5", "train.lr=1"], r"override 'train.lr=1': train is 5, not a section of key: value"),
    (None, ["train.lr=[1"], r"override 'train.lr=\[1' is not valid YAML"),
    (None, ["model.model=smollm2"], r"unknown model alias 'smollm2'; did you mean 'smollm2-135m'"),
    (None, ["model.model=./not/here"], r"model directory not found"),
    (None, ["model.model=nobody/does-not-exist-xyz"], r"'nobody/does-not-exist-xyz' .*hub is offline"),
    (None, ["data.train=MISSING"], r"missing.csv: file not found"),
    (None, ["data.train=TXT"], r"train.txt: unsupported file type '.txt'"),
    (None, ["data.label=sentiment"], r"train.csv: no label column 'sentiment'"),
    (None, ["data.test=MISSING"], r"missing.csv: file not found"),
]


@pytest.mark.parametrize("text,overrides,message", TRAIN_CASES)
def test_train_recipe_problems_are_one_error_line(
    tiny_llama, tmp_path, monkeypatch, capsys, no_model, text, overrides, message
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id is refused when resolved: no request is made
    pd.DataFrame(sentiment_rows(1)).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "train.txt").write_text("a text\n")
    files = {"=MISSING": f"={tmp_path / 'missing.csv'}", "=TXT": f"={tmp_path / 'train.txt'}"}
    for placeholder, path in files.items():
        overrides = [o.replace(placeholder, path) for o in overrides]
    argv = [f"data.train={tmp_path / 'train.csv'}", f"output_dir={tmp_path / 'run'}"]
    if text is None:
        argv.append(f"model.model={tiny_llama}")
    else:
        (tmp_path / "bad.yaml").write_text(text)
        argv = ["--config", str(tmp_path / "bad.yaml"), *argv]
    with pytest.raises(SystemExit) as exit_:
        recipe.main(argv + overrides)
    assert re.search(message, error_line(capsys, exit_))
    assert not (tmp_path / "run").exists()


def test_numbers_are_read_as_yaml_1_2(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as a string and `on` as true; the recipe reads numbers and words as written."""
    (tmp_path / "c.yaml").write_text("train:\n  augment_p: 5E-2\n  lr: 1e-3\n")
    overrides = ["data.train=a.csv", "train.batch_size=1_000", "train.augment=1", "train.warmup_ratio=.5"]
    cfg = recipe.load_config(str(tmp_path / "c.yaml"), [*overrides, "train.weight_decay=+1.5E+1"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float) and cfg.train.augment_p == 0.05
    assert cfg.train.batch_size == 1000 and cfg.train.warmup_ratio == 0.5 and cfg.train.weight_decay == 15.0
    cfg = recipe.load_config(None, ["data.train=a.csv", "model.mode=icl", "model.chat_template=on"])
    assert cfg.model.chat_template == "on"
    raw = recipe.read_raw(None, ["a.b=true", "a.c=no", "a.d=null", "a.e=[]", "a.f=1.0", "a.g='5'", "a.h=.inf"])
    assert raw["a"] == {"b": True, "c": "no", "d": None, "e": [], "f": 1.0, "g": "5", "h": float("inf")}


def run_cli(script: str, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "recipes" / script), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize(
    "script,make,args,message",
    [
        ("train.py", "train:\n  lr: 1e-3\n  epochs: [\n", [], r"c.yaml is not valid YAML \(line 4, column 1\)"),
        ("train.py", None, ["threads=two", "data.train=x.csv"], r"threads must be an int >= 1 or null, got 'two'"),
        ("train.py", "train: [1, 2]\n", ["data.train=x.csv"], r"the train section must be a mapping"),
        ("ladder.py", "ladder: {folds: 1}\n", ["data.train=x.csv"], r"in ladder: ladder.folds must be an int >= 2"),
        ("check.py", None, ["not-a-model"], r"not-a-model is not a saved llmhead model"),
    ],
)
def test_recipe_cli_problems_exit_2_with_one_line(tmp_path, script, make, args, message):
    if make is not None:
        (tmp_path / "c.yaml").write_text(make)
        args = ["--config", tmp_path / "c.yaml", *args]
    proc = run_cli(script, *args, cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "kernels" not in line]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0]), proc.stderr


LADDER_CASES = [
    (["ladder.folds=1"], r"invalid configuration in ladder: ladder.folds must be an int >= 2, got 1"),
    (["ladder.budget_s=soon"], r"ladder.budget_s must be a number of seconds > 0, got 'soon'"),
    (["ladder.rungs=[lora, adapters]"], r"ladder.rungs must be null or a non-empty list from"),
    (["ladder=[1]"], r"the ladder section must be a mapping of key: value, got \[1\]"),
    (["ladder.budget=5"], r"unknown key 'ladder.budget': did you mean 'budget_s'"),
    (["model.mode=head"], r"model.mode='head': the ladder picks the mode for each rung; remove model.mode"),
    (["model.task=regression"], r"model.task='regression': the ladder's rungs include prompting"),
    (["train.run_dir=r"], r"run_dir is not used by mode='auto'.*folds would share one run_dir"),
    (["model.long_inputs=chunk"], r"long_inputs is not used by mode='auto'"),
    (["model.seed=x"], r"seed must be an int"),
    (["data.eval=e.csv"], r"data.eval is not used by the ladder \(it cross-validates data.train\): remove it"),
    (["data.train=MISSING"], r"missing.csv: file not found"),
    (["model.model=nobody/does-not-exist-xyz"], r"'nobody/does-not-exist-xyz' .*hub is offline"),
]


@pytest.mark.parametrize("overrides,message", LADDER_CASES)
def test_ladder_recipe_problems_are_one_error_line(
    tiny_llama, tmp_path, monkeypatch, capsys, no_model, overrides, message
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ladder = load_recipe("ladder")
    monkeypatch.setattr(ladder, "run_ladder", lambda *a, **k: pytest.fail("the ladder ran"))
    pd.DataFrame(sentiment_rows(1)).to_csv(tmp_path / "train.csv", index=False)
    overrides = [o.replace("=MISSING", f"={tmp_path / 'missing.csv'}") for o in overrides]
    argv = [f"model.model={tiny_llama}", f"data.train={tmp_path / 'train.csv'}", f"output_dir={tmp_path / 'run'}"]
    with pytest.raises(SystemExit) as exit_:
        ladder.main(argv + overrides)
    assert re.search(message, error_line(capsys, exit_))


def test_ladder_recipe_checks_its_shipped_config(tmp_path, monkeypatch):
    """ladder.yaml's model and train sections are valid for mode='auto' (verbalizers, icl_shots, dropout...)."""
    ladder = load_recipe("ladder")

    class Ran(Exception):
        pass

    def run_ladder(*args, **kwargs):
        raise Ran(kwargs)

    monkeypatch.setattr(ladder, "run_ladder", run_ladder)
    pd.DataFrame(sentiment_rows(1)).to_csv(tmp_path / "train.csv", index=False)
    config = ["--config", str(ROOT / "recipes/configs/ladder.yaml"), "data.dataset=null", f"output_dir={tmp_path}"]
    with pytest.raises(Ran) as ran:
        ladder.main([*config, f"data.train={tmp_path / 'train.csv'}", "model.model=smollm2-135m"])
    kwargs = ran.value.args[0]
    assert kwargs["verbalizers"] == {"fresh": "positive", "rotten": "negative"} and kwargs["fit"]["lr"] == 0.0003
    assert "mode" not in kwargs


@pytest.mark.parametrize(
    "args,message",
    [
        (["MISSING"], r"missing is not a saved llmhead model: llmhead.json is missing"),
        (["FOLDER", "--texts-file", "MISSING"], r"texts file not found: .*missing"),
        (["FOLDER", "--texts-file", "EMPTY"], r"empty.txt holds no text \(one text per line\)"),
    ],
)
def test_check_recipe_problems_are_one_error_line(tmp_path, capsys, args, message):
    (tmp_path / "empty.txt").write_text("\n  \n")
    paths = {"MISSING": tmp_path / "missing", "FOLDER": tmp_path, "EMPTY": tmp_path / "empty.txt"}
    with pytest.raises(SystemExit) as exit_:
        load_recipe("check").main([str(paths.get(a, a)) for a in args])
    assert re.search(message, error_line(capsys, exit_))


def test_a_label_column_named_as_text_fails_before_torch_loads_a_model(tiny_llama, tmp_path, monkeypatch, capsys):
    pd.DataFrame(sentiment_rows(2)).to_csv(tmp_path / "train.csv", index=False)
    monkeypatch.setattr(llmhead, "Classifier", lambda *a, **k: pytest.fail("the model resolved before the check"))
    with pytest.raises(SystemExit) as exit_:
        recipe.main([f"model.model={tiny_llama}", f"data.train={tmp_path / 'train.csv'}", "data.text=label"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "column 'label' is both a text and a label column" in err

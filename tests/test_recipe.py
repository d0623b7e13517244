"""The training recipe end to end on a tiny model, asserting on the files it writes."""

from __future__ import annotations

import json
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
    assert {p.name for p in (out / "model").iterdir()} == {"llmhead.json", "head.safetensors", "tokenizer"}
    clf = llmhead.load(out / "model")
    assert clf.evaluate(tmp_path / "test.jsonl") == metrics["test"]


def test_unknown_key_names_the_nearest(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key 'train.epoch': did you mean 'epochs'"):
        recipe.load_config(str(ROOT / "recipes/configs/csv_example.yaml"), ["train.epoch=3"])
    with pytest.raises(ValueError, match=r"unknown key 'ouput_dir'.*'output_dir'"):
        recipe.load_config(None, ["ouput_dir=x", "data.train=a.csv"])


def test_unseen_test_label_fails_before_training(tiny_llama, tmp_path, monkeypatch):
    pd.DataFrame(sentiment_rows(2)).to_csv(tmp_path / "train.csv", index=False)
    rows = sentiment_rows(1)
    rows[2]["label"] = "mixed"
    pd.DataFrame(rows).to_csv(tmp_path / "test.csv", index=False)
    monkeypatch.setattr(llmhead.Classifier, "fit", lambda *a, **k: pytest.fail("trained before checking test data"))
    with pytest.raises(llmhead.DataError, match=r"row 3: 'mixed'"):
        recipe.main(
            [
                f"model.model={tiny_llama}",
                f"data.train={tmp_path / 'train.csv'}",
                f"data.test={tmp_path / 'test.csv'}",
                f"output_dir={tmp_path / 'run'}",
            ]
        )


def test_recipe_cli_reports_errors_cleanly(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes/train.py"), "data.train=" + str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "missing.csv: file not found" in proc.stderr


def test_check_recipe_on_a_saved_model(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", head_hidden=[], head_bias=False, input_norm="scale")
    clf.fit(sentiment_rows(1), epochs=2).save(tmp_path / "m")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes/check.py"), str(tmp_path / "m")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "PASSED" in proc.stdout and "export_transformers" in proc.stdout


def test_recipe_lora_mode_writes_log_and_checkpoints(tiny_llama, tmp_path):
    pd.DataFrame(sentiment_rows(3)).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "run"
    recipe.main(
        [
            "--config",
            str(ROOT / "recipes/configs/lora.yaml"),
            f"output_dir={out}",
            f"model.model={tiny_llama}",
            "model.template='{text}'",
            "data.dataset=null",
            f"data.train={tmp_path / 'train.csv'}",
            "data.train_limit=20",
            f"train.run_dir={out / 'r'}",
            "train.checkpoint_every=2",
            "train.eval_every=2",
            "train.batch_size=4",
        ]
    )
    assert (out / "model" / "adapter.safetensors").is_file()
    steps = [line for line in (out / "r" / "train_log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 5  # 18 training examples after the 10% validation split, batch 4
    assert sorted(p.name for p in (out / "r" / "checkpoints").iterdir()) == ["step-2", "step-4"]
    evals = [line for line in (out / "r" / "train_log.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [json.loads(e)["eval"]["step"] for e in evals] == [2, 4, 5]  # the last steps are evaluated too

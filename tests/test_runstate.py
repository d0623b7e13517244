"""Training checkpoints, in-process: every file checked on resume, a damaged checkpoint falls back to the one
before it, and the learning-rate schedule counts optimizer steps under gradient accumulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CORPUS

import llmhead
from llmhead.finetuning.runstate import DamagedCheckpoint, ResumeError


def rows(n: int = 24) -> list[dict]:
    return [{"text": f"{CORPUS[i % 8]} {i}", "label": ["pos", "neg"][i % 2]} for i in range(n)]


def fit(model: str, run_dir: Path, **options):
    clf = llmhead.from_pretrained(model, mode="lora", lora_r=4, head_hidden=[16], seed=0)
    settings = dict(epochs=1, batch_size=4, lr=1e-2, warm_start=False, progress=False, run_dir=str(run_dir))
    return clf.fit(rows(), rows(8), **{**settings, **options})


def log_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_a_damaged_checkpoint_falls_back_to_the_one_before_it(tiny_llama, tmp_path, caplog):
    run_dir = tmp_path / "r"
    fit(tiny_llama, run_dir, checkpoint_every=2, keep_checkpoints=2)
    newest = run_dir / "checkpoints" / "step-6"
    data = bytearray((newest / "optimizer.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (newest / "optimizer.safetensors").write_bytes(bytes(data))
    fit(tiny_llama, run_dir, checkpoint_every=2, keep_checkpoints=2, resume=True)
    assert (
        "optimizer.safetensors: damaged" in caplog.text
        and "resuming from the checkpoint before it, step-4" in caplog.text
    )
    replayed = [r["step"] for r in log_lines(run_dir) if "loss" in r]
    assert replayed == [1, 2, 3, 4, 5, 6, 5, 6]  # steps 5 and 6 ran again from step 4


def test_a_damaged_only_checkpoint_is_an_error_naming_the_file(tiny_llama, tmp_path):
    run_dir = tmp_path / "r"
    fit(tiny_llama, run_dir, checkpoint_every=6, keep_checkpoints=1)
    (run_dir / "checkpoints" / "step-6" / "rng-rank0.json").write_text("{}")
    with pytest.raises(DamagedCheckpoint, match=r"step-6/rng-rank0.json: damaged"):
        fit(tiny_llama, run_dir, checkpoint_every=6, keep_checkpoints=1, resume=True)


def test_the_schedule_counts_optimizer_steps_under_gradient_accumulation(tiny_llama, tmp_path):
    # 24 examples, batch 4, grad_accum 2: 3 optimizer steps; a linear schedule without warmup reaches 0 only after
    # the last one (it stepped on every micro-batch before, reaching 0 half-way through training)
    run_dir = tmp_path / "r"
    fit(tiny_llama, run_dir, grad_accum=2, schedule="linear", warmup_ratio=0.0)
    lrs = [r["lr"] for r in log_lines(run_dir) if "loss" in r]
    assert len(lrs) == 3 and lrs[-1] == 0.0 and all(lr > 0 for lr in lrs[:-1])
    assert lrs[1] == pytest.approx(lrs[0] / 2)  # 2/3 of the peak after step 1, 1/3 after step 2


def test_a_second_run_in_the_same_run_dir_is_refused_while_the_first_trains(tiny_llama, tmp_path):
    import fcntl

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    with open(run_dir / ".lock", "a") as held:  # as a run in another process holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ResumeError, match="is in use by another training run"):
            fit(tiny_llama, run_dir)
    fit(tiny_llama, run_dir)  # free again: trains
    assert (run_dir / "train_log.jsonl").is_file()

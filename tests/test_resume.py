"""Resume is bit for bit with the defaults on (short attention, length grouping, bf16 autocast where native, the
warm start, head dropout), for LoRA and full fine-tuning, in 1 and 2 processes: a run killed with SIGKILL at 5
seeded random steps, or stopped with SIGTERM, then resumed each time, ends with the uninterrupted run's losses
and weights. Resume refuses another run's data or settings. Each run is a real subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_distributed_resume import ENV, SCRIPT, run, step_losses, weights

STEPS = 12  # 2 epochs x 24 examples / global batch 4
DEFAULTS = [("warm_start", True), ("dropout", 0.1), ("checkpoint_every", 1), ("keep_checkpoints", 2)]


def command(model: str, out: Path, options, procs: int) -> list[str]:
    opts = [f"{k}={json.dumps(v)}" for k, v in options]
    if procs == 1:
        return [sys.executable, str(SCRIPT), model, str(out), *opts]
    torchrun = Path(sys.executable).parent / "torchrun"
    return [str(torchrun), "--standalone", f"--nproc_per_node={procs}", str(SCRIPT), model, str(out), *opts]


def last_step(run_dir: Path) -> int:
    log = run_dir / "train_log.jsonl"
    steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines()] if log.is_file() else []
    return max(steps, default=0)


def interrupt(cmd: list[str], run_dir: Path, after_step: int, sig: signal.Signals) -> subprocess.Popen:
    """Start ``cmd``; once step ``after_step`` is logged, send ``sig`` to it and every process it started (as a
    cluster scheduler does)."""
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last_step(run_dir) >= after_step:
            os.killpg(proc.pid, sig)
            break
        time.sleep(0.005)
    return proc


def batch_for(procs: int) -> int:
    return 4 // procs  # the same global batch


@pytest.mark.parametrize("mode,procs", [("lora", 1), ("full", 1), ("lora", 2), ("full", 2)])
def test_sigkill_at_five_seeded_random_steps_then_resume_is_exact(tiny_llama, tmp_path, mode, procs):
    options = [("mode", mode), ("batch_size", batch_for(procs)), *DEFAULTS]
    run(tiny_llama, tmp_path / "straight", ("run_dir", str(tmp_path / "straight_run")), *options, procs=procs)
    reference = step_losses(tmp_path / "straight_run")
    assert len(reference) == STEPS

    kills = sorted(random.Random(f"{mode}-{procs}").sample(range(1, STEPS), 5))  # seeded: the same steps each run
    run_dir, out = tmp_path / "killed_run", tmp_path / "killed"
    cmd = command(tiny_llama, out, [("run_dir", str(run_dir)), ("resume", True), *options], procs)
    for k in kills:
        proc = interrupt(cmd, run_dir, k, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), f"ended before the kill at {k}: {stderr}"
        assert not out.exists()
    run(tiny_llama, out, ("run_dir", str(run_dir)), ("resume", True), *options, procs=procs)

    assert step_losses(run_dir) == reference, f"killed after steps {kills}"
    for rank in range(procs):
        straight, resumed = weights(tmp_path / "straight", rank), weights(out, rank)
        assert set(straight) == set(resumed)
        differ = [k for k in straight if not torch.equal(straight[k], resumed[k])]
        assert not differ, f"killed after steps {kills}: rank {rank} differs on {differ[:3]}"


@pytest.mark.parametrize("mode,procs", [("lora", 1), ("full", 2)])
def test_sigterm_checkpoints_every_rank_at_one_step_and_resume_is_exact(tiny_llama, tmp_path, mode, procs):
    options = [("mode", mode), ("batch_size", batch_for(procs)), *DEFAULTS[:2]]  # no periodic checkpoints
    run(tiny_llama, tmp_path / "straight", ("run_dir", str(tmp_path / "straight_run")), *options, procs=procs)
    run_dir, out = tmp_path / "run", tmp_path / "out"
    step = random.Random(f"term-{mode}").randint(2, STEPS - 2)
    proc = interrupt(
        command(tiny_llama, out, [("run_dir", str(run_dir)), *options], procs), run_dir, step, signal.SIGTERM
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert "interrupted: SIGTERM: checkpoint written at step" in stdout, stderr[-3000:]
    written = [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step-")]
    assert len(written) == 1 and all((written[0] / f"rng-rank{r}.json").is_file() for r in range(procs))
    run(tiny_llama, out, ("run_dir", str(run_dir)), ("resume", True), *options, procs=procs)
    assert step_losses(run_dir) == step_losses(tmp_path / "straight_run")
    straight, resumed = weights(tmp_path / "straight"), weights(out)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_checkpoints_hold_only_safetensors_and_json(tiny_llama, tmp_path):
    run(tiny_llama, tmp_path / "out", ("run_dir", str(tmp_path / "r")), ("epochs", 1), ("checkpoint_every", 3))
    files = [p for p in (tmp_path / "r" / "checkpoints").rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} == {".safetensors", ".json"}


def _planted_pickle(folder: Path, marker: Path) -> None:
    """A pickle that creates ``marker`` when unpickled, under every name accelerate's load_state reads."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
        (folder / name).write_bytes(pickle.dumps(Payload()))


def test_a_planted_pickle_in_a_checkpoint_executes_nothing_on_resume(tiny_llama, tmp_path):
    run_dir = tmp_path / "r"
    run(tiny_llama, tmp_path / "a", ("run_dir", str(run_dir)), ("epochs", 1), ("checkpoint_every", 2))
    marker = tmp_path / "pwned"
    for folder in (run_dir / "checkpoints").glob("step-*"):
        _planted_pickle(folder, marker)
    run(tiny_llama, tmp_path / "b", ("run_dir", str(run_dir)), ("resume", True), ("epochs", 1), ("checkpoint_every", 2))
    assert not marker.exists()


@pytest.mark.parametrize(
    "change,expected",
    [
        (("invert_labels", True), "the train data: same number of examples (24), different labels"),
        (("n_train", 20), "the train data: 24 examples in the run, 20 now"),
        (("lr", 0.02), "train.lr: 0.01 in the run, 0.02 now"),
        (("lora_r", 8), "model.lora_r: 4 in the run, 8 now"),
    ],
)
def test_resume_refuses_other_data_or_settings_and_says_what_differs(tiny_llama, tmp_path, change, expected):
    run_dir = tmp_path / "r"
    run(tiny_llama, tmp_path / "a", ("run_dir", str(run_dir)), ("epochs", 1), ("checkpoint_every", 2))
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    proc = run(
        tiny_llama, tmp_path / "b", ("run_dir", str(run_dir)), ("resume", True), ("epochs", 1), change, check=False
    )
    assert proc.returncode != 0 and "resume refused" in proc.stderr and expected in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "b").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before  # nothing touched


def test_a_fresh_run_refuses_a_run_dir_that_holds_another_runs_checkpoints(tiny_llama, tmp_path):
    run_dir = tmp_path / "r"
    run(tiny_llama, tmp_path / "a", ("run_dir", str(run_dir)), ("epochs", 1), ("checkpoint_every", 2))
    proc = run(tiny_llama, tmp_path / "b", ("run_dir", str(run_dir)), ("epochs", 1), check=False)
    assert proc.returncode != 0 and "already holds checkpoints" in proc.stderr and "resume=True" in proc.stderr

"""Resume is bit for bit with the defaults on (short attention, length grouping, bf16 autocast where native, the
warm start, head dropout), for LoRA and full fine-tuning, in 1 and 2 processes: a run killed with SIGKILL at 5
seeded random steps, or stopped with SIGTERM, then resumed each time, ends with the uninterrupted run's losses
and weights. Resume refuses another run's data or settings.

Each run is a real OS process, killed or stopped by a real signal mid-training. The uninterrupted reference runs
are fresh processes (torchrun for 2); the interrupted and resumed ones are forked from servers that imported
everything once (zygote.py): a fresh process spends ~5 s importing, the training ~1 s. A 2-process run is 2
processes training with accelerate over gloo (MULTI_CPU) in both cases, and the forked runs must end with the
fresh reference's exact losses and weights, so whatever forking changed would show."""

from __future__ import annotations

import contextlib
import json
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import CORPUS
from test_distributed_resume import ENV, SCRIPT, step_losses, weights
from zygote import Launcher, Run

import llmhead
from llmhead.finetuning.runstate import ResumeError

STEPS = 12  # 2 epochs x 24 examples / global batch 4
DEFAULTS = [("warm_start", True), ("dropout", 0.1), ("checkpoint_every", 1), ("keep_checkpoints", 2)]


def script_args(model: str, out: Path, options) -> list[str]:
    return [model, str(out), *(f"{k}={json.dumps(v)}" for k, v in options)]


@pytest.fixture(scope="module")
def forks(tmp_path_factory):
    """The fork servers the interrupted and resumed runs come from (see zygote.py)."""
    launcher = Launcher(tmp_path_factory.mktemp("zygote"), ENV)
    yield launcher
    launcher.close()


def logged_steps(run_dir: Path, skip: int = 0) -> list[int]:
    log = run_dir / "train_log.jsonl"
    lines = log.read_text().splitlines()[skip:] if log.is_file() else []
    return [json.loads(line)["step"] for line in lines if line.startswith('{"step"')]


def interrupt(
    forks: Launcher, args, procs: int, run_dir: Path, after_step: int, sig, folder: Path, only_rank=None
) -> Run:
    """Start a run; once it logs step ``after_step`` (or a later one), send ``sig`` to every process of it, as a
    cluster scheduler or a node failure does (or to rank ``only_rank`` alone)."""
    log = run_dir / "train_log.jsonl"
    skip = len(log.read_text().splitlines()) if log.is_file() else 0
    run = forks.start(args, procs, folder)
    deadline = time.time() + 300
    while time.time() < deadline and run.running():
        if any(s >= after_step for s in logged_steps(run_dir, skip)):
            if only_rank is None:
                run.send_signal(sig)
            else:
                run.processes[only_rank].send_signal(sig)
            break
        time.sleep(0.002)  # a run ends ~50 ms after logging its next-to-last step
    return run


def resume(forks: Launcher, args, procs: int, folder: Path) -> None:
    run = forks.start(args, procs, folder)
    codes = run.wait(300)
    assert codes == [0] * procs, f"exit statuses {codes}: {run.stdout[-3000:]}{run.stderr[-5000:]}"


class Straight:
    """The uninterrupted run of one (mode, processes) as a fresh process (torchrun for 2), started in the background
    (its start-up overlaps the forked runs it is compared with): its per-step losses and its weights per rank."""

    def __init__(self, model: str, base: Path, mode: str, procs: int):
        self.base, self.procs, self.value = base, procs, None
        args = script_args(model, base / "out", [("run_dir", str(base / "run")), *options(mode, procs)])
        if procs == 1:
            cmd = [sys.executable, str(SCRIPT), *args]
        else:
            torchrun = Path(sys.executable).parent / "torchrun"
            cmd = [str(torchrun), "--standalone", f"--nproc_per_node={procs}", str(SCRIPT), *args]
        with open(base / "output.txt", "w") as output:
            self.proc = subprocess.Popen(cmd, env=ENV, stdout=output, stderr=subprocess.STDOUT)

    def result(self):
        if self.value is None:
            code = self.proc.wait(timeout=600)
            assert code == 0, (self.base / "output.txt").read_text()[-5000:]
            self.value = (step_losses(self.base / "run"), [weights(self.base / "out", r) for r in range(self.procs)])
        return self.value

    def stop(self) -> None:
        """Kill it and its workers if it is still running (a test failed before waiting for it)."""
        if self.proc.poll() is None:
            parent = psutil.Process(self.proc.pid)
            for process in [*parent.children(recursive=True), parent]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def straight(tiny_llama, tmp_path_factory):
    """Each (mode, processes)'s uninterrupted run, once. The runs it is compared with are forked (zygote.py): a
    difference forking made would show."""
    started: dict[tuple[str, int], Straight] = {}

    def get(mode: str, procs: int) -> Straight:
        if (mode, procs) not in started:
            started[mode, procs] = Straight(
                tiny_llama, tmp_path_factory.mktemp(f"straight-{mode}-{procs}"), mode, procs
            )
        return started[mode, procs]

    yield get
    for reference in started.values():
        reference.stop()


def options(mode: str, procs: int) -> list[tuple]:
    return [("mode", mode), ("batch_size", 4 // procs), *DEFAULTS]  # the same global batch


def assert_same_run(reference, run_dir: Path, out: Path, procs: int, what: str) -> None:
    losses, final = reference
    assert len(losses) == STEPS
    assert step_losses(run_dir) == losses, what
    for rank in range(procs):
        resumed = weights(out, rank)
        assert set(final[rank]) == set(resumed)
        differ = [k for k in resumed if not torch.equal(final[rank][k], resumed[k])]
        assert not differ, f"{what}: rank {rank} differs on {differ[:3]}"


@pytest.mark.parametrize("mode,procs", [("lora", 1), ("full", 1), ("lora", 2), ("full", 2)])
def test_sigkill_at_five_seeded_random_steps_then_resume_is_exact(tiny_llama, tmp_path, straight, forks, mode, procs):
    reference = straight(mode, procs)
    # seeded: the same steps each run; never the last 2, after which the run ends within ~50 ms, too soon to be sure
    # the kill lands before it does on a loaded machine
    seed = f"{mode}-{procs}"
    kills = sorted(random.Random(seed).sample(range(1, STEPS - 2), 5))
    drawn = f"kill steps {kills}, drawn with random.Random({seed!r})"
    run_dir, out = tmp_path / "run", tmp_path / "out"
    args = script_args(tiny_llama, out, [("run_dir", str(run_dir)), ("resume", True), *options(mode, procs)])
    for k in kills:
        killed = interrupt(forks, args, procs, run_dir, k, signal.SIGKILL, tmp_path / f"killed-at-{k}")
        codes = killed.wait(120)
        ended = f"ended before the kill at {k} ({codes}; {drawn})"
        assert codes == [-signal.SIGKILL] * procs, f"{ended}: {killed.stderr[-5000:]}"
        assert not out.exists()
    resume(forks, args, procs, tmp_path / "resumed")
    assert_same_run(reference.result(), run_dir, out, procs, f"killed after steps {kills} ({drawn})")


@pytest.mark.parametrize(
    "mode,procs,only_rank",
    [("lora", 1, None), ("full", 2, None), ("full", 2, 1)],
    ids=["lora-1", "full-2", "full-2-rank1"],
)
def test_sigterm_checkpoints_every_rank_at_one_step_and_resume_is_exact(
    tiny_llama, tmp_path, straight, forks, mode, procs, only_rank
):
    # only_rank: the signal reaches one rank; the other learns of it at the next step's gather and stops with it
    reference = straight(mode, procs)
    run_dir, out = tmp_path / "run", tmp_path / "out"
    seed = f"term-{mode}"
    step = random.Random(seed).randint(2, STEPS - 3)
    drawn = f"SIGTERM step {step}, drawn with random.Random({seed!r})"
    args = script_args(tiny_llama, out, [("run_dir", str(run_dir)), *options(mode, procs)])
    stopped = interrupt(forks, args, procs, run_dir, step, signal.SIGTERM, tmp_path / "stopped", only_rank)
    codes = stopped.wait(120)
    stdout, stderr = stopped.stdout, stopped.stderr
    assert "interrupted: SIGTERM: checkpoint written at step" in stdout, f"{drawn}: {stderr[-3000:]}"
    assert codes == [0] * procs, f"exit statuses {codes} ({drawn}): {stderr[-3000:]}"  # each rank stopped, none killed
    at = int(stdout.split("checkpoint written at step ")[1].split(";")[0])
    assert stdout.count(f"checkpoint written at step {at};") == procs, stdout  # every rank, the same step
    assert all((run_dir / "checkpoints" / f"step-{at}" / f"rng-rank{r}.json").is_file() for r in range(procs))
    assert not out.exists()
    resume_args = script_args(tiny_llama, out, [("run_dir", str(run_dir)), ("resume", True), *options(mode, procs)])
    resume(forks, resume_args, procs, tmp_path / "resumed")
    assert_same_run(reference.result(), run_dir, out, procs, f"SIGTERM after step {step} ({drawn})")


def rows(n: int = 24, invert: bool = False) -> list[dict]:
    return [{"text": f"{CORPUS[i % 8]} {i}", "label": ["pos", "neg"][(i + invert) % 2]} for i in range(n)]


def fit(model: str, run_dir: Path, train=None, lora_r: int = 4, **options):
    clf = llmhead.from_pretrained(model, mode="lora", lora_r=lora_r, head_hidden=[16], seed=0)
    settings = dict(epochs=1, batch_size=4, lr=1e-2, warm_start=False, progress=False, run_dir=str(run_dir))
    return clf.fit(train or rows(), rows(8), **{**settings, **options})


def _planted_pickle(folder: Path, marker: Path) -> None:
    """A pickle that creates ``marker`` when unpickled, under every name accelerate's load_state reads."""

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin", "model.bin"):
        (folder / name).write_bytes(pickle.dumps(Payload()))


def test_checkpoints_are_safetensors_and_json_and_a_planted_pickle_runs_nothing(tiny_llama, tmp_path):
    run_dir = tmp_path / "r"
    fit(tiny_llama, run_dir, checkpoint_every=2)
    files = [p for p in (run_dir / "checkpoints").rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} == {".safetensors", ".json"}
    marker = tmp_path / "pwned"
    for folder in (run_dir / "checkpoints").glob("step-*"):
        _planted_pickle(folder, marker)
    fit(tiny_llama, run_dir, checkpoint_every=2, resume=True)
    assert not marker.exists()


@pytest.mark.parametrize(
    "change,expected",
    [
        (dict(train=rows(invert=True)), "the train data: same number of examples (24), different labels"),
        (dict(train=rows(20)), "the train data: 24 examples in the run, 20 now"),
        (dict(lr=0.02), "train.lr: 0.01 in the run, 0.02 now"),
        (dict(lora_r=8), "model.lora_r: 4 in the run, 8 now"),
        (dict(epochs=2), "train.epochs: 1 in the run, 2 now"),
    ],
    ids=["labels-inverted", "fewer-examples", "lr", "lora_r", "epochs"],
)
def test_resume_refuses_other_data_or_settings_and_says_what_differs(tiny_llama, tmp_path, change, expected):
    run_dir = tmp_path / "r"
    fit(tiny_llama, run_dir, checkpoint_every=2)
    before = {p.relative_to(run_dir): p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    with pytest.raises(ResumeError, match="resume refused") as err:
        fit(tiny_llama, run_dir, checkpoint_every=2, resume=True, **change)
    assert expected in str(err.value)
    assert {p.relative_to(run_dir): p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before  # nothing touched


def test_a_checkpoint_from_before_the_probe_default_resumes(tiny_llama, tmp_path):
    """Checkpoints written before probe defaulted to None recorded probe='logreg' for every mode: an option the
    mode never reads, so not a difference (the identity is read under today's defaults, config.upgrade)."""
    run_dir = tmp_path / "r"
    fit(tiny_llama, run_dir, checkpoint_every=2)
    for state in (run_dir / "checkpoints").glob("step-*/trainer_state.json"):
        saved = json.loads(state.read_text())
        assert saved["identity"]["config"]["model.probe"] is None
        saved["identity"]["config"]["model.probe"] = "logreg"
        state.write_text(json.dumps(saved))
    fit(tiny_llama, run_dir, checkpoint_every=2, resume=True)  # not refused
    for state in (run_dir / "checkpoints").glob("step-*/trainer_state.json"):  # a real difference still is
        saved = json.loads(state.read_text())
        saved["identity"]["config"]["model.freeze_blocks"] = 1
        state.write_text(json.dumps(saved))
    with pytest.raises(ResumeError, match=r"model.freeze_blocks: 1 in the run, 0 now"):
        fit(tiny_llama, run_dir, checkpoint_every=2, resume=True)


def test_a_fresh_run_refuses_a_run_dir_that_holds_another_runs_checkpoints(tiny_llama, tmp_path):
    fit(tiny_llama, tmp_path / "r", checkpoint_every=2)
    with pytest.raises(ResumeError, match=r"already holds checkpoints .*resume=True"):
        fit(tiny_llama, tmp_path / "r")

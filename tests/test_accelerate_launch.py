"""`accelerate launch` with the shipped CPU config (recipes/configs/accelerate/cpu_2proc.yaml): accelerate starts 2
processes through mpirun (Open MPI; `make test` installs it), they meet over gloo, and recipes/train.py trains on
both. Each rank writes its final weights (tests/recipe_ranks.py, the recipe's own main); the ranks must agree bit
for bit, the recipe's saved model must be rank 0's, and only rank 0 saves."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import sentiment_rows
from safetensors.torch import load_file

import llmhead

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "recipes/configs/accelerate/cpu_2proc.yaml"  # relative, as the README runs it (its hostfile is too)
sys.path.insert(0, str(ROOT / "recipes"))
import train as recipe  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(ranks: Path, *recipe_args: str) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file cpu_2proc.yaml tests/recipe_ranks.py RANKS recipe_args``, from the root."""
    if shutil.which("mpirun") is None:
        pytest.fail(
            "mpirun not found: accelerate launch starts CPU processes through MPI (make test installs openmpi-bin)"
        )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # 2 ranks on 2 cores; accelerate passes it on as num_cpu_threads_per_process
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    if os.geteuid() == 0:  # Open MPI refuses root unless told twice (CI containers run as root)
        env |= {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--config_file", CONFIG, "--main_process_port", str(free_port())]
    cmd += [str(ROOT / "tests/recipe_ranks.py"), str(ranks), *recipe_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture
def files(tmp_path) -> list[str]:
    paths = {"train": tmp_path / "train.csv", "eval": tmp_path / "eval.csv", "test": tmp_path / "test.csv"}
    pd.DataFrame(sentiment_rows(3)).to_csv(paths["train"], index=False)  # 24 rows
    for name in ("eval", "test"):
        pd.DataFrame(sentiment_rows(1)).to_csv(paths[name], index=False)  # 8 rows
    return [f"data.{name}={path}" for name, path in paths.items()]


def check_ranks(proc, ranks: Path, out: Path) -> dict[str, torch.Tensor]:
    """Both ranks ran and agree exactly; rank 0 alone saved, and what it saved is its weights."""
    rank0, rank1 = (load_file(ranks / f"weights.rank{r}.safetensors") for r in (0, 1))
    assert sorted(p.name for p in ranks.iterdir()) == ["weights.rank0.safetensors", "weights.rank1.safetensors"]
    assert set(rank0) == set(rank1)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"
    assert proc.stdout.count("model saved to") == 1, proc.stdout  # only rank 0 saves and reports
    saved = llmhead.load(out / "model").model.state_dict()
    assert set(saved) == set(rank0)
    for name in rank0:
        assert torch.equal(saved[name], rank0[name]), f"the saved model is not rank 0's on {name}"
    return rank0


def test_lora_on_two_mpirun_processes_matches_one_process(tiny_llama, tmp_path, files):
    # LoRA, so gradients are all-reduced across the ranks every step. The data path is compared with a 1-process run
    # of the same global batch (2 x 4 = 8), as in test_distributed_resume.py: float32, no head dropout (the masks
    # would differ), random batches (not length-grouped) and SDPA attention, so both runs compute the same sums.
    common = [
        "--config",
        str(ROOT / "recipes/configs/lora.yaml"),
        f"model.model={tiny_llama}",
        "data.dataset=null",
        "data.train_limit=null",
        *files,
        "model.dtype=float32",
        "model.speedups=[mapped_load]",
        "model.dropout=0",
        "model.lora_r=4",
        "train.mixed_precision=no",
        "train.group_by_length=false",
        "train.warm_start=false",
        "train.epochs=2",
        "train.eval_every=null",
        "train.checkpoint_every=null",
        "train.progress=false",
    ]
    two = tmp_path / "two"
    proc = launch(
        tmp_path / "ranks",
        *common,
        f"output_dir={two}",
        f"train.run_dir={two / 'run'}",
        "train.batch_size=4",
        "threads=1",
    )
    rank0 = check_ranks(proc, tmp_path / "ranks", two)
    assert any("lora_B" in n and rank0[n].abs().sum() > 0 for n in rank0)  # the adapters did train

    # one thread as each rank has: Adam turns the float32 rounding of another thread count's sums (in the near-zero
    # gradients of lora_A while lora_B is near zero) into differences of ~lr
    one, threads = tmp_path / "one", torch.get_num_threads()
    try:
        recipe.main([*common, f"output_dir={one}", f"train.run_dir={one / 'run'}", "train.batch_size=8", "threads=1"])
    finally:
        torch.set_num_threads(threads)
    single = llmhead.load(one / "model").model.state_dict()
    for name in rank0:
        # 2 half-batch gradients averaged vs 1 batch summed: float32 rounding (~1e-7 here); a lost or repeated
        # example, or ranks training apart, moves weights by ~1e-3
        torch.testing.assert_close(rank0[name], single[name], atol=2e-5, rtol=1e-4, msg=f"2 processes != 1 on {name}")
    logs = [[json.loads(line) for line in (d / "run/train_log.jsonl").read_text().splitlines()] for d in (two, one)]
    steps = [[r["step"] for r in log if "loss" in r] for log in logs]
    assert steps[0] == steps[1] == [1, 2, 3, 4, 5, 6]  # 24 examples, global batch 8, 2 epochs
    evals = [[r["eval"] for r in log if "eval" in r] for log in logs]
    assert len(evals[0]) == len(evals[1]) == 2
    for a, b in zip(*evals):  # evaluation gathers each validation example once across the ranks
        assert a["accuracy"] == b["accuracy"] and a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)


def test_head_mode_on_two_mpirun_processes_saves_once(tiny_llama, tmp_path, files):
    # head mode makes no Accelerator: the recipe's own PartialState must still see mpirun's ranks
    proc = launch(
        tmp_path / "ranks",
        "--config",
        str(ROOT / "recipes/configs/csv_example.yaml"),
        f"model.model={tiny_llama}",
        *files,
        "model.dtype=float32",
        "train.epochs=3",
        "train.progress=false",
        f"output_dir={tmp_path / 'out'}",
        "threads=1",
    )
    check_ranks(proc, tmp_path / "ranks", tmp_path / "out")


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "recipes/configs/accelerate").glob("*.yaml")))
def test_shipped_accelerate_configs_load_in_accelerate(config):
    """The GPU configs cannot run here; accelerate's own reader at least accepts every key and value in them."""
    from accelerate.commands.config.config_args import load_config_from_file

    cluster = load_config_from_file(str(ROOT / "recipes/configs/accelerate" / config))
    assert cluster.num_machines == 1 and cluster.num_processes >= 2
    hostfile = cluster.mpirun_config.get("mpirun_hostfile")
    assert cluster.use_cpu == (hostfile is not None)  # the CPU config runs through mpirun, the others on GPUs
    if hostfile is not None:
        assert (ROOT / hostfile).is_file() and "localhost slots=2" in (ROOT / hostfile).read_text()

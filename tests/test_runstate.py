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


# ---- the best weights so far: in memory when small, in a temporary safetensors file when large ----------------
def test_best_weights_spilled_to_a_file_restore_exactly_and_leave_nothing_behind(tiny_llama):
    import torch
    from safetensors.torch import load_file

    from llmhead.finetuning.best import BestWeights

    model = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32").model
    for p in model.parameters():
        p.requires_grad_(True)
    kept = {n: t.clone() for n, t in model.state_dict().items()}
    best = BestWeights(spill_bytes=0)  # everything goes to the file
    best.keep(model)
    assert best.tensors is None and best.path.is_file()
    on_disk = load_file(best.path)  # a valid safetensors file, every trainable tensor, exact
    assert set(on_disk) == {n for n, p in model.named_parameters()} | {n for n in kept if n.startswith("head.")}
    assert all(torch.equal(on_disk[n], kept[n]) for n in on_disk)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    best.restore(model)
    assert all(torch.equal(t, kept[n]) for n, t in model.state_dict().items())
    folder = best.path.parent
    best.close()
    assert not folder.exists() and not best


def test_full_fine_tuning_restores_the_same_best_weights_from_memory_or_from_a_file(tiny_llama, monkeypatch):
    # validation rows with the training texts' labels flipped: the better training fits, the worse validation gets,
    # so the best evaluation is an early one and the restore matters
    import llmhead.finetuning.best as best

    kept = []
    original = best.BestWeights.keep_state
    monkeypatch.setattr(best.BestWeights, "keep_state", lambda self, s: (original(self, s), kept.append(self.path)))
    results = []
    for spill in (best.SPILL_BYTES, 0):
        monkeypatch.setattr(best, "SPILL_BYTES", spill)
        clf = llmhead.from_pretrained(tiny_llama, mode="full", dtype="float32", head_hidden=[16], seed=0)
        options = dict(epochs=2, batch_size=4, lr=1e-2, eval_every=1, patience=0, warm_start=False, progress=False)
        flipped = [{**r, "label": "neg" if r["label"] == "pos" else "pos"} for r in rows(8)]
        clf.fit(rows(), flipped, **options)
        losses = [r["val_loss"] for r in clf.history]
        assert min(range(len(losses)), key=losses.__getitem__) < len(losses) - 1  # weights were restored
        results.append(clf.predict_proba(CORPUS))
    assert kept and any(p is None for p in kept) and any(p is not None for p in kept)  # memory, then the file
    assert all(not p.exists() for p in kept if p is not None)  # the temporary file is gone
    assert (results[0] == results[1]).all()

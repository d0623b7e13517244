"""CUDA-only checks, skipped on machines without a GPU; `benchmarks/gpu_check.sh` runs them on one:
QLoRA through bitsandbytes on CUDA, bf16 and fp16 mixed precision, and an FSDP save/load round trip of a
LoRA model with its head through `accelerate launch`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sentiment_rows

import llmhead

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
ROOT = Path(__file__).resolve().parents[1]


def test_qlora_on_cuda_saves_and_reloads_identically(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, mode="qlora", head_hidden=[])
    clf.fit(sentiment_rows(4), epochs=2, batch_size=4, lr=3e-3, progress=False)
    layer = clf.model.backbone.base_model.model.layers[0].self_attn.q_proj.base_layer
    assert type(layer).__name__ == "Linear4bit" and layer.weight.device.type == "cuda"
    texts = [r["text"] for r in sentiment_rows(1)]
    before = clf.predict_proba(texts)
    clf.save(tmp_path / "q")
    np.testing.assert_array_equal(llmhead.load(tmp_path / "q").predict_proba(texts), before)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_cuda(tiny_llama, precision):
    clf = llmhead.from_pretrained(tiny_llama, mode="lora", head_hidden=[], dtype="float32")
    clf.fit(sentiment_rows(4), epochs=3, batch_size=4, lr=3e-3, mixed_precision=precision, progress=False)
    assert all(np.isfinite(h["val_loss"]) for h in clf.history)
    assert next(clf.model.backbone.parameters()).device.type == "cuda"


def test_fsdp_lora_round_trip(tiny_llama, tmp_path):
    """accelerate launch with the FSDP config (1 process here): rank 0 gathers the adapter and head,
    saves, and the saved model reloads to the test accuracy the run reported."""
    data = tmp_path / "train.csv"
    with open(data, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(sentiment_rows(4))
    processes = str(max(1, min(2, torch.cuda.device_count())))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(ROOT / "recipes/configs/accelerate/fsdp.yaml"), "--num_processes", processes,
        str(ROOT / "recipes/train.py"), f"output_dir={tmp_path / 'run'}", f"data.train={data}", f"data.test={data}",
        f"model.model={tiny_llama}", "model.mode=lora", "model.head_hidden=[]", "model.dtype=float32",
        "train.epochs=2", "train.batch_size=4", "train.lr=0.003",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reported = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["accuracy"]
    again = llmhead.load(tmp_path / "run" / "model")
    assert again.evaluate(str(data))["accuracy"] == pytest.approx(reported, abs=1e-6)

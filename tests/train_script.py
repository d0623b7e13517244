"""Run by the distributed / resume tests as a subprocess (plain python or torchrun): LoRA-train a tiny
model and write the final weights of every rank.

    python tests/train_script.py MODEL_DIR OUT_DIR [key=value ...]   (TrainConfig fields, plus nan_step/nan_rank)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)  # bit-for-bit comparisons across runs need a fixed reduction order
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import CORPUS  # noqa: E402  (the toy texts; not conftest, whose thread setting would undo the 1 above)

import llmhead  # noqa: E402
from llmhead.finetuning.loop import TrainingInterrupted  # noqa: E402


def rows(n: int, invert: bool = False) -> list[dict]:
    return [{"text": f"{CORPUS[i % 8]} {i}", "label": ["pos", "neg"][(i + invert) % 2]} for i in range(n)]


def main() -> None:
    model, out, *pairs = sys.argv[1:]
    options = {k: json.loads(v) for k, v in (p.split("=", 1) for p in pairs)}
    nan_step, nan_rank = options.pop("nan_step", None), options.pop("nan_rank", None)
    dropout = options.pop("dropout", 0.0)
    val_n = options.pop("val_n", 8)
    n_train, invert = options.pop("n_train", 24), options.pop("invert_labels", False)
    short_attention = options.pop("short_attention", True)
    speedups = ["mapped_load"] + (["short_attention"] if short_attention else [])
    rank = int(os.environ.get("RANK", 0))
    if nan_step is not None:  # force a non-finite loss on one rank at one step
        from llmhead.data.labels import LabelSpace

        original, calls = LabelSpace.loss, {"n": 0}

        def loss(self, logits, targets, *args, **kwargs):
            value = original(self, logits, targets, *args, **kwargs)
            if logits.requires_grad:
                calls["n"] += 1
                if calls["n"] == nan_step and rank == nan_rank:
                    return value * float("nan")
            return value

        LabelSpace.loss = loss
    mode = options.pop("mode", "lora")
    adapters = dict(lora_r=options.pop("lora_r", 4), lora_dropout=dropout) if mode == "lora" else {}
    clf = llmhead.from_pretrained(
        model,
        mode=mode,
        **adapters,
        dropout=dropout,
        head_hidden=[16],
        seed=0,
        speedups=speedups,
    )
    settings = dict(
        epochs=2, batch_size=4, lr=1e-2, warm_start=False, progress=False, eval_every=None, handle_sigterm=True
    )
    settings.update(options)
    try:
        clf.fit(rows(n_train, invert), rows(val_n), **settings)
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}")
        return
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    backbone = clf.model.backbone
    if mode == "lora":
        state = {f"backbone.{k}": v for k, v in get_peft_model_state_dict(backbone).items()}
    else:
        state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state.update({f"head.{k}": v for k, v in clf.model.head.state_dict().items()})
    Path(out).mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, Path(out) / f"weights.rank{rank}.safetensors")


if __name__ == "__main__":
    main()

"""The best weights so far of a fine-tuning run (restored at its end), kept where they cost least.

What trains is small for LoRA (adapters and the head: a few MB) and is kept in memory. For full fine-tuning it is
the whole model: a copy in memory would raise the run's peak by the model's size (0.5 GB in float32 for a 135M
model, 28 GB for a 7B one: more than the optimizer's peer, transformers' Trainer, ever holds; it keeps its best
checkpoint on disk). Above ``SPILL_BYTES`` the copy goes to a temporary safetensors file instead, written one
tensor at a time (``safetensors.save_file`` would first build the whole file in memory), and read back one tensor
at a time. The file is this process's own and is removed when the run ends.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from pathlib import Path

import torch
from torch import nn

from llmhead.finetuning import runstate
from llmhead.finetuning.adapters import trainable_names

SPILL_BYTES = 256 * 2**20
_DTYPES = {  # safetensors' names
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


class BestWeights:
    """A copy of a model's trainable state: ``keep(model)`` takes it, ``restore(model)`` puts it back."""

    def __init__(self, spill_bytes: int | None = None):
        self.spill_bytes = SPILL_BYTES if spill_bytes is None else spill_bytes
        self.tensors: dict[str, torch.Tensor] | None = None
        self.path: Path | None = None
        self._folder = None

    def __bool__(self) -> bool:
        return self.tensors is not None or self.path is not None

    def keep(self, model: nn.Module) -> None:
        names = trainable_names(model)
        state = {n: t for n, t in model.state_dict().items() if n in names}
        self.keep_state(state)

    def keep_state(self, state: dict[str, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in state.values())
        if size <= self.spill_bytes:
            self.tensors, self.path = {n: t.detach().cpu().clone() for n, t in state.items()}, None
            return
        self.tensors = None
        self.path = self._file()
        write_streaming(self.path, state)

    def keep_file(self, path: Path) -> None:
        """A checkpoint's best.safetensors (a resume): copied, so the checkpoint can be deleted as the run goes on."""
        self.tensors, self.path = None, self._file()
        shutil.copyfile(path, self.path)

    def restore(self, model: nn.Module) -> None:
        if self.tensors is not None:
            model.load_state_dict(self.tensors, strict=False)
            return
        if self.path is None:
            return
        from safetensors import safe_open

        targets = model.state_dict()
        with torch.no_grad(), safe_open(str(self.path), framework="pt") as f:
            for name in f.keys():
                targets[name].copy_(f.get_tensor(name))

    def write(self, path: Path) -> None:
        """Into a checkpoint, as best.safetensors."""
        if self.path is not None:
            shutil.copyfile(self.path, path)
        else:
            runstate.save_tensors(path, self.tensors)  # None: no file

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
        self.tensors, self.path = None, None

    def _file(self) -> Path:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="llmhead-best-")
            weakref.finalize(self, self._folder.cleanup)
        return Path(self._folder.name) / "best.safetensors"


def write_streaming(path: Path, state: dict[str, torch.Tensor]) -> None:
    """A safetensors file written tensor by tensor: the header (names, dtypes, shapes, byte offsets), then each
    tensor's bytes, so at most one tensor's CPU copy exists at a time."""
    header, offset = {}, 0
    for name, t in state.items():
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for t in state.values():
            data = t.detach().cpu().contiguous().reshape(-1)
            f.write(memoryview(data.view(torch.uint8).numpy()))

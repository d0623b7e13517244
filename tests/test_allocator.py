"""glibc's mmap threshold while fine-tuning on a CPU (llmhead/allocator.py): large blocks come from mmap inside
full fine-tuning only (adapter training leaves the allocator alone), the user's own settings win, a bad value is
a clear error."""

from __future__ import annotations

import ctypes
import platform

import pytest
import torch
from conftest import sentiment_rows

import llmhead
from llmhead import allocator

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


def mallinfo() -> MallInfo2:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2()


def mmapped_bytes() -> int:
    return mallinfo().hblkhd


@glibc
def test_large_blocks_come_from_mmap_only_while_training():
    def mmapped_by(nbytes):
        before = mmapped_bytes()
        block = torch.empty(nbytes, dtype=torch.uint8)
        grown = mmapped_bytes() - before
        del block
        return grown

    with allocator.training_blocks("cpu", whole_model=True):
        # glibc reuses free heap space of the right size first: ask for more than the heap holds free
        beyond_heap = max(3 << 20, mallinfo().fordblks + (1 << 20))
        assert mmapped_by(beyond_heap) >= beyond_heap
    assert mmapped_by(3 << 20) == 0  # 32 MiB afterwards: from the heap again
    with allocator.training_blocks("cuda", whole_model=True):  # host memory of GPU runs is left alone
        assert mmapped_by(3 << 20) == 0


@glibc
@pytest.mark.parametrize(
    "env, whole_model, expected",
    [
        ({}, True, 1 << 20),
        ({}, False, None),  # adapters: the page faults cost more time than the memory saved
        ({"LLMHEAD_MMAP_THRESHOLD": "4194304"}, True, 4 << 20),
        ({"LLMHEAD_MMAP_THRESHOLD": "4194304"}, False, 4 << 20),  # a size the user gives holds in every mode
        ({"LLMHEAD_MMAP_THRESHOLD": "off"}, True, None),
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, True, None),  # the user's glibc setting wins
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, True, None),
    ],
)
def test_threshold_follows_the_environment(monkeypatch, env, whole_model, expected):
    for name in ("LLMHEAD_MMAP_THRESHOLD", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert allocator._threshold(whole_model) == expected


def test_bad_threshold_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LLMHEAD_MMAP_THRESHOLD", "1MB")
    with pytest.raises(ValueError, match="LLMHEAD_MMAP_THRESHOLD='1MB': expected a size in bytes"):
        allocator.check_environment()


@glibc
@pytest.mark.parametrize(
    "mode, expected", [("full", [allocator.TRAINING_THRESHOLD, allocator.AFTER_THRESHOLD]), ("lora", [])]
)
def test_full_fine_tuning_sets_it_and_sets_it_back(tiny_llama, monkeypatch, mode, expected):
    monkeypatch.delenv("LLMHEAD_MMAP_THRESHOLD", raising=False)
    calls = []
    real = allocator._set
    monkeypatch.setattr(allocator, "_set", lambda value: calls.append(value) or real(value))
    adapters = {"lora_r": 4} if mode == "lora" else {}
    clf = llmhead.from_pretrained(tiny_llama, mode=mode, dtype="float32", **adapters)
    clf.fit(sentiment_rows(1), epochs=1, batch_size=4, warm_start=False, progress=False)
    assert calls == expected

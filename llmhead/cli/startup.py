"""What llmhead's own commands set in the process they start (the ``llmhead`` console script, ``python -m llmhead``
and the recipes), never the library: a library call leaves the process as it found it, a command owns its process.

glibc's malloc, left to its defaults, raises its mmap threshold as blocks are freed (to at most 32 MB on 64-bit) and
returns the top of the heap to the system once twice that is free. A bf16 forward pass over batches of long texts
frees and re-allocates tens of MB per layer, so the same memory goes back to the system and is faulted in again:
1.3-1.5M page faults for 128 BBC articles, a fifth to a third of the feature pass on this project's VM
(benchmarks/allocator.py). Fixed thresholds keep the heap instead; the process then holds its peak memory until it
exits, which a command that ends after its job can afford.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # blocks up to 32 MB from the heap (the dynamic threshold's ceiling on 64-bit)
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GB free at the top of the heap
OPT_OUT = "LLMHEAD_MALLOC"  # =default: leave glibc as it is
USERS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # glibc's own variables


def user_tuned() -> bool:
    """The user chose glibc's malloc settings (either variable, or a malloc tunable), or opted out."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return (
        os.environ.get(OPT_OUT, "").lower() == "default"
        or any(name in os.environ for name in USERS)
        or "glibc.malloc." in tunables
    )


def keep_heap() -> bool:
    """Fixed malloc thresholds for this process, through glibc's ``mallopt``. Nothing is set off Linux/glibc or when
    the user chose (``user_tuned``: their settings win, both thresholds are left to them). True when both were set."""
    if not sys.platform.startswith("linux") or user_tuned():
        return False
    try:
        libc = ctypes.CDLL(None)  # this process's C library
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: its mallopt numbers are the ones above)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1

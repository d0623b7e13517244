"""What llmhead's own commands set in the process they start (the ``llmhead`` console script and the recipes),
never the library: a library call leaves the process as it found it, a command owns its process.

glibc's malloc, left to its defaults, raises its mmap threshold as blocks are freed (to at most 32 MB) and returns
the top of the heap to the system once twice that is free. A forward pass allocates tens of MB per layer, so the same
memory is unmapped and faulted in again at every layer: 2.5M page faults for 128 BBC articles, a third of the feature
pass on a VM (benchmarks/allocator.py). Fixed thresholds keep the heap instead; the process then holds its peak
memory until it exits, which a command that ends after its job can afford.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks up to 32 MB come from the heap
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GB free at the top of the heap
OPT_OUT = "LLMHEAD_MALLOC"  # =default: leave glibc as it is


def keep_heap() -> bool:
    """Fixed malloc thresholds for this process, through glibc's ``mallopt``. Nothing is set off Linux/glibc, when
    the user set glibc's own variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``: theirs win), or with
    ``LLMHEAD_MALLOC=default``. True when both thresholds were set."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) == "default":
        return False
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(None)  # this process's C library
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: its mallopt numbers are the ones above)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1

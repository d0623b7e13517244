"""While fully fine-tuning on a CPU, new blocks of 1 MiB and more come straight from the kernel (glibc ``mallopt``).

A training step allocates and frees its activations and gradients every step, and with length-grouped batches
each step has its own shapes; torch's per-shape kernel caches (oneDNN and ideep) add blocks of their own in
between. glibc's heap then cannot reuse the freed space for the next step's larger blocks and grows: on
SmolLM2-135M full fine-tuning, 600-900 MB of the heap was free but resident at the start of each step. With the
threshold, a block of 1 MiB or more that the heap's free space cannot hold is served by ``mmap`` instead of growing
the heap, and goes back to the system when freed. Measured here: full fine-tuning's peak RSS fell by ~9%
(3,664 -> 3,344 MB on 200 Rotten Tomatoes snippets).

It is not free: every such block is fresh pages, and each page faults on first touch. On 30 LoRA steps (480
snippets) the threshold added 1.4 million page faults and ~3 s of system time, and made the steps ~9% slower,
for 0-5% less peak memory. 2 and 4 MiB thresholds avoid the faults but also lose full fine-tuning's memory gain
(200 snippets: 3,527-3,650 MB, against 3,333-3,356 MB at 1 MiB and 3,611-3,652 MB without). So by default it is
set only where most of the weights train (full fine-tuning, whose gradients and optimizer state make memory the
binding limit), and adapter training (LoRA, QLoRA) leaves the allocator alone. Forward-only passes were ~5%
slower with it, so it is set only around training, and the threshold is set back to 32 MiB (glibc's own upper
bound for its adaptive threshold) afterwards.

``LLMHEAD_MMAP_THRESHOLD`` sets the size in bytes for every mode, or ``off`` to leave the allocator alone. A
threshold the user set for glibc (``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES``) is always left alone, as are
other C libraries and CUDA runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # malloc.h
TRAINING_THRESHOLD = 1 << 20
AFTER_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where glibc's adaptive threshold tops out


def _threshold(whole_model: bool) -> int | None:
    """The threshold to train with, or None to leave the allocator alone."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return None  # the user's own setting
    size = _from_environment()
    if size is None:  # not set: the default, which only full fine-tuning gets
        return TRAINING_THRESHOLD if whole_model else None
    return size or None


def _from_environment() -> int | None:
    """``LLMHEAD_MMAP_THRESHOLD`` read and checked (on every platform, so a typo fails everywhere): a size in
    bytes, 0 for off, None when unset."""
    raw = os.environ.get("LLMHEAD_MMAP_THRESHOLD", "")
    value = raw.strip().lower()
    if not value:
        return None
    if value in ("off", "0", "no", "false"):
        return 0
    if not value.isdigit():
        raise ValueError(f"LLMHEAD_MMAP_THRESHOLD={raw!r}: expected a size in bytes (such as 1048576) or 'off'")
    return int(value)


def check_environment() -> None:
    """Raise on a malformed ``LLMHEAD_MMAP_THRESHOLD`` (called before any weights load)."""
    _from_environment()


def _set(value: int) -> bool:
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, ctypes.c_int(value)))
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def training_blocks(device_type: str, whole_model: bool):
    """Serve large blocks from ``mmap`` inside the block (CPU training only; by default only when
    ``whole_model``, i.e. most of the weights train)."""
    threshold = _threshold(whole_model) if device_type == "cpu" else None
    if threshold is None or not _set(threshold):
        yield
        return
    log.debug("glibc mmap threshold %d bytes while training", threshold)
    try:
        yield
    finally:
        _set(AFTER_THRESHOLD)

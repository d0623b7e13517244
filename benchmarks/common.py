"""Helpers shared by the benchmark scripts: isolated phases (so each reports its own peak memory),
timing, and a description of the machine and versions for the results JSON."""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import time


def timed(fn, repeats: int = 1) -> float:
    """Best of ``repeats`` wall times: the least disturbed by other work on a shared machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def _child(fn, args, queue):
    try:
        result = fn(*args)
        result["peak_rss_mb"] = peak_rss_mb()
        queue.put(("ok", result))
    except BaseException as exc:  # report, do not hang the parent
        import traceback

        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def isolated(fn, *args, inline: bool = False) -> dict:
    """Run ``fn(*args)`` in a fresh spawned process and return its dict plus that process's peak RSS, so
    phases of one benchmark run do not share (or inherit) each other's memory high-water mark."""
    if inline:
        return {**fn(*args), "peak_rss_mb": None}
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(fn, args, queue))
    process.start()
    status, payload = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"benchmark phase {getattr(fn, '__name__', fn)} failed:\n{payload}")
    return payload


def machine(threads: int) -> dict:
    import accelerate
    import peft
    import torch
    import transformers

    import llmhead
    from llmhead.model.precision import resolve_dtype

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus_visible": os.cpu_count(),
        "threads": threads,
        "bf16_native": resolve_dtype("auto") == "bfloat16",
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {
            "llmhead": llmhead.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "accelerate": accelerate.__version__,
        },
    }

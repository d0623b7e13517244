"""Load a checkpoint into another floating dtype without holding the whole file and the cast copy at once.

Asked for bfloat16 from a float32 safetensors checkpoint, transformers casts each tensor while the whole file stays
mapped, so the load peaks at file + cast weights. Loaded in its stored dtype the checkpoint is not copied at all
(its tensors are views of the file's mapping). This module loads it that way, casts the parameters one by one, and
after each cast tells the kernel (``madvise(MADV_DONTNEED)``) that the file pages wholly inside the old tensor are
no longer needed; a released page that is read again comes back from the file. Measured by
``benchmarks/speedups.py`` on SmolLM2-135M (bf16 from its float32 cache, a fresh process per load, 3 loads each way,
alternating; ``results/speedups.json``): the process peaks at 818 MB RSS (``VmHWM``) instead of 1,307 MB, from
528 MB before the load (the load's own peak 290 MB instead of 779 MB), and ends at the same 798 MB either way; its
time did not measurably change (median 1.30 s with it, 1.65 s without; ranges 1.11-2.54 s and 1.42-2.18 s). The
backbone, the causal LM of ICL and saved full backbones are all loaded through :func:`from_pretrained` here.

The result equals transformers' own load in the target dtype (parameters cast, buffers as its initialisation made
them; the tests compare every tensor). It is used only where that is known to hold: Linux, a local folder of
safetensors files stored in one floating dtype, no quantization, no remote code, and a model class without modules
kept in float32.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys
from collections import Counter
from pathlib import Path

import torch

log = logging.getLogger(__name__)

MADV_DONTNEED = 4  # linux/mman.h
_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def stored_dtype(folder: str) -> torch.dtype | None:
    """The one floating dtype of every floating tensor in ``folder``'s safetensors files, or None."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    found: set[str] = set()
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            found.update(f.get_slice(key).get_dtype() for key in f.keys())
    floating = {d for d in found if d.startswith(("F", "BF"))}  # F32, BF16, F8_E4M3...; not I64, U8, BOOL
    if len(floating) != 1:
        return None
    return _SAFETENSORS_DTYPES.get(floating.pop())


def applies(folder: str, target: torch.dtype, model_class, trust_remote_code: bool) -> torch.dtype | None:
    """The dtype to load ``folder`` in before casting to ``target``, or None to load directly."""
    if not sys.platform.startswith("linux") or trust_remote_code or model_class is None:
        return None
    if any(getattr(model_class, a, None) for a in ("_keep_in_fp32_modules", "_keep_in_fp32_modules_strict")):
        return None
    stored = stored_dtype(folder)
    return stored if stored is not None and stored != target else None


def _file_mappings(folder: str) -> list[tuple[int, int]]:
    """Address ranges of this process's mappings of ``folder``'s safetensors files."""
    root = str(Path(folder).resolve())
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip().endswith(".safetensors") and fields[5].startswith(root):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def _releaser():
    libc = ctypes.CDLL(None)  # the C library this process runs on
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE

    def release(start: int, end: int) -> None:
        first, last = -(-start // page) * page, end // page * page  # whole pages only
        if last > first:
            libc.madvise(first, last - first, MADV_DONTNEED)

    return release


def from_pretrained(
    auto_class, path: str, target: torch.dtype, config=None, trust_remote_code: bool = False, **options
):
    """``auto_class.from_pretrained(path, dtype=target, **options)``, cast from the mapped file where that is
    exact."""
    if config is None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **options)
    stored = applies(path, target, model_class(auto_class, config), trust_remote_code)
    model = auto_class.from_pretrained(
        path, config=config, dtype=stored or target, trust_remote_code=trust_remote_code, **options
    )
    if stored is not None:
        cast_parameters(model, target, path, buffer_dtypes(auto_class, config, target))
    return model


def model_class(auto_class, config):
    """The class ``auto_class`` builds for ``config``, or None when it is not a built-in one (built on the meta
    device, so nothing is allocated)."""
    import copy

    try:
        with torch.device("meta"):
            return type(auto_class.from_config(copy.deepcopy(config)))
    except (KeyError, ValueError, AttributeError, ImportError):
        return None


def buffer_dtypes(auto_class, config, target: torch.dtype) -> dict[str, torch.dtype]:
    """The dtype of each buffer when the model is built in ``target``: some follow the default dtype at
    initialisation (Gemma's ``embed_scale``), others fix their own (rotary ``inv_freq`` stays float32). Built on
    the meta device, so nothing is allocated."""
    import copy

    with torch.device("meta"):
        skeleton = auto_class.from_config(copy.deepcopy(config), dtype=target)
    return {name: b.dtype for name, b in skeleton.named_buffers(remove_duplicate=False)}


def cast_parameters(
    model: torch.nn.Module, target: torch.dtype, folder: str, buffers: dict[str, torch.dtype] | None = None
) -> int:
    """Cast ``model``'s floating parameters to ``target`` in place, returning each one's file pages as it goes,
    and its buffers to the dtypes in ``buffers`` (from :func:`buffer_dtypes`).

    Pages are released only when the whole old tensor lies inside a mapping of ``folder``'s safetensors files
    and no other parameter shares its memory. Returns how many bytes of mapped tensors were released."""
    mappings = _file_mappings(folder)
    release = _releaser() if mappings else None
    params = [p for p in model.parameters() if p.is_floating_point() and p.dtype != target]
    owners = Counter(p.data_ptr() for p in params)
    released = 0
    for p in params:
        start = p.data_ptr()
        end = start + p.numel() * p.element_size()
        old = p.data  # keeps the mapping alive until its pages are released
        p.data = old.to(target)
        if release and owners[start] == 1 and any(a <= start and end <= b for a, b in mappings):
            release(start, end)
            released += end - start
        del old
    buffers = buffers or {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for name, buf in list(module.named_buffers(recurse=False, remove_duplicate=False)):
            dtype = buffers.get(f"{module_name}.{name}".lstrip("."))
            if buf is not None and dtype is not None and buf.dtype != dtype:
                setattr(module, name, buf.to(dtype))  # a registered buffer: stays one (persistent or not)
    if hasattr(model, "config"):
        model.config.dtype = target
    log.debug("cast %d parameters to %s, released %.0f MB of mapped pages", len(params), target, released / 2**20)
    return released

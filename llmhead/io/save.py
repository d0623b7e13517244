"""Write and read a saved classifier: JSON and safetensors only, never pickle.

What a save guarantees:

- **Atomic for readers.** Files are written to a temporary sibling folder, which then takes the target's place in
  one ``renameat2(RENAME_EXCHANGE)``: at every instant the path holds either the complete previous save or the
  complete new one. (Where the kernel or file system lacks the exchange, two renames leave a moment with no folder,
  never a mixed one.)
- **Sealed.** The manifest lists the SHA-256 of every file the save wrote and carries a digest of its own content;
  ``read`` checks both, so a damaged or edited file is named instead of loaded.
- **Nothing it did not write is touched.** A re-save keeps every file of the folder that the previous save did
  not write (a user's notes, a model card); a non-empty folder that is not a save is refused. Temporary folders of
  killed saves are removed by the next save into the same parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)
MANIFEST = "llmhead.json"
HEAD = "head.safetensors"
ADAPTER = "adapter.safetensors"
BACKBONE = "backbone"  # a transformers folder of fine-tuned (or merged) weights
TOKENIZER = "tokenizer"
FORMAT = 2  # 2: files and manifest digests. 1 (unsealed) still loads, with a warning.
WRITER = ".llmhead-writer"  # in a temporary folder while its save runs, locked (flock) by the saving process
OWNED = (HEAD, ADAPTER, BACKBONE, TOKENIZER)  # what a save owns: nothing in them may be unlisted
GRACE_S = 600  # a temporary folder without a writer file is left alone this long (its save may be starting)
REQUIRED = ("model", "labels", "backbone", "tokenizer")  # objects every manifest has
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-[A-Za-z0-9_]{8}")  # as write_atomically makes them


class LoadError(ValueError):
    """A saved model that cannot be loaded as it was saved; the message names the file and what is wrong."""


# ---- digests ---------------------------------------------------------------------------------------
def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def folder_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by path relative to it (``/``-separated)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != WRITER and p.name != MANIFEST)
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in files}


def manifest_digest(manifest: dict) -> str:
    """A digest of the manifest's content (every key but ``digest``), independent of its formatting."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()).hexdigest()


def seal(folder: Path, manifest: dict) -> None:
    """Write the manifest of the files in ``folder``: their digests, then the manifest's own."""
    body = {"format": FORMAT, **manifest, "files": folder_digests(folder)}
    body["digest"] = manifest_digest(body)
    (folder / MANIFEST).write_text(json.dumps(body, indent=2, allow_nan=True))


# ---- writing ---------------------------------------------------------------------------------------
def write_save(target: str | os.PathLike, write_files: Callable[[Path], None], manifest: dict) -> Path:
    """A model save: ``write_files(tmp)`` writes the tensors and the tokenizer, then the manifest seals them."""

    def write(tmp: Path) -> None:
        write_files(tmp)
        seal(tmp, manifest)

    return write_atomically(target, write)


def write_atomically(target: str | os.PathLike, write: Callable[[Path], None], marker: str = MANIFEST) -> Path:
    """Call ``write(tmp_dir)``, then put ``tmp_dir`` in place of ``target``. An existing non-empty ``target`` is
    replaced only when it holds ``marker`` (it is a previous save of the same kind); the files of it that the
    previous save did not write are kept."""
    target = Path(target).expanduser().absolute()
    if target.is_symlink():
        raise FileExistsError(f"{target} is a symbolic link; save to the folder it points to, {target.resolve()}")
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a folder; choose another path")
        if any(target.iterdir()) and not (target / marker).is_file():
            raise FileExistsError(
                f"{target} is a non-empty folder that is not a saved llmhead model (no {marker}); refusing to "
                "replace it. Choose a new or empty folder."
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    with open(tmp / WRITER, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the save is in place: remove_stale leaves this folder alone
        try:
            lock.write(str(os.getpid()))
            lock.flush()
            write(tmp)
            if target.exists():
                _keep_foreign(target, tmp, marker)
            sync_tree(tmp)
            if target.exists():
                _swap_in(tmp, target)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    (target / WRITER).unlink(missing_ok=True)
    _sync_dir(target.parent)
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    if _exchange(tmp, target):  # tmp now holds the previous save
        shutil.rmtree(tmp, ignore_errors=True)
        return
    # No atomic exchange on this file system: two renames. A kill between them leaves the previous save in
    # .<name>.old-*/x with no <name>: remove_stale puts it back.
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / "x")
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _sync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sync_tree(folder: Path) -> None:
    """Flush every file and folder of ``folder`` to disk before it is renamed in: after a power loss the new
    save is complete or absent, never a folder of empty files."""
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir() and not path.is_symlink():
            _sync_dir(path)
    _sync_dir(folder)


def _ours(target: Path, marker: str) -> set[str]:
    """Top-level names the previous save in ``target`` wrote."""
    if marker != MANIFEST:
        return set()
    try:
        listed = json.loads((target / MANIFEST).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    if not isinstance(listed, dict):  # format 1, or unreadable: the names llmhead saves have always had
        return {MANIFEST, HEAD, ADAPTER, BACKBONE, TOKENIZER}
    return {MANIFEST} | {name.split("/")[0] for name in listed}


def _keep_foreign(target: Path, tmp: Path, marker: str) -> None:
    """Hard-link into ``tmp`` every entry of ``target`` that neither the previous save nor this one wrote: the
    originals stay in place until the exchange, so a crash at any moment loses none of them. (An export, marked
    by its config.json, replaces the files of the names it writes and keeps the others.)"""
    ours = _ours(target, marker)
    foreign = [p for p in target.iterdir() if p.name not in ours and p.name != WRITER]
    if marker != MANIFEST:
        foreign = [p for p in foreign if not (tmp / p.name).exists()]
    clash = [p.name for p in foreign if (tmp / p.name).exists()]
    if clash:
        raise FileExistsError(
            f"{target} holds {', '.join(map(repr, clash))}, which llmhead did not write and this save would replace; "
            "move it, or save to another folder (nothing was changed)"
        )
    for entry in foreign:
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, tmp / entry.name, symlinks=True, copy_function=_link_or_copy)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry), tmp / entry.name)
        else:
            _link_or_copy(entry, tmp / entry.name)


def _link_or_copy(source, destination) -> None:
    """A hard link (instant, no space), or a copy where links are not allowed (another user's file under
    fs.protected_hardlinks, a file system without them)."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2). False where the kernel, libc or file system cannot."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"could not put the new save in place of {b}: {os.strerror(code)}")


def remove_stale(parent: Path) -> None:
    """Clean up after saves into ``parent`` that were killed: a previous save left aside by the two-rename
    fallback goes back in place if nothing replaced it; temporary folders whose writer no longer holds its lock
    are removed (and those without a writer file once they are older than ``GRACE_S``)."""
    for entry in parent.iterdir() if parent.is_dir() else []:
        match = _TEMPORARY.fullmatch(entry.name)
        if not (match and entry.is_dir() and not entry.is_symlink()):
            continue
        target = parent / match.group("name")
        if match.group("kind") == "old":
            if (entry / "x").is_dir() and not target.exists():
                log.warning("putting back %s, left aside by a save that did not finish", target)
                os.replace(entry / "x", target)
        elif _writer_alive(entry):
            continue
        log.info("removing %s, left by a save that did not finish", entry)
        shutil.rmtree(entry, ignore_errors=True)


def _writer_alive(folder: Path) -> bool:
    writer = folder / WRITER
    try:
        with open(writer) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # its save still runs
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:  # a save that is just starting, or one from before writer files
        with contextlib.suppress(OSError):
            return time.time() - folder.stat().st_mtime < GRACE_S
        return False
    except OSError:
        return True  # cannot tell: leave it


def check_finite(state: dict[str, torch.Tensor]) -> None:
    bad = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise FloatingPointError(f"refusing to save non-finite weights in {bad[:10]}")


def save_tensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    check_finite(state)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, path)


def save_head(folder: Path, state: dict[str, torch.Tensor]) -> None:
    save_tensors(folder / HEAD, state)


# ---- reading ---------------------------------------------------------------------------------------
def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise LoadError(f"{path}: not a readable safetensors file ({exc})") from exc


def read(folder: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """The manifest, the head's tensors and the tokenizer folder of a save, after checking every file it lists."""
    folder = Path(folder).expanduser()
    path = folder / MANIFEST
    if not path.is_file():
        why = " (the folder does not exist)" if not folder.exists() else ""
        raise FileNotFoundError(f"{folder} is not a saved llmhead model: {MANIFEST} is missing{why}")
    manifest = _parse(path)
    version = manifest.get("format")
    if type(version) is int and version == 1 and "files" not in manifest and "digest" not in manifest:
        log.warning("%s was saved by an older llmhead without file digests: its files cannot be checked", folder)
    elif type(version) is int and version == 1:
        raise LoadError(f"{path}: says format 1 but carries format {FORMAT}'s digests: the manifest was edited")
    elif not (type(version) is int and version == FORMAT):
        raise LoadError(f"{path}: format {version!r} is not supported (expected {FORMAT} or 1)")
    else:
        _check_sealed(folder, manifest)
    for key in REQUIRED:
        if not isinstance(manifest.get(key), dict):
            raise LoadError(f"{path}: the key {key!r} is missing or is not an object")
    return manifest, load_tensors(folder / HEAD), folder / TOKENIZER


def _parse(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: not UTF-8 text (byte {exc.start}); the file is damaged") from exc
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(manifest, dict):
        raise LoadError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    return manifest


def _check_sealed(folder: Path, manifest: dict) -> None:
    path = folder / MANIFEST
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("digest"), str):
        raise LoadError(f"{path}: the list of files and their digests is missing; the manifest was edited or damaged")
    if manifest_digest(manifest) != manifest["digest"]:
        raise LoadError(
            f"{path} was changed after it was saved (its content no longer matches its digest): settings such as "
            "pooling, template or label order decide what the model predicts, so an edited manifest is not loaded. "
            "Save again from the trained classifier, or restore the file."
        )
    for name, expected in manifest["files"].items():
        file = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise LoadError(f"{path}: lists a file outside the model folder: {name!r}")
        if not file.is_file():
            raise LoadError(f"{file}: missing (the save listed it; the folder is incomplete)")
        if file.is_symlink() or file_digest(file) != expected:
            raise LoadError(
                f"{file}: damaged or changed after saving (its SHA-256 differs from the one recorded in {MANIFEST})"
            )
    # transformers reads every file it recognises in backbone/ and tokenizer/ (an adapter, special tokens, a chat
    # template, a .bin): a file the save did not write must not change what loads
    listed = set(manifest["files"])
    for name in OWNED:
        entry = folder / name
        extra = [entry] if entry.is_symlink() else [p for p in entry.rglob("*") if p.is_symlink() or p.is_file()]
        extra = [p for p in extra if p.relative_to(folder).as_posix() not in listed or p.is_symlink()]
        if extra:
            raise LoadError(
                f"{extra[0]}: not written by the save ({len(extra)} such file(s) under {name}/); it could change "
                "what loads, so the model is not loaded. Remove it, or save again."
            )

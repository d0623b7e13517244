"""Replace a folder atomically for its readers: written under a temporary sibling name, then swapped into place in
one ``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel lacks it); files the previous version did not write
are kept; temporary folders of killed writers are removed by the next writer into the same parent."""

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

from llmhead.io.layout import ADAPTER, BACKBONE, CARD, HEAD, MANIFEST, TOKENIZER

log = logging.getLogger(__name__)
WRITER = ".llmhead-writer"  # in a temporary folder while its save runs, locked (flock) by the saving process
GRACE_S = 600  # a temporary folder without a writer file is left alone this long (its save may be starting)
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-[A-Za-z0-9_]{8}")  # as write_atomically makes them


def write_atomically(
    target: str | os.PathLike, write: Callable[[Path], None], marker: str, kind: str = "saved llmhead model"
) -> Path:
    """Call ``write(tmp_dir)``, then put ``tmp_dir`` in place of ``target``. An existing non-empty ``target`` is
    replaced only when it holds ``marker`` (it is a previous save of the same kind); the files of it that the
    previous save did not write are kept."""
    target = check_target(target, marker, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    with open(tmp / WRITER, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the save is in place: remove_stale leaves this folder alone
        try:
            lock.write(str(os.getpid()))
            lock.flush()
            write(tmp)
            honour_umask(tmp)  # before the user's kept files are linked in: their permissions stay theirs
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


def check_target(target: str | os.PathLike, marker: str, kind: str = "saved llmhead model") -> Path:
    """``target`` as an absolute path, when a save may go there: new, empty, or a previous save (it holds
    ``marker``), under a parent that is a folder or can be made one. Commands call it before any model loads."""
    target = Path(target).expanduser().absolute()
    if target.is_symlink():
        raise FileExistsError(f"{target} is a symbolic link; save to the folder it points to, {target.resolve()}")
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a folder; choose another path")
        if any(target.iterdir()) and not (target / marker).is_file():
            raise FileExistsError(
                f"{target} is a non-empty folder that is not a {kind} (no {marker}); refusing to "
                "replace it. Choose a new or empty folder."
            )
    above = next((p for p in target.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise FileExistsError(f"{above} is a file, so {target} cannot be made under it; choose another path")
    return target


def umask() -> int:
    """The process's file-creation mask, read without changing it (``os.umask`` can only be read by setting it, a
    process-wide change another thread could see)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    with tempfile.TemporaryDirectory() as tmp:  # no procfs (macOS): the mode a new folder is given tells
        probe = Path(tmp) / "probe"
        probe.mkdir(mode=0o777)
        return 0o777 & ~probe.stat().st_mode


def honour_umask(*paths: Path) -> None:
    """Give ``paths`` (and what folders among them hold) the permissions any new file or folder gets (0644 / 0755
    under the usual umask): temporary folders are created 0700 and safetensors writes its files 0600, which would
    keep a model from the other users and containers that share it. Only paths this process just wrote: never a
    folder that holds the user's own files."""
    mask = umask()
    for top in paths:
        for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
            if not path.is_symlink():
                path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


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


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _previous_manifest(target: Path) -> dict:
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def written_card(target: Path) -> bool:
    """Whether ``target``'s model card is the one its last save wrote, unedited (so the next save may replace it)."""
    recorded, card = _previous_manifest(target).get("card"), target / CARD
    if not isinstance(recorded, str) or card.is_symlink() or not card.is_file():
        return False
    with contextlib.suppress(OSError):
        return file_digest(card) == recorded
    return False


def _ours(target: Path, marker: str) -> set[str]:
    """Top-level names the previous save in ``target`` wrote."""
    if marker != MANIFEST:
        return set()
    listed = _previous_manifest(target).get("files")
    if not isinstance(listed, dict):  # format 1, or unreadable: the names llmhead saves have always had
        return {MANIFEST, HEAD, ADAPTER, BACKBONE, TOKENIZER}
    return {MANIFEST} | {name.split("/")[0] for name in listed} | ({CARD} if written_card(target) else set())


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

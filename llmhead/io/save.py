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
- **A model card that explains it.** ``README.md`` (io/card.py) is written by every save and rewritten by the next,
  unless someone edited it since: an edited or foreign card is kept as it is. The card is outside the seal (the
  manifest records its digest only to know it as its own), so editing it never stops a model from loading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from llmhead.io.folder import (  # noqa: F401  (re-exported)
    WRITER,
    file_digest,
    remove_stale,
    sync_tree,
    write_atomically,
    written_card,
)
from llmhead.io.layout import ADAPTER, BACKBONE, CARD, HEAD, MANIFEST, TOKENIZER  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)
FORMAT = 2  # 2: files and manifest digests. 1 (unsealed) still loads, with a warning.
OWNED = (HEAD, ADAPTER, BACKBONE, TOKENIZER)  # what a save owns: nothing in them may be unlisted
REQUIRED = ("model", "labels", "backbone", "tokenizer")  # objects every manifest has


class LoadError(ValueError):
    """A saved model that cannot be loaded as it was saved; the message names the file and what is wrong."""


# ---- digests ---------------------------------------------------------------------------------------
def folder_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by path relative to it (``/``-separated); not the model card."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != WRITER and p.name != MANIFEST)
    files = [p for p in files if p.relative_to(folder).as_posix() != CARD]
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
def write_save(
    target: str | os.PathLike, write_files: Callable[[Path], None], manifest: dict, card: bool = False
) -> Path:
    """A model save: ``write_files(tmp)`` writes the tensors and the tokenizer, then the manifest seals them.
    ``card``: write the model card too (README.md), unless the target holds one that the last save did not write."""
    target_dir = Path(target).expanduser().absolute()

    def write(tmp: Path) -> None:
        write_files(tmp)
        manifest["card"] = None
        if card and (target_dir / CARD).exists() and not written_card(target_dir):
            log.warning("%s was edited or not written by llmhead: kept as it is (delete it for a new card)", CARD)
        elif card:
            from llmhead.io.card import render

            (tmp / CARD).write_text(render({"format": FORMAT, **manifest}, target_dir.name), encoding="utf-8")
            manifest["card"] = file_digest(tmp / CARD)
        seal(tmp, manifest)

    return write_atomically(target, write, MANIFEST)


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


def load_into(path: Path, load) -> None:
    """Run ``load``; a mismatch of names or shapes is reported with the file it came from."""
    try:
        result = load()
    except RuntimeError as exc:
        raise LoadError(f"{path}: does not fit the model its manifest describes: {exc}") from exc
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise LoadError(f"{path}: holds tensors the model does not have: {unexpected[:5]}")
    missing = [k for k in getattr(result, "missing_keys", None) or [] if "lora_" in k]  # the base's keys are expected
    if missing:
        raise LoadError(f"{path}: lacks adapter tensors the model has: {missing[:5]}")


def jsonable(value):
    """peft and dataclass dicts hold sets and enums; JSON holds lists and strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set) else items
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return getattr(value, "value", str(value))


def versions() -> dict:
    import accelerate
    import transformers

    from llmhead import __version__

    return {
        "llmhead": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
    }


@dataclass
class SavedClassifier:
    """What ``read_classifier`` found in a save: the settings as saved, the head's tensors, where the rest is."""

    model: dict  # ModelConfig fields (``model`` is the source's name)
    labels: object  # a LabelSpace
    head_state: dict[str, torch.Tensor]
    tokenizer_dir: Path
    backbone: dict  # the manifest's backbone section
    history: list
    strategy: dict | None
    pad_note: str | None  # the pad token llmhead added to the tokenizer, if any
    run_dir: str | None = None  # the training run's folder (train_log.jsonl), as saved
    record: dict = field(default_factory=dict)  # what the model card shows: train settings, data, metrics

    source = property(lambda self: self.backbone["source"])
    source_kind = property(lambda self: self.backbone["kind"])
    saved_as = property(lambda self: self.backbone.get("saved_as", "reference"))
    fingerprint = property(lambda self: self.backbone.get("fingerprint"))
    source_blocks = property(lambda self: self.backbone.get("source_blocks"))


def read_classifier(folder: Path, trust_remote_code: bool) -> SavedClassifier:
    """A save's parts, after checking every file; refused when it would need code the caller did not trust."""
    from llmhead.data.labels import LabelSpace

    manifest, head_state, tokenizer_dir = read(folder)
    where = folder / MANIFEST
    try:
        backbone, model = manifest["backbone"], dict(manifest["model"])
        if model.get("trust_remote_code") and not trust_remote_code:
            raise LoadError(
                f"{where}: this model was trained with trust_remote_code=True, so loading it runs Python code "
                f"that ships with {backbone['source']!r}. Nothing was loaded. If you trust that code, call "
                "llmhead.load(folder, trust_remote_code=True)."
            )
        model.update(trust_remote_code=trust_remote_code, model=backbone["source"])
        saved = SavedClassifier(
            model,
            LabelSpace.from_json(manifest["labels"]),
            head_state,
            tokenizer_dir,
            backbone,
            manifest.get("history") or [],
            manifest.get("strategy") or manifest.get("icl"),  # format 2 before strategies kept it under "icl"
            manifest["tokenizer"]["pad_token_added"],
            (manifest.get("train") or {}).get("run_dir"),
            {k: manifest.get(k) for k in ("train", "data", "metrics")},
        )
        _ = (saved.source, saved.source_kind)
    except LoadError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise LoadError(f"{where}: not a manifest this version can load ({exc!r})") from exc
    return saved

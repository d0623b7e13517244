"""The feature cache: per-example features keyed by weights, settings and token ids, in memory and on disk."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llmhead.features.extract import FeatureSet
from llmhead.io.folder import honour_umask


class FeatureCache:
    """Per-example features, keyed by everything that determines them: the weights' fingerprint and the
    extraction settings (model, layers, pooling, max_length, dtype...) for a group, and each example's token
    ids within it. Held in memory, and on disk as safetensors when a folder is set, so a second run, a second
    classifier on the same settings, every cross-validation fold and every ladder rung reuse them: only
    examples never seen before are computed."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder else None
        self.rows: dict[str, dict[bytes, torch.Tensor]] = {}
        self._read: set[tuple[str, Path]] = set()
        self.hits = 0  # examples served from the cache, for reports and tests
        self.misses = 0
        self.computed = 0  # distinct examples whose features were computed and stored

    @staticmethod
    def settings_key(model_id: str, settings: str) -> str:
        return hashlib.sha256(f"{model_id}|{settings}".encode()).hexdigest()[:24]

    @staticmethod
    def row_keys(rows: list[list[list[int]]]) -> list[bytes]:
        """One 16-byte key per example, from its token ids (all windows of it when chunked)."""
        keys = []
        for windows in rows:
            digest = hashlib.sha256()
            for ids in windows:
                digest.update(np.asarray(ids, dtype=np.int64).tobytes())
                digest.update(b"|")
            keys.append(digest.digest()[:16])
        return keys

    def _group(self, skey: str) -> dict[bytes, torch.Tensor]:
        group = self.rows.setdefault(skey, {})
        if self.folder is not None and (self.folder / skey).is_dir():
            for path in sorted((self.folder / skey).glob("*.safetensors")):
                if (skey, path) in self._read:
                    continue
                self._read.add((skey, path))
                stored = load_file(path)
                keys = [bytes(k) for k in stored["keys"].numpy()]
                features = FeatureSet(stored["values"], stored.get("lengths"))
                group.update(zip(keys, features.rows()))
        return group

    def lookup(self, skey: str, keys: list[bytes]) -> list[torch.Tensor | None]:
        group = self._group(skey)
        found = [group.get(k) for k in keys]
        hits = sum(f is not None for f in found)
        self.hits += hits
        self.misses += len(found) - hits
        return found

    def put(self, skey: str, keys: list[bytes], features: FeatureSet) -> None:
        self.computed += len(keys)
        self._group(skey).update(zip(keys, features.rows()))
        if self.folder is None:
            return
        folder = self.folder / skey
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(b"".join(keys)).hexdigest()[:24]
        tensors = {k: v.contiguous() for k, v in features.tensors().items()}
        tensors["keys"] = torch.from_numpy(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16).copy())
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=folder)
        os.close(fd)
        save_file(tensors, tmp)
        honour_umask(Path(tmp))  # a cache others may share: not safetensors' 0600
        os.replace(tmp, folder / f"{name}.safetensors")  # readers never see a half-written file
        self._read.add((skey, folder / f"{name}.safetensors"))

"""What classifiers on one base model share: its tokenizer, its loaded frozen weights and the feature cache.

Cross-validation folds, ladder rungs and the layer sweep build their classifiers on one ``FeatureExtractor``, so the
model loads once and each example's features are computed once, whatever strategy reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmhead.data.base import DataError
from llmhead.features.cache import FeatureCache
from llmhead.features.extract import FeatureSet, aggregate, chunk, extract, truncate
from llmhead.model import backbone as bb
from llmhead.model.loading import Loaded
from llmhead.model.pooling import FIXED
from llmhead.model.precision import resolve_dtype, torch_dtype


class FeatureExtractor:
    def __init__(
        self,
        source: bb.Source,
        trust_remote_code: bool = False,
        cache_folder: str | Path | None = None,
        tokenizer_dir: Path | None = None,
        pad_note: str | None = None,
        tokenizer=None,
    ):
        self.source, self.trust_remote_code = source, trust_remote_code
        self.cache = FeatureCache(cache_folder)
        self.tokenizer_dir = tokenizer_dir  # a saved model: the exact tokenizer it was trained with
        self.pad_note = pad_note  # the pad token llmhead had to add, if any
        self.progress = True
        self.source_blocks: int | None = None  # of the original model: `layer=-2` keeps its meaning after a save
        self._tokenizer = tokenizer  # given (a model trained elsewhere), or loaded on first use
        self._frozen: dict[tuple, Loaded] = {}
        self._ids: dict[str, list[int]] = {}  # each distinct text's token ids: tokenized once for every fold and rung

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.tokenizer_dir is not None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(
                    self.tokenizer_dir, trust_remote_code=self.trust_remote_code, local_files_only=True
                )
            else:
                self._tokenizer, self.pad_note = bb.load_tokenizer(self.source, self.trust_remote_code)
        return self._tokenizer

    def tokenize(self, texts: list[str], max_length: int, remember: bool = True) -> tuple[list[list[int]], int]:
        """Token ids of ``texts`` cut to ``max_length``, and how many were cut. With ``remember`` (training data,
        cross-validation), a text seen before (another fold or rung) is not tokenized again; predictions on new
        texts (``remember=False``) are not kept, so a long-running predictor does not grow."""
        new = [t for t in dict.fromkeys(texts) if t not in self._ids]
        ids = dict(zip(new, self.tokenizer(new, add_special_tokens=True, truncation=False)["input_ids"])) if new else {}
        if remember:
            self._ids.update(ids)
        return truncate([self._ids[t] if t in self._ids else ids[t] for t in texts], max_length)

    def blocks(self) -> int:
        """How many blocks the source model has (before any cut)."""
        if self.source_blocks is None:
            self.source_blocks = bb.model_config(self.source, self.trust_remote_code).num_hidden_layers
        return self.source_blocks

    def frozen(self, key: tuple, causal_lm: bool, load: Callable[[], Loaded]) -> Loaded:
        """The frozen backbone for ``key`` (block cut, dtype, speed-ups), loaded once. A causal LM loaded for
        in-context learning also serves as the plain backbone of the same cut."""
        if key not in self._frozen and not causal_lm and ("causal", *key) in self._frozen:
            return self._frozen[("causal", *key)].body()
        full_key = ("causal", *key) if causal_lm else key
        if full_key not in self._frozen:
            self._frozen[full_key] = load()
        return self._frozen[full_key]

    def features(self, model, fingerprint: str, texts: list[str], config, batch_size: int, cache: bool):
        """Pooled features (N, L, H) of ``texts`` through ``model`` (a HeadModel), or token states for attention
        pooling, and how many texts were truncated. Examples the cache holds (same weights, settings and token ids)
        are not computed again; ``cache=False`` (trained weights, whose fingerprint would lie) bypasses it."""
        c = config
        truncated = 0
        if c.long_inputs == "chunk":
            windows, owner = chunk(self.tokenizer, texts, c.max_length, c.chunk_overlap)
            rows: list[list[list[int]]] = [[] for _ in texts]
            for w, o in zip(windows, owner):
                rows[o].append(w)
        else:
            ids, truncated = self.tokenize(texts, c.max_length, remember=cache)
            rows = [[x] for x in ids]
        empty = [i + 1 for i, r in enumerate(rows) if not any(r)]
        if empty:  # nothing to pool: refused by name rather than pooled from padding
            raise DataError(
                f"{len(empty)} text(s) give the model no token at all (rows {empty[:10]}, numbered from 1): empty "
                "texts, with no template around them and a tokenizer that adds no BOS token. Set a template "
                "(e.g. template='Text: {text}'), or leave those rows out."
            )
        attn = getattr(model.backbone.config, "_attn_implementation", None)  # kernels round differently
        settings = (
            f"{c.pooling}|{model.layers}|{resolve_dtype(c.dtype)}|{c.long_inputs}|{c.chunk_overlap}|"
            f"{c.chunk_aggregate}|{attn}"
        )
        skey = FeatureCache.settings_key(fingerprint, settings)
        keys = FeatureCache.row_keys(rows)
        found = self.cache.lookup(skey, keys) if cache else [None] * len(rows)
        todo: dict[bytes, int] = {}  # each distinct missing example once
        for i, f in enumerate(found):
            if f is None:
                todo.setdefault(keys[i], i)
        if todo:
            computed = self._extract(model, [rows[i] for i in todo.values()], batch_size, c)
            new = dict(zip(todo, computed.rows()))
            if cache:
                self.cache.put(skey, list(todo), computed)
            found = [f if f is not None else new[k] for f, k in zip(found, keys)]
        return FeatureSet.from_rows(found, tokens=c.pooling not in FIXED), truncated

    def _extract(self, model, rows: list[list[list[int]]], batch_size: int, config) -> FeatureSet:
        windows = [w for r in rows for w in r]
        computed = extract(model, self.tokenizer, windows, batch_size, torch_dtype(config.dtype), self.progress)
        if len(windows) == len(rows):
            return computed
        owner = [i for i, r in enumerate(rows) for _ in r]
        return FeatureSet(aggregate(computed.values, owner, len(rows), config.chunk_aggregate))

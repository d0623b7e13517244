"""Word and character n-gram TF-IDF features (scikit-learn's ``TfidfVectorizer``), and their state as JSON (the
vocabularies, in column order) and tensors (the idf weights), so a save holds no pickle.

A fitted featurizer is rebuilt from that state at once, and every prediction, before or after a save, goes through
the rebuilt vectorizers: a reloaded model computes the same bits.
"""

from __future__ import annotations

import numpy as np
import torch

# Word uni- and bigrams carry vocabulary; character 2-5-grams within word boundaries carry spelling, morphology
# and style (and survive typos and rare inflections). Each block is L2-normalised on its own, so the two weigh the
# same; the caps keep the most frequent n-grams, which bounds the coefficient matrix on long documents.
ANALYZERS = {
    "word": {"analyzer": "word", "ngram_range": (1, 2), "token_pattern": r"(?u)\b\w+\b", "max_features": 50_000},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 5), "max_features": 100_000},
}
SHARED = {"lowercase": True, "sublinear_tf": True, "norm": "l2", "smooth_idf": True, "dtype": np.float64}


def _vectorizer(name: str, vocabulary: list[str] | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(**ANALYZERS[name], **SHARED, vocabulary=vocabulary)


class TfidfFeaturizer:
    """Texts -> (N, V) sparse TF-IDF rows: the word block, then the character block."""

    def __init__(self, vocabularies: dict[str, list[str]], idf: dict[str, np.ndarray]):
        if set(vocabularies) != set(ANALYZERS) or set(idf) != set(ANALYZERS):
            raise ValueError(f"a TF-IDF state needs the blocks {sorted(ANALYZERS)}, got {sorted(vocabularies)}")
        self.vocabularies = {k: list(vocabularies[k]) for k in ANALYZERS}
        self._vectorizers = {}
        for name in ANALYZERS:
            terms, weights = self.vocabularies[name], np.asarray(idf[name], dtype=np.float64)
            if len(terms) != len(weights):
                raise ValueError(f"TF-IDF block {name!r}: {len(terms)} terms but {len(weights)} idf weights")
            vectorizer = _vectorizer(name, terms)
            vectorizer.idf_ = weights  # sets the fitted state; with a fixed vocabulary nothing else is learnt
            self._vectorizers[name] = vectorizer

    @classmethod
    def fit(cls, texts: list[str]) -> TfidfFeaturizer:
        vocabularies, idf = {}, {}
        for name in ANALYZERS:
            fitted = _vectorizer(name).fit(texts)
            order = sorted(fitted.vocabulary_, key=fitted.vocabulary_.get)  # terms in column order
            vocabularies[name], idf[name] = order, fitted.idf_
        return cls(vocabularies, idf)

    @property
    def width(self) -> int:
        return sum(len(v) for v in self.vocabularies.values())

    def transform(self, texts: list[str]):
        """(N, width) scipy CSR matrix, float64."""
        import scipy.sparse as sp

        return sp.hstack([self._vectorizers[k].transform(texts) for k in ANALYZERS], format="csr")

    # ---- state -------------------------------------------------------------------------------------------------
    def idf_tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.asarray(self._vectorizers[k].idf_, dtype=np.float64)) for k in ANALYZERS}

    def to_json(self) -> dict:
        return {"vocabularies": self.vocabularies}

    @classmethod
    def from_state(cls, state: dict, idf: dict[str, torch.Tensor]) -> TfidfFeaturizer:
        vocabularies = state.get("vocabularies") if isinstance(state, dict) else None
        if not isinstance(vocabularies, dict) or not all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in vocabularies.values()
        ):
            raise ValueError("a TF-IDF state holds 'vocabularies': {block: [term, ...]}")
        return cls(vocabularies, {k: t.numpy() for k, t in idf.items()})


def untemplated(texts: list[str], template: str) -> list[str]:
    """The texts as the user wrote them: the template's fixed words would be a column of every row."""
    if template.count("{text}") != 1:
        return texts
    prefix, suffix = template.split("{text}")
    end = len(suffix)
    return [t[len(prefix) : len(t) - end if end else None] for t in texts]

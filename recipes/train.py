"""Train a classifier from a YAML config and save it with its metrics.

    python recipes/train.py --config recipes/configs/demo.yaml [train.epochs=20 model.head_hidden=[] ...]

Writes <output_dir>/model (llmhead.load-able) and <output_dir>/metrics.json. Every data problem is
reported before the model loads; unknown config keys fail with the nearest valid names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from accelerate import PartialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import llmhead  # noqa: E402
from llmhead import corpora  # noqa: E402
from llmhead.config import ModelConfig, TrainConfig, build  # noqa: E402
from llmhead.data import DataError, read_raw_labels, read_table, read_texts  # noqa: E402
from llmhead.finetune import TrainingInterrupted  # noqa: E402
from llmhead.labels import LabelSpace  # noqa: E402

CORPORA = {
    "rotten_tomatoes": corpora.rotten_tomatoes,
    "bbc_news": corpora.bbc_news,
    "kaomoji": corpora.kaomoji,
    "vader_tweets": corpora.vader_tweets,
}


@dataclass
class DataConfig:
    dataset: str | None = None  # a packaged corpus: rotten_tomatoes | bbc_news | kaomoji | vader_tweets
    train: str | None = None  # or files: .csv .tsv .jsonl .json .parquet
    eval: str | None = None  # carved from train when absent
    test: str | None = None
    text: str | list[str] = "text"  # a column, or two columns for a text pair
    label: str | list[str] = "label"
    train_limit: int | None = None  # use only this many training examples (a seeded sample)

    def __post_init__(self):
        if (self.dataset is None) == (self.train is None):
            raise ValueError("data: set exactly one of data.dataset (a packaged corpus) or data.train (a file)")
        if self.dataset is not None and self.dataset not in CORPORA:
            raise ValueError(f"data.dataset must be one of {sorted(CORPORA)}, got {self.dataset!r}")


@dataclass
class RecipeConfig:
    output_dir: str = "runs/train"
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_raw(path: str | None, overrides: list[str]) -> dict:
    """The YAML file's dict with ``key.sub=value`` overrides applied (values parsed as YAML)."""
    raw = yaml.safe_load(Path(path).read_text()) if path else {}
    raw = raw or {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value, e.g. train.epochs=5")
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)  # so that 5, 1e-3, [] and null get their types
    return raw


def load_config(path: str | None, overrides: list[str], raw: dict | None = None) -> RecipeConfig:
    raw = read_raw(path, overrides) if raw is None else raw
    sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
    top = {k: v for k, v in raw.items() if k not in sections}
    built = {name: build(cls, raw.get(name) or {}, where=f"{name}.") for name, cls in sections.items()}
    return build(RecipeConfig, {**top, **built})


def splits(cfg: DataConfig):
    """(train, eval, test) sources: a packaged corpus's splits or the configured files."""
    if cfg.dataset:
        dd = CORPORA[cfg.dataset]()
        train, eval_, test = dd["train"], dd["validation"], dd["test"]
    else:
        train, eval_, test = cfg.train, cfg.eval, cfg.test
    if cfg.train_limit is not None:
        import datasets

        if not isinstance(train, datasets.Dataset):
            train = datasets.Dataset.from_dict(read_table(train, "train").columns)
        if cfg.train_limit > len(train):
            raise ValueError(f"data.train_limit={cfg.train_limit} exceeds the {len(train)} training examples")
        train = train.shuffle(seed=0).select(range(cfg.train_limit))
    return train, eval_, test


def check_test_labels(cfg: RecipeConfig, train, test) -> None:
    """Fail on a test label that training never saw now, not after training."""
    m, d = cfg.model, cfg.data
    train_raw = read_raw_labels(read_table(train, "train"), d.label, m.task)
    table = read_table(test, "test")
    read_texts(table, d.text, m.template, m.pair_separator)
    LabelSpace.learn(m.task, train_raw, m.labels, d.label).encode(read_raw_labels(table, d.label, m.task), table.origin)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with data/model/train sections")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=5 model.pooling=mean")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train, eval_, test = splits(cfg.data)
    if test is not None:
        check_test_labels(cfg, train, test)

    start = time.perf_counter()
    text, label = cfg.data.text, cfg.data.label
    text = tuple(text) if isinstance(text, list) else text
    clf = llmhead.Classifier(cfg.model)
    clf.fit(train, eval_, text=text, label=label, **dataclasses.asdict(cfg.train))
    fit_s = time.perf_counter() - start
    if not PartialState().is_main_process:  # under torchrun / accelerate launch, rank 0 saves and reports
        return {}
    out = Path(cfg.output_dir)
    saved = clf.save(out / "model")
    n_train = len(read_table(train, "train"))
    result = {
        "fit_seconds": round(fit_s, 1),
        "train_examples": n_train,
        "evaluations": len(clf.history),
        "best_val_loss": min((h["val_loss"] for h in clf.history if "val_loss" in h), default=None),
        "truncated_texts": clf.truncated,
        "config": dataclasses.asdict(cfg),
    }
    if test is not None:
        result["test"] = clf.evaluate(test, text=text, label=label)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: KiB
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    summary = {k: round(v, 4) for k, v in result.get("test", {}).items() if isinstance(v, float)}
    print(f"test metrics: {json.dumps(summary)}")
    print(f"model saved to {saved}  (load with llmhead.load({str(saved)!r}))")
    print(
        f"fit {result['fit_seconds']} s, fit+save+test {result['total_seconds']} s, peak RSS {result['peak_rss_mb']} MB"
    )
    print(f"metrics written to {out / 'metrics.json'}")
    return result


if __name__ == "__main__":
    try:
        main()
    except TrainingInterrupted as exc:  # SIGTERM: a checkpoint was written; resume=true continues
        print(f"interrupted: {exc}")
        sys.exit(0)
    except (DataError, ValueError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}")

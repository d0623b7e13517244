"""The ladder: cross-validate the strategies that fit the data and a time budget, print one table,
recommend a winner with the reason, refit it on all the training data, test it, and save it.

    python recipes/ladder.py --config recipes/configs/ladder.yaml [data.train_limit=64 ladder.budget_s=900 ...]

Writes <output_dir>/ladder.md (the table), ladder.json, and model/ (llmhead.load-able).
Sections: data (as recipes/train.py), model (ModelConfig fields shared by every rung; mode is ignored),
train (TrainConfig fields for every rung's fit), ladder (budget_s, folds, rungs).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import check_test_labels, load_config, read_raw, splits  # noqa: E402

from llmhead.config import TrainConfig, build  # noqa: E402
from llmhead.data import DataError  # noqa: E402
from llmhead.ladder import run_ladder  # noqa: E402


@dataclass
class LadderConfig:
    budget_s: float = 900  # the whole ladder, cross-validation, refit and test included
    folds: int = 5
    rungs: list[str] | None = None  # None: the playbook's choice for the number of examples
    feature_cache: str | None = None  # keep features on disk between runs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with data/model/train/ladder sections")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. data.train_limit=500 ladder.budget_s=600")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    raw = read_raw(args.config, args.overrides)
    ladder = build(LadderConfig, raw.pop("ladder", None) or {}, where="ladder.")
    fit = raw.get("train") or {}
    build(TrainConfig, fit, where="train.")  # unknown or invalid keys fail now
    cfg = load_config(None, [], raw)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train, _, test = splits(cfg.data)  # the ladder cross-validates: no separate validation split is used
    if test is not None:
        check_test_labels(cfg, train, test)
    model_options = {k: v for k, v in (raw.get("model") or {}).items() if k != "mode"}
    text = tuple(cfg.data.text) if isinstance(cfg.data.text, list) else cfg.data.text
    start = time.perf_counter()
    result = run_ladder(
        train,
        text=text,
        label=cfg.data.label,
        test=test,
        budget_s=ladder.budget_s,
        folds=ladder.folds,
        rungs=ladder.rungs,
        out_dir=cfg.output_dir,
        fit=fit,
        feature_cache=ladder.feature_cache,
        **model_options,
    )
    summary = {
        "winner": result.winner,
        "test": {k: v for k, v in (result.test or {}).items() if isinstance(v, float)},
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(result.format())
    print(f"table: {Path(cfg.output_dir) / 'ladder.md'}; model: {Path(cfg.output_dir) / 'model'}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    try:
        main()
    except (DataError, ValueError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}")

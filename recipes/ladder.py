"""The ladder: cross-validate the strategies that fit the data and a time budget, print one table,
recommend a winner with the reason, refit it on all the training data, test it, and save it.

    python recipes/ladder.py --config recipes/configs/ladder.yaml [data.train_limit=64 ladder.budget_s=900 ...]

Writes <output_dir>/ladder.md (the table), ladder.json, and model/ (llmhead.load-able).
Sections: data (as recipes/train.py, without data.eval: the ladder cross-validates), model (ModelConfig fields
shared by every rung, checked as mode='auto'; the ladder picks the mode), train (TrainConfig fields for every
rung's fit), ladder (budget_s, folds, rungs). Every configuration or data problem is one ``error: ...`` line with
exit code 2, before any model loads.
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

from train import CONFIG_ERRORS, check_test_labels, fail, load_config, read_raw, splits  # noqa: E402

from llmhead.cli.startup import keep_heap  # noqa: E402
from llmhead.config import build, invalid  # noqa: E402
from llmhead.data import DataError, read_raw_labels, read_table, read_texts  # noqa: E402
from llmhead.model.backbone import resolve  # noqa: E402
from llmhead.selection.ladder import RUNGS, run_ladder  # noqa: E402


@dataclass
class LadderConfig:
    budget_s: float = 900  # the whole ladder, cross-validation, refit and test included
    folds: int = 5
    rungs: list[str] | None = None  # None: the playbook's choice for the number of examples
    feature_cache: str | None = None  # keep features on disk between runs

    def __post_init__(self):
        p = []
        budget = self.budget_s
        if not (isinstance(budget, (int, float)) and not isinstance(budget, bool) and 0 < budget < float("inf")):
            p.append(f"ladder.budget_s must be a number of seconds > 0, got {budget!r}")
        if not (isinstance(self.folds, int) and not isinstance(self.folds, bool) and self.folds >= 2):
            p.append(f"ladder.folds must be an int >= 2, got {self.folds!r}")
        if self.rungs is not None and not (
            isinstance(self.rungs, list) and self.rungs and all(isinstance(r, str) and r in RUNGS for r in self.rungs)
        ):
            p.append(f"ladder.rungs must be null or a non-empty list from {RUNGS}, got {self.rungs!r}")
        if self.feature_cache is not None and not (isinstance(self.feature_cache, str) and self.feature_cache.strip()):
            p.append(f"ladder.feature_cache must be a folder path or null, got {self.feature_cache!r}")
        if p:
            raise invalid(p)


def prepare(raw: dict):
    """Every check that needs no weights: the ladder, model (as mode='auto') and train sections, the data."""
    ladder = build(LadderConfig, raw.pop("ladder", None), where="ladder.")
    model = raw.get("model")
    if isinstance(model, dict):  # (a section that is not a mapping is refused by load_config)
        if model.get("mode", "auto") != "auto":
            raise invalid([f"model.mode={model['mode']!r}: the ladder picks the mode for each rung; remove model.mode"])
        raw["model"] = {**model, "mode": "auto"}  # options no rung reads are refused, train ones too
    cfg = load_config(None, [], raw)
    if cfg.model.task != "classification":
        raise invalid([f"model.task={cfg.model.task!r}: the ladder's rungs include prompting: task='classification'"])
    if cfg.data.eval is not None:
        raise invalid(["data.eval is not used by the ladder (it cross-validates data.train): remove it"])
    resolve(cfg.model.model)  # a misspelled alias, a missing file, a hub id while offline
    train, _, test = splits(cfg.data)  # a packaged corpus's validation split is not used either
    if test is not None:
        check_test_labels(cfg, train, test)
    else:
        table = read_table(train, "train")
        read_texts(table, cfg.data.text, cfg.model.template, cfg.model.pair_separator)
        read_raw_labels(table, cfg.data.label, cfg.model.task)
    return ladder, cfg, train, test


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with data/model/train/ladder sections")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. data.train_limit=500 ladder.budget_s=600")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        raw = read_raw(args.config, args.overrides)
        ladder, cfg, train, test = prepare(raw)
    except CONFIG_ERRORS as exc:
        fail(exc)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fit = raw.get("train") or {}
    model_options = {k: v for k, v in (raw.get("model") or {}).items() if k != "mode"}
    text = tuple(cfg.data.text) if isinstance(cfg.data.text, list) else cfg.data.text
    start = time.perf_counter()
    try:
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
    except DataError as exc:  # a data problem the checks above did not see; anything else keeps its traceback
        fail(exc)
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
    keep_heap()  # this process is the recipe's: glibc keeps its heap (llmhead/cli/startup.py)
    main()

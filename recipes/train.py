"""Train a classifier from a YAML config and save it with its metrics.

    python recipes/train.py --config recipes/configs/demo.yaml [train.epochs=20 model.head_hidden=[] ...]
    (the same as: llmhead train recipes/configs/demo.yaml train.epochs=20 ...)

Writes <output_dir>/model (llmhead.load-able, with a model card, README.md) and <output_dir>/metrics.json. Every
configuration and data problem is reported before the model loads, as one ``error: ...`` line with exit code 2;
unknown config keys fail with the nearest valid names. Values are read as YAML 1.2 (in the file and in key=value
overrides): 1e-3, 5E-5, .5 and 1_000 are numbers, only true/false are booleans (``chat_template: on`` is the string
'on'). The implementation is llmhead/cli/recipe.py, shared with the ``llmhead train`` command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from llmhead.cli.errors import CONFIG_ERRORS, fail, one_line  # noqa: E402, F401  (the ladder and check use them)
from llmhead.cli.recipe import (  # noqa: E402, F401
    CORPORA,
    DataConfig,
    RecipeConfig,
    check_test_labels,
    load_config,
    load_yaml,
    read_raw,
    splits,
    train,
)
from llmhead.cli.startup import keep_heap  # noqa: E402
from llmhead.finetuning.loop import TrainingInterrupted  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with data/model/train sections")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=5 model.pooling=mean")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        raw = read_raw(args.config, args.overrides)
    except CONFIG_ERRORS as exc:
        fail(exc)
    return train(raw)


if __name__ == "__main__":
    keep_heap()  # this process is the recipe's: glibc keeps its heap (llmhead/cli/startup.py)
    try:
        main()
    except TrainingInterrupted as exc:  # SIGTERM: a checkpoint was written; resume=true continues
        print(f"interrupted: {exc}")
        sys.exit(0)

"""Parity check of a saved classifier: the same logits across padding sides, batching, save -> load,
merge and export (when the head exports).

    python recipes/check.py runs/demo/model [--texts-file my_texts.txt]
    (the same as: llmhead check runs/demo/model [--texts-file my_texts.txt])

Prints one line per check and exits with 1 when any difference exceeds the stated tolerance; a folder that is not a
saved classifier, or a missing or empty texts file, is one ``error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import CONFIG_ERRORS, fail  # noqa: E402

import llmhead  # noqa: E402
from llmhead.cli.main import print_check, read_texts_file  # noqa: E402  (shared with `llmhead check`)
from llmhead.cli.startup import keep_heap  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a folder written by clf.save() or recipes/train.py")
    parser.add_argument("--texts-file", help="one text per line (default: built-in samples)")
    args = parser.parse_args(argv)
    try:
        texts = read_texts_file(args.texts_file) if args.texts_file else None
        clf = llmhead.load(args.model)  # not a saved classifier, another format, weights that differ from the saved
    except CONFIG_ERRORS as exc:
        fail(exc)
    report = llmhead.check(clf, texts)
    print_check(report)
    return report


if __name__ == "__main__":
    keep_heap()  # this process is the recipe's: glibc keeps its heap (llmhead/cli/startup.py)
    sys.exit(0 if main()["passed"] else 1)

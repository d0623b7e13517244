"""Parity check of a saved classifier: the same logits across padding sides, batching, save -> load,
merge and export (when the head exports).

    python recipes/check.py runs/demo/model [--texts-file my_texts.txt]

Prints one line per check and exits non-zero when any difference exceeds the stated tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import llmhead  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a folder written by clf.save() or recipes/train.py")
    parser.add_argument("--texts-file", help="one text per line (default: built-in samples)")
    args = parser.parse_args(argv)
    texts = Path(args.texts_file).read_text().splitlines() if args.texts_file else None
    report = llmhead.check(llmhead.load(args.model), texts)
    for name, value in report["checks"].items():
        shown = f"{value:.2e}" if isinstance(value, float) else value
        print(f"{name:>28}: {shown}")
    print(f"tolerance {report['tolerance']}: {'PASSED' if report['passed'] else 'FAILED'}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)

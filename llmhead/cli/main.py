"""The ``llmhead`` command: train, predict, evaluate, check, export, info.

A user's mistake (a bad option, file, column or model folder) is one ``error: ...`` line on standard error and exit
code 2, found before any weights load where it can be; ``--debug`` shows the traceback instead. Anything else is a
bug and keeps its traceback. Imports are deferred to the subcommand, so ``--help`` and ``info`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path

from llmhead.cli import errors

EXAMPLES = {
    "train": """examples:
  llmhead train recipes/configs/demo.yaml train.epochs=20 model.head_hidden=[]
  llmhead train --model smollm2-135m --train train.csv --eval eval.csv --text text --mode head --out runs/x

A config file has data, model and train sections (the fields of the recipe, recipes/train.py); key=value
overrides use dots; the short options set data.train, data.eval, data.test, data.text, data.label, model.model,
model.mode, model.task and output_dir, over the file and the overrides. Writes OUT/model (with its model card,
README.md) and OUT/metrics.json.""",
    "predict": """examples:
  llmhead predict runs/demo/model reviews.csv --out scored.csv --proba
  cat texts.jsonl | llmhead predict runs/demo/model - > scored.jsonl

INPUT is a .csv, .tsv, .jsonl or .parquet file, or - for JSON Lines on standard input. The output keeps every
input column and row, in order, and adds "prediction" (and "proba_<label>" per label with --proba). Its format
follows --out's extension; without --out (or with --out -) it goes to standard output in the input's format
(JSON Lines for Parquet input). A file output is written to a temporary file and renamed into place when
complete. Memory stays flat in the number of rows: the input is streamed in chunks of 1,024 rows.""",
    "evaluate": """examples:
  llmhead evaluate runs/demo/model test.csv
  llmhead evaluate runs/demo/model test.csv --label sentiment --report runs/demo/report

Prints the metrics as JSON (accuracy, macro_f1, per_class | micro/macro F1 | mse, mae, r2, pearson, spearman;
ece and brier for probabilities). --report DIR also writes metrics.json, worst.jsonl, one PNG per figure and
report.html there (needs matplotlib: pip install 'llmhead[report]').""",
    "check": """example:
  llmhead check runs/demo/model [--texts-file my_texts.txt]

The same logits across padding sides, batching, save -> load, merge and export (when the head exports). Exit code
1 when a difference exceeds the tolerance.""",
    "export": """example:
  llmhead export runs/demo/model hf_model   # then AutoModelForSequenceClassification.from_pretrained("hf_model")""",
    "info": """example:
  llmhead info runs/demo/model [--json]

Reads the model's manifest and file headers only: no weights load.""",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage mistake is one line too, pointing to the help (argparse prints the usage first)."""
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser = _Parser(
        prog="llmhead",
        description="Turn a pretrained decoder LLM into a text classifier or regressor.",
        epilog="""examples:
  llmhead train --model smollm2-135m --train train.csv --test test.csv --out runs/mine
  llmhead predict runs/mine/model big.csv --out scored.csv --proba
  llmhead info runs/mine/model

Run llmhead COMMAND --help for a command's options and an example.""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    from llmhead import __version__

    parser.add_argument("--version", action="version", version=f"llmhead {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXAMPLES[name],
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    for name, (help, add_arguments) in USAGE.items():
        add_arguments(command(name, help))
    return parser


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="CONFIG.yaml | key=value", help="a config file, then overrides")
    p.add_argument("--model", help="base model: alias (smollm2-135m, gemma3-270m), .gguf, folder or hub id")
    p.add_argument("--train", help="training data file (.csv .tsv .jsonl .json .parquet)")
    p.add_argument("--eval", help="validation data file (default: 10%% of --train, held out)")
    p.add_argument("--test", help="test data file, evaluated after training (metrics.json and the model card)")
    p.add_argument("--text", nargs="+", metavar="COLUMN", help="the text column (two for a text pair)")
    p.add_argument("--label", nargs="+", metavar="COLUMN", help="the label column(s)")
    p.add_argument("--mode", help="head, lora, qlora, full, probe, icl, lmhead")
    p.add_argument("--task", help="classification, multilabel or regression")
    p.add_argument("--out", metavar="DIR", help="output folder (model in DIR/model); default runs/train")


def _predict_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("input", metavar="INPUT", help="a .csv .tsv .jsonl .parquet file, or - (JSON Lines on stdin)")
    p.add_argument("--out", metavar="FILE", help="output file; its extension picks the format (default: stdout)")
    p.add_argument("--proba", action="store_true", help="add one probability column per label")
    p.add_argument("--batch-size", type=_positive, default=32, metavar="N", help="texts per forward pass (32)")
    p.add_argument("--text", nargs="+", metavar="COLUMN", help="text column(s) (default: those it was trained on)")
    p.add_argument("--threads", type=_positive, metavar="N", help="torch CPU threads (default: torch's choice)")


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("test", metavar="TEST", help="a .csv .tsv .jsonl .json .parquet file with texts and labels")
    p.add_argument("--text", nargs="+", metavar="COLUMN", help="text column(s) (default: those it was trained on)")
    p.add_argument("--label", nargs="+", metavar="COLUMN", help="label column(s) (default: those it was trained on)")
    p.add_argument("--batch-size", type=_positive, default=32, metavar="N")
    p.add_argument("--report", metavar="DIR", help="also write a report (plots, report.html) to DIR")


def _check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("--texts-file", help="one text per line (default: built-in samples)")


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("out", metavar="OUT")


def _info_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("--json", action="store_true", help="print JSON")


# each command: its one-line help (also its description) and what adds its options (COMMANDS runs it)
USAGE = {
    "train": (
        "train a model from a YAML config and/or options; save it with its metrics",
        _train_options,
    ),
    "predict": (
        "add predictions (and probabilities) to every row of a file, streamed in chunks",
        _predict_options,
    ),
    "evaluate": (
        "metrics of a saved model on labelled data",
        _evaluate_options,
    ),
    "check": (
        "parity checks of a saved model (padding, batching, save/load, merge, export)",
        _check_options,
    ),
    "export": (
        "write a plain transformers *ForSequenceClassification folder",
        _export_options,
    ),
    "info": (
        "what a saved model is: base, mode, labels, blocks read, data, metrics, size (no weights load)",
        _info_options,
    ),
}


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value!r}")
    return number


def _columns(value: list[str] | None):
    return None if value is None else value[0] if len(value) == 1 else list(value)


# ---- the commands ----------------------------------------------------------------------------------------------
OVERRIDE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=.*", re.S)  # a configuration override: section.key=value


def train(args) -> int:
    from llmhead.cli.recipe import read_raw, train

    config, overrides = None, []
    for i, item in enumerate(args.args):
        if "=" in item and not (i == 0 and os.path.isfile(item)):
            overrides.append(item)
        elif config is None and not overrides:
            config = item
        else:
            raise ValueError(f"{item!r}: expected key=value (one config file, first, then overrides)")
    for option in ("text", "label"):  # nargs="+" takes the overrides that follow it too
        taken = [v for v in getattr(args, option) or [] if OVERRIDE.fullmatch(v)]
        if taken:
            raise ValueError(
                f"--{option} {' '.join(getattr(args, option))}: {taken[0]!r} is a key=value override, not a column "
                f"name; put overrides before --{option}"
            )
    raw = read_raw(config, overrides)
    flags = {
        ("data", "train"): args.train,
        ("data", "eval"): args.eval,
        ("data", "test"): args.test,
        ("data", "text"): _columns(args.text),
        ("data", "label"): _columns(args.label),
        ("model", "model"): args.model,
        ("model", "mode"): args.mode,
        ("model", "task"): args.task,
    }
    for (section, key), value in flags.items():
        if value is not None:
            node = raw.setdefault(section, {})
            if not isinstance(node, dict):
                raise ValueError(f"the {section} section must be a mapping of key: value, got {node!r}")
            node[key] = value
    if args.out is not None:
        raw["output_dir"] = args.out
    if args.train is not None:  # a file given on the command line replaces the config's packaged corpus
        raw["data"].pop("dataset", None)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        train(raw)
    except Exception as exc:
        from llmhead.finetuning.loop import TrainingInterrupted  # (torch is loaded by then; not before the checks)

        if not isinstance(exc, TrainingInterrupted):
            raise
        print(f"interrupted: {exc}")  # SIGTERM: a checkpoint was written; resume=true continues
    return 0


def predict(args) -> int:
    from llmhead.cli import predict as scoring

    p = scoring.plan(args.model, args.input, args.out, args.text, args.proba)
    # `kill` or a scheduler's SIGTERM: exit through Python, so that the partial output file is removed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # a shared machine: more threads than free cores spin and stall
    rows = None if p.input == scoring.STDIO else scoring.check(p)  # every row checked before the model loads
    written = scoring.run(p, args.batch_size, rows)
    if p.out is not None:
        print(f"{written:,} rows with predictions written to {p.out}", file=sys.stderr)
    return 0


def evaluate(args) -> int:
    import inspect

    import llmhead
    from llmhead.cli.info import read_manifest
    from llmhead.data.examples import Examples
    from llmhead.data.labels import LabelSpace

    manifest = read_manifest(args.model)
    trained = manifest.get("data") or {}
    text = _columns(args.text) or trained.get("text") or "text"
    label = _columns(args.label) or trained.get("label") or "label"
    text, label = (tuple(c) if isinstance(c, list) else c for c in (text, label))
    options = {}
    if args.report is not None:
        if "report" not in inspect.signature(llmhead.Classifier.evaluate).parameters:
            raise ValueError("--report: this version of llmhead cannot write evaluation reports yet")
        from llmhead import report as reporting

        reporting.check_folder(args.report)  # before the model loads
        options["report"] = args.report
    # the data and its labels, checked against the saved label space before any weights load
    config, labels = manifest["model"], LabelSpace.from_json(manifest["labels"])
    held = Examples.read(args.test, text, label, labels.task, config.get("pair_separator", "\n"), "test")
    labels.encode(held.raw, held.origin)
    clf = llmhead.load(args.model)
    result = clf.evaluate(args.test, text=text, label=label, batch_size=args.batch_size, **options)
    print(json.dumps(result, indent=2))
    return 0


def check(args) -> int:
    import llmhead

    texts = read_texts_file(args.texts_file) if args.texts_file else None
    clf = llmhead.load(args.model)  # not a saved classifier, another format, weights that differ from the saved
    report = llmhead.check(clf, texts)
    print_check(report)
    return 0 if report["passed"] else 1


def print_check(report: dict) -> None:
    """One line per parity check, the verdict, then the report as JSON (recipes/check.py prints the same)."""
    for name, value in report["checks"].items():
        shown = f"{value:.2e}" if isinstance(value, float) else value
        print(f"{name:>28}: {shown}")
    print(f"tolerance {report['tolerance']}: {'PASSED' if report['passed'] else 'FAILED'}")
    print(json.dumps(report))


def read_texts_file(path: str) -> list[str]:
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"texts file not found: {file}")
    texts = [line for line in file.read_text().splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{file} holds no text (one text per line)")
    return texts


def export(args) -> int:
    import llmhead
    from llmhead.cli.info import read_manifest
    from llmhead.io.folder import check_target

    read_manifest(args.model)  # a saved model, and a place for its export, checked before the weights load
    if Path(args.out).expanduser().absolute() == Path(args.model).expanduser().absolute():
        raise ValueError(f"{args.out} is the model's own folder: export to another folder")
    check_target(args.out, "config.json", "transformers export")
    out = llmhead.load(args.model).export(args.out)
    print(f"exported to {out}  (AutoModelForSequenceClassification.from_pretrained({str(out)!r}))")
    return 0


def info(args) -> int:
    from llmhead.cli.info import describe, format_info

    details = describe(args.model)
    print(json.dumps(details, indent=2) if args.json else format_info(details))
    return 0


COMMANDS = {"train": train, "predict": predict, "evaluate": evaluate, "check": check, "export": export, "info": info}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "train" and all(OVERRIDE.fullmatch(x) for x in extra):
        args.args += extra  # overrides after an option: argparse takes the positionals in one run only
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    errors.DEBUG = args.debug or os.environ.get("LLMHEAD_DEBUG") == "1"
    try:
        code = COMMANDS[args.command](args)
    except errors.CONFIG_ERRORS as exc:
        if isinstance(exc, BrokenPipeError):  # `llmhead predict ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        errors.fail(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


def run() -> None:
    """The console script's entry point: the process is the command's, so it sets glibc's malloc thresholds first
    (``startup.keep_heap``); ``main`` alone (called from Python) sets nothing."""
    from llmhead.cli.startup import keep_heap

    keep_heap()
    sys.exit(main())

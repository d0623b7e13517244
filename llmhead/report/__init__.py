"""Reports a person can look at: ``clf.evaluate(data, report=DIR)`` writes into DIR

- ``metrics.json``: what ``evaluate`` returned (NaN written as null);
- one PNG per figure: confusion matrices (counts, row-normalised), per-class precision / recall / F1 with support,
  a reliability diagram with ECE and Brier score, ROC and precision-recall curves (binary: the second class; more
  classes or multilabel: one curve per class or label), predicted-vs-true and residuals (regression), training
  curves (loss, validation metric, learning rate) from ``clf.history`` and ``run_dir/train_log.jsonl``;
- ``worst.jsonl``: the worst-predicted examples with their text;
- ``report.html``: all of it in one self-contained page (images as data URIs; a Content-Security-Policy that lets
  it load nothing else; every text HTML-escaped).

One job per module: evaluation.py (what a report shows, from a classifier's public attributes), training.py (the
training curves' data), plots.py (the figures: matplotlib's ``Figure`` on an Agg canvas, never pyplot, so the
caller's backend and global figure state are untouched), html.py (the page), files.py (the files).
matplotlib is an optional dependency: ``pip install 'llmhead[report]'``.
"""

from __future__ import annotations

from llmhead.report.evaluation import Evaluation

EXTRA = "pip install 'llmhead[report]'"


def require() -> None:
    """Raise ImportError naming the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"evaluate(..., report=DIR) draws its figures with matplotlib, which is missing: {EXTRA}"
        ) from exc


def check_folder(folder) -> None:
    """Refuse a folder a report would damage: a file, or a folder of other files (a training run's folder holds its
    own metrics.json). A new folder, an empty one, or an earlier report's (it has report.html) is fine."""
    from pathlib import Path

    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"report folder {path} is a file, not a folder")
    if path.is_dir() and not (path / "report.html").is_file() and any(path.iterdir()):
        held = sorted(p.name for p in path.iterdir())
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise ValueError(
            f"report folder {path} already holds files and no report.html ({shown}): a report writes metrics.json, "
            "worst.jsonl and figures there and would replace files of those names; choose a new or empty folder"
        )


def write(folder, evaluation: Evaluation):
    """Write the report of ``evaluation`` into ``folder`` (created if needed; files of other names are kept);
    return the path of report.html."""
    require()
    from llmhead.report.files import write_report

    return write_report(folder, evaluation)


__all__ = ["EXTRA", "Evaluation", "require", "write"]

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


def write(folder, evaluation: Evaluation):
    """Write the report of ``evaluation`` into ``folder`` (created if needed; files of other names are kept);
    return the path of report.html."""
    require()
    from llmhead.report.files import write_report

    return write_report(folder, evaluation)


__all__ = ["EXTRA", "Evaluation", "require", "write"]

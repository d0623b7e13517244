"""The training curves' data: what the model's training left behind, whichever exists.

- ``run_dir/train_log.jsonl`` (fine-tuning with a run_dir): one line per optimizer step (``step``, ``loss``, ``lr``)
  and one per evaluation (``{"eval": {"step", "val_loss", metrics...}}``). A resumed run logs the steps after its
  checkpoint again: the latest line for a step wins.
- ``clf.history`` (saved with the model): per epoch ``train_loss`` and ``val_loss`` (head, lmhead), or the
  fine-tuning evaluations (``step``, ``val_loss``, metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

METRICS = ("accuracy", "macro_f1", "micro_f1", "r2", "pearson", "val_accuracy")  # the first present is plotted


@dataclass
class Curves:
    x_label: str = "step"
    series: dict[str, tuple[list, list]] = field(default_factory=dict)  # name -> (x, y): train_loss, val_loss, ...
    metric: str | None = None  # the validation metric plotted, if any
    notes: list[str] = field(default_factory=list)  # what could not be read, said in the report

    def __bool__(self) -> bool:
        return any(len(x) > 1 for x, _ in self.series.values())


def _series(records: list[dict], x_key: str, key: str) -> tuple[list, list]:
    pairs = [(r[x_key], r[key]) for r in records if isinstance(r.get(key), (int, float)) and x_key in r]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def read_log(path: Path, notes: list[str]) -> tuple[list[dict], list[dict]]:
    """(step records, evaluation records) of a train_log.jsonl, by step; unreadable lines are named in ``notes``."""
    steps, evals = {}, {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                notes.append(f"{path}: line {number} is not JSON ({exc.msg}); left out")
                continue
            if isinstance(record, dict) and isinstance(record.get("eval"), dict) and "step" in record["eval"]:
                evals[record["eval"]["step"]] = record["eval"]
            elif isinstance(record, dict) and "step" in record:
                steps[record["step"]] = record
            else:
                notes.append(f"{path}: line {number} is neither a step nor an evaluation record; left out")
    return [steps[k] for k in sorted(steps)], [evals[k] for k in sorted(evals)]


def curves(history: list[dict], log: Path | None) -> Curves:
    """The curves to draw: from the log when it exists (steps), else from the history (epochs or steps)."""
    out = Curves()
    if log is not None and log.is_file():
        steps, evals = read_log(log, out.notes)
        out.series["train_loss"] = _series(steps, "step", "loss")
        out.series["lr"] = _series(steps, "step", "lr")
    else:
        if log is not None:
            out.notes.append(f"{log} does not exist (any more): curves from the saved history only")
        evals = [r for r in history if "step" in r]
        per_epoch = [r for r in history if "step" not in r and "epoch" in r]
        if per_epoch and not evals:
            out.x_label = "epoch"
            out.series["train_loss"] = _series(per_epoch, "epoch", "train_loss")
            evals = per_epoch
    x = "epoch" if out.x_label == "epoch" else "step"
    out.series["val_loss"] = _series(evals, x, "val_loss")
    for name in METRICS:
        xs, ys = _series(evals, x, name)
        if xs:
            out.metric, out.series[name] = name, (xs, ys)
            break
    out.series = {k: v for k, v in out.series.items() if v[0]}
    return out

"""What the ladder shows: its table (``LadderResult``, also the object ``run_ladder`` returns) and, while it runs, a
line per rung on standard error and the table rewritten in the output folder as each rung ends."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmhead.classifier import Classifier
from llmhead.progress import say

BASELINE = "tfidf"  # the rung every other is measured against (its lead in the table; never picked below it)


@dataclass(repr=False)
class LadderResult:
    n: int
    folds: int
    metric: str
    rows: list[dict]  # one per rung: status, score, costs
    winner: str
    reason: str
    playbook_pick: tuple[str, ...]
    agreed: bool
    seconds: float
    test: dict | None = None
    classifier: Classifier | None = field(default=None, repr=False)

    def format(self) -> str:
        out = [
            f"Ladder on {self.n} examples, {self.folds}-fold cross-validation, metric {self.metric}",
            "",
            "| rung | playbook | CV score (mean +/- std) | vs baseline | fit s / fold | predict s / 1,000 | trainable "
            "| status |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        floor = next((r.get("mean") for r in self.rows if r["rung"] == BASELINE), None)
        for r in self.rows:
            score = f"{r['mean']:.4f} +/- {r['std']:.4f}" if r.get("mean") is not None else "-"
            fit = f"{r['fit_seconds']:.1f}" if r.get("fit_seconds") is not None else "-"
            pred = f"{r['predict_per_1000']:.1f}" if r.get("predict_per_1000") is not None else "-"
            params = f"{r['trainable']:,}" if r.get("trainable") is not None else "-"
            pick = "yes" if r["rung"] in self.playbook_pick else ""
            name = f"**{r['rung']}**" if r["rung"] == self.winner else r["rung"]
            gain = f"{r['mean'] - floor:+.4f}" if r.get("mean") is not None and floor is not None else "-"
            out.append(f"| {name} | {pick} | {score} | {gain} | {fit} | {pred} | {params} | {r['status']} |")
        if not self.winner:  # written while the ladder runs
            return "\n".join([*out, "", "(running: the rungs above have ended)"])
        out += [
            "",
            f"winner: {self.winner}. {self.reason}",
            f"playbook pick: {' / '.join(self.playbook_pick)}; {self._verdict()}",
        ]
        if self.test:
            out.append(f"winner refit on all {self.n} examples; test: {_short(self.test)}")
        out.append(f"total {self.seconds:.0f} s")
        return "\n".join(out)

    def _verdict(self) -> str:
        """Whether the data agreed with the playbook: only a pick that ran can be agreed or disagreed with."""
        ran = {r["rung"] for r in self.rows if r["status"] == "ran"}
        if not ran & set(self.playbook_pick):
            return "none of them ran, so the data could not say."
        return f"the data {'agreed' if self.agreed else 'disagreed'}."

    def __repr__(self) -> str:
        return self.format()

    def _repr_markdown_(self) -> str:  # notebooks render the table
        return self.format()

    def to_json(self) -> dict:
        data = dataclasses.asdict(dataclasses.replace(self, classifier=None))
        data.pop("classifier")
        return data


class LadderProgress:
    """What the user sees while the ladder runs: a line per rung on standard error, and the table in ``folder``,
    rewritten as each rung ends, so a stopped ladder leaves what it had found."""

    def __init__(self, result: LadderResult, folder: Path | None, progress: bool, start: float):
        self.result, self.folder, self.progress, self.start = result, folder, progress, start

    def say(self, line: str) -> None:
        say(f"ladder [{time.perf_counter() - self.start:5.0f} s] {line}", self.progress)

    def row(self, row: dict) -> None:
        if row.get("mean") is not None:
            score = f"{row['mean']:.4f} +/- {row['std']:.4f} CV {self.result.metric}"
            self.say(f"{row['rung']}: {score} in {row['seconds']:.0f} s")
        elif row["status"] != "not requested":
            self.say(f"{row['rung']}: {row['status']}")
        self.write(final=False)

    def write(self, final: bool) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if final:
            self.result.classifier.save(self.folder / "model")
        (self.folder / "ladder.md").write_text(self.result.format() + "\n")
        (self.folder / "ladder.json").write_text(json.dumps(self.result.to_json(), indent=2, default=str))

    def done(self) -> None:
        self.write(final=True)
        self.say(f"done in {self.result.seconds:.0f} s" + (f"; saved in {self.folder}" if self.folder else ""))


def _short(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))

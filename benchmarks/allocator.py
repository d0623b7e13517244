"""glibc's malloc thresholds and the forward pass on the CPU: llmhead's feature pass and the peer's forward, each
with glibc's defaults and with fixed thresholds set through the environment; llmhead also as its commands run it
(``llmhead ...`` and the recipes set the same thresholds at start-up, ``llmhead/cli/startup.py``).

With its defaults glibc raises its mmap threshold as blocks are freed (at most 32 MB) and gives the top of the heap
back to the system once more than twice that is free, so a forward pass whose per-layer tensors are tens of MB maps,
unmaps and faults memory in again at every layer. Fixed thresholds (``MALLOC_MMAP_THRESHOLD_=33554432``: blocks up
to 32 MB from the heap; ``MALLOC_TRIM_THRESHOLD_``: the heap kept) reuse the same memory instead. The library sets
nothing (a library call leaves the process as it found it); llmhead's commands own their process and set them.

Each (setting, side) is a spawned process, in turn, in each of two rounds: SmolLM2-135M, the same BBC News articles
(256 tokens), a warm-up on 16 other articles, then the pass twice; it reports the faster pass, its page faults and
the process's peak RSS.
llmhead: ``embed`` of a frozen ``mode="head"`` classifier (batches of 32). The peer:
``AutoModelForSequenceClassification`` under bf16 autocast where native, batches of 16 padded by the tokenizer (as
its ``Trainer`` evaluates).

    .venv/bin/python benchmarks/allocator.py            # two rounds, ~8 min; results/allocator.json
    .venv/bin/python benchmarks/allocator.py --quick    # tiny model, seconds (a test runs it)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import isolated, machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TUNED = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30)}
ROWS = {"bbc": 128, "quick": 8}
WARM = {"bbc": 16, "quick": 8}


def page_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def one_run(dataset: str, side: str, threads: int, allocator: str) -> dict:
    if allocator == "llmhead command":  # what `llmhead ...` and the recipes do first
        from llmhead.cli.startup import keep_heap

        assert keep_heap(), "glibc's thresholds were not set"
    import torch
    from time_to_accuracy import DATASETS, load

    torch.set_num_threads(threads)
    spec = DATASETS[dataset]
    model_path, train, _, _ = load(dataset)
    texts = [r["text"] for r in train[: WARM[dataset] + ROWS[dataset]]]
    warm, rows = texts[: WARM[dataset]], texts[WARM[dataset] :]
    if side == "llmhead":
        import llmhead

        clf = llmhead.from_pretrained(model_path, mode="head", task=spec["task"], max_length=spec["max_length"])
        clf.extractor.progress = False

        def forward(batch_texts):
            return clf.embed(batch_texts, batch_size=32, cache=False).values
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from llmhead.model.precision import resolve_dtype

        tokenizer = AutoTokenizer.from_pretrained(model_path)
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=5).eval()
        model.config.pad_token_id = tokenizer.pad_token_id
        bf16 = resolve_dtype("auto") == "bfloat16"

        @torch.no_grad()
        def forward(batch_texts):
            out = []
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                for start in range(0, len(batch_texts), 16):
                    part = batch_texts[start : start + 16]
                    enc = tokenizer(
                        part, truncation=True, max_length=spec["max_length"], padding=True, return_tensors="pt"
                    )
                    out.append(model(**enc).logits.float())
            return torch.cat(out)

    forward(warm)
    passes = []
    for _ in range(2):
        faults, start = page_faults(), time.perf_counter()
        forward(rows)
        passes.append((time.perf_counter() - start, page_faults() - faults))
    seconds, faults = min(passes)
    return {
        "side": side,
        "allocator": allocator,
        "rows": len(rows),
        "seconds": round(seconds, 2),
        "page_faults": faults,
    }


@contextlib.contextmanager
def environment(values: dict):
    """Only ``values`` of glibc's malloc settings (and none of llmhead's opt-out) in ``os.environ`` while it is open,
    so that "glibc defaults" are the defaults whatever the parent process has; the parent's put back after."""
    names = (*TUNED, "GLIBC_TUNABLES", "LLMHEAD_MALLOC")
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ.update(values)
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)
            if saved[name] is not None:
                os.environ[name] = saved[name]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and toy rows (still spawned processes)")
    parser.add_argument("--rounds", type=int, default=2, help="each setting this many times, in turn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "allocator.json"))
    args = parser.parse_args(argv)
    dataset = "quick" if args.quick else "bbc"
    settings = [("glibc defaults", {}, ("llmhead", "peer")), ("environment", TUNED, ("llmhead", "peer"))]
    if platform.libc_ver()[0] == "glibc":  # keep_heap sets nothing elsewhere
        settings.append(("llmhead command", {}, ("llmhead",)))
    result = {
        "setup": {**machine(args.threads), "dataset": dataset, "model": "smollm2-135m", "tuned": TUNED},
        "runs": [],
    }
    for round_ in range(1 if args.quick else args.rounds):  # glibc's choices vary between processes: see the spread
        for allocator, env, sides in settings:
            for side in sides:
                with environment(env):  # read by glibc when the spawned process starts
                    run = isolated(one_run, dataset, side, args.threads, allocator)
                result["runs"].append({"round": round_ + 1, "allocator": allocator, **run})
                print(json.dumps(result["runs"][-1]), flush=True)
                Path(args.out).write_text(json.dumps(result, indent=1) + "\n")  # what ran so far, if a row fails
    runs = result["runs"]
    print(format_table(runs))
    return result


def format_table(runs: list[dict]) -> str:
    lines = [
        "| round | side | allocator | rows | forward s | page faults | peak RSS MB |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['round']} | {r['side']} | {r['allocator']} | {r['rows']} | {r['seconds']:.2f} | "
            f"{r['page_faults']:,} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

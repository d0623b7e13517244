"""What each CPU speed-up (llmhead/speedups/) gains on a default run, side by side in one process: each against the
same run with only that one switched off, and all against none (``speedups=[]``, the plain transformers path),
on the packaged SmolLM2-135M and real Rotten Tomatoes critic snippets (~26 tokens each).

    .venv/bin/python benchmarks/speedups.py --threads 1    # about 10 minutes; writes benchmarks/results/speedups.json
    .venv/bin/python benchmarks/speedups.py --quick        # tiny in-process model, under a minute (a test runs it)

Each speed-up is measured on what its module claims:

- feature extraction / prediction (short_attention): ``clf.logits`` over 192 test
  snippets at batch 16, dtype 'auto'; every classifier carries the same head (copied), so their logits compare too.
- a LoRA training step (short_attention): ``mode='lora'`` with its defaults (r=16 on every linear
  projection, bf16 autocast where the CPU has it), 6 optimizer steps of 16 training snippets; no warm start, so the
  fit is the steps. Step times come from the fit's ``run_dir/train_log.jsonl``; the first step (the loader's start)
  is left out, and every variant trains on the same batches.
- the load (mapped_load): peak RSS (``VmHWM``) and seconds of ``clf.model`` loading the backbone, in a fresh spawned
  process per load. mapped_load acts only when the dtype asked for differs from the stored one (SmolLM2's cache is
  float32), so the load asks for dtype='bfloat16' explicitly. That is the default run's load where 'auto' resolves
  to bfloat16 (a CPU with native bf16, as this one: ``bf16_native`` in the JSON); where it resolves to float32,
  mapped_load does nothing.

Timing on a shared machine: within each repetition the variants run one after the other, in an order reversed every
other repetition, so a drift of the machine's speed hits every variant alike. Feature extraction first runs one
warm-up repetition, left out (oneDNN builds its kernels per input shape on first use); LoRA fits, 20-40 s each on
one thread, have none: the all-on variant runs first, so building kernels counts against the speed-ups (and
against the control's steadiness), never for them. Reported: each variant's median, and per speed-up the ratio
without / with it of each repetition (> 1: faster with it), their median and range. A control times the all-on
configuration twice (two classifiers): its ratios show this machine's noise. Verdict "gain" when the median ratio
lies above the control's widest deviation from 1 and more than three quarters of the repetitions are faster with it
(for memory, when every load without it peaks more than 2% above every load with it; for the load's seconds, which
have no control, when the two sides' ranges do not overlap); "loss" the other way round; "within noise" otherwise.
Threads: ``--threads`` (default 2, this machine's cores). Where other work shares the cores, two threads collapse
(each parallel region waits for a descheduled thread: a 256-snippet pass took 33 s instead of 2.6 s here), so on a
shared machine run ``--threads 1``. Prints a markdown table and one final JSON line; writes the JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import isolated, machine, make_tiny, rotten_tomatoes, rss_mb, sentiment_rows  # noqa: E402

SPEEDUPS = ("short_attention", "mapped_load")  # the `speedups` option's values
CONTROL = "all, again"
# Which variants each measurement times (name -> the speedups option); "-x" is every speed-up but x.
VARIANTS = {"all": list(SPEEDUPS), CONTROL: list(SPEEDUPS), "none": []}
VARIANTS.update({f"-{s}": [x for x in SPEEDUPS if x != s] for s in SPEEDUPS})
FEATURES = ["all", CONTROL, "-short_attention", "none"]
LORA = ["all", CONTROL, "-short_attention", "none"]
LOAD = ["all", "-mapped_load"]


def quiet() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()  # the load report of a model without its LM head, on every load
    transformers.logging.disable_progress_bar()


def interleaved(names: list[str], run, reps: int, warmup: int) -> dict[str, list[float]]:
    """``run(name)`` for every name, ``warmup + reps`` times, the order reversed every other repetition; the
    warm-up repetitions are not kept."""
    values: dict[str, list[float]] = {n: [] for n in names}
    for i in range(warmup + reps):
        for name in names if i % 2 == 0 else names[::-1]:
            value = run(name)
            if i >= warmup:
                values[name].append(value)
    return values


# ---- feature extraction / prediction ------------------------------------------------------------------------
def features(model: str, train: list, val: list, texts: list[str], reps: int, warmup: int, batch: int) -> dict:
    import llmhead

    clfs = {}
    for name in FEATURES:
        clf = llmhead.from_pretrained(model, speedups=VARIANTS[name], seed=0)
        clf.fit(train, val, epochs=0, progress=False)  # a head as initialised: its speed does not depend on training
        clfs[name] = clf
    head = clfs["none"].model.head.state_dict()
    for clf in clfs.values():  # one head for all: the logits differ only by what the speed-ups change
        clf.model.head.load_state_dict(head)
    logits = {}

    def run(name: str) -> float:
        start = time.perf_counter()
        out = clfs[name].logits(texts, batch_size=batch)
        seconds = time.perf_counter() - start
        logits.setdefault(name, out)
        return seconds

    seconds = interleaved(FEATURES, run, reps, warmup)
    plain = logits["none"]
    return {
        "seconds": seconds,
        "max_abs_logit_diff_vs_none": {n: float((logits[n] - plain).abs().max()) for n in FEATURES},
        "logits_equal_to_none": {n: bool((logits[n] == plain).all()) for n in FEATURES},
        "logit_scale": float(plain.abs().max()),
        "dtype": str(next(clfs["all"].model.backbone.parameters()).dtype).removeprefix("torch."),
        "attention": {n: clfs[n].model.backbone.config._attn_implementation for n in ("all", "none")},
    }


# ---- a LoRA training step -----------------------------------------------------------------------------------
def lora_step(model: str, speedups: list[str], train: list, val: list, batch: int) -> float:
    """Mean seconds per optimizer step of a default LoRA fit, steps 2..N (the first also starts the loader)."""
    import llmhead

    with tempfile.TemporaryDirectory() as run_dir:
        clf = llmhead.from_pretrained(model, mode="lora", speedups=speedups, seed=0)
        _ = clf.model  # the weights load here, outside the steps
        clf.fit(train, val, epochs=1, batch_size=batch, warm_start=False, progress=False, run_dir=run_dir)
        with open(Path(run_dir) / "train_log.jsonl") as f:
            steps = [r for r in map(json.loads, f) if "lr" in r and "examples_per_s" in r]
    # examples_per_s is the epoch's examples so far over its time so far: every batch holds `batch` examples here
    elapsed = [batch * r["step"] / r["examples_per_s"] for r in steps]
    if len(elapsed) < 2:
        raise RuntimeError(f"a LoRA fit of {len(train)} examples at batch {batch} logged {len(elapsed)} steps, need 2")
    return (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)


def lora(model: str, train: list, val: list, reps: int, warmup: int, batch: int) -> dict:
    return {"seconds": interleaved(LORA, lambda n: lora_step(model, VARIANTS[n], train, val, batch), reps, warmup)}


# ---- the load -----------------------------------------------------------------------------------------------
def load_phase(model: str, speedups: list[str], threads: int) -> dict:
    """In a fresh process: ``clf.model`` loading the backbone in bfloat16; this process's peak RSS is added."""
    import torch

    torch.set_num_threads(threads)
    quiet()
    import llmhead

    clf = llmhead.from_pretrained(model, dtype="bfloat16", speedups=speedups)
    before = rss_mb()
    start = time.perf_counter()
    backbone = clf.model.backbone
    seconds = time.perf_counter() - start
    return {
        "load_s": seconds,
        "rss_before_load_mb": before,
        "rss_after_load_mb": rss_mb(),
        "dtype": str(next(backbone.parameters()).dtype).removeprefix("torch."),
    }


def load(model: str, reps: int, threads: int) -> dict:
    runs: dict[str, list[dict]] = {n: [] for n in LOAD}

    def run(name: str) -> float:
        runs[name].append(isolated(load_phase, model, VARIANTS[name], threads))
        return runs[name][-1]["load_s"]

    seconds = interleaved(LOAD, run, reps, 0)
    return {"seconds": seconds, "peak_rss_mb": {n: [r["peak_rss_mb"] for r in runs[n]] for n in LOAD}, "runs": runs}


# ---- ratios and verdicts ------------------------------------------------------------------------------------
def compare(on: list[float], off: list[float], noise: float | None, memory: bool = False) -> dict:
    """off / on per repetition (> 1: the speed-up helps), their median and range, and a verdict."""
    ratios = [b / a for a, b in zip(on, off)]
    median = statistics.median(ratios)
    faster = sum(r > 1 for r in ratios) / len(ratios)
    if memory:  # peaks barely move between runs: every load on one side more than 2% above every one on the other
        verdict = "gain" if min(off) > 1.02 * max(on) else "loss" if max(off) * 1.02 < min(on) else "within noise"
    elif noise is None:  # no control: the two sides' ranges must not overlap
        verdict = "gain" if min(off) > max(on) else "loss" if max(off) < min(on) else "within noise"
    elif median > 1 + noise and faster > 0.75:
        verdict = "gain"
    elif median < 1 - noise and faster < 0.25:
        verdict = "loss"
    else:
        verdict = "within noise"
    return {
        "on_median": statistics.median(on),
        "off_median": statistics.median(off),
        "ratio_median": median,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "reps_faster_with_it": faster,
        "verdict": verdict,
    }


def summarise(result: dict) -> list[dict]:
    rows = []

    def add(speedup: str, measured: str, part: dict, off: str, unit: str, key: str = "seconds", noise=None, **kw):
        on_values = part[key]["all"]
        row = compare(on_values, part[key][off], noise, **kw)
        rows.append({"speedup": speedup, "measured": measured, "unit": unit, "without": off, **row})

    def noise(part: dict) -> float:
        s = part["seconds"]
        return max(abs(b / a - 1) for a, b in zip(s["all"], s[CONTROL]))

    feats, steps, loads = result["features"], result["lora"], result["load"]
    n = result["setup"]["n_texts"]
    fx, st = f"feature extraction, {n} snippets", "LoRA step"
    fn, sn = noise(feats), noise(steps)
    add("short_attention", fx, feats, "-short_attention", "s", noise=fn)
    add("short_attention", st, steps, "-short_attention", "s/step", noise=sn)
    add("mapped_load", "peak RSS of the bf16 load", loads, "-mapped_load", "MB", key="peak_rss_mb", memory=True)
    add("mapped_load", "seconds of the bf16 load", loads, "-mapped_load", "s")
    add("all", fx, feats, "none", "s", noise=fn)
    add("all", st, steps, "none", "s/step", noise=sn)
    add("control: all vs all", fx, feats, CONTROL, "s")
    add("control: all vs all", st, steps, CONTROL, "s")
    for row in rows[-2:]:
        row["verdict"] = f"noise +/-{max(abs(row['ratio_min'] - 1), abs(row['ratio_max'] - 1)):.1%}"
    return rows


def key_of(row: dict) -> str:
    what = "features" if row["measured"].startswith("feature") else "lora_step" if "LoRA" in row["measured"] else None
    what = what or ("load_peak_rss" if "RSS" in row["measured"] else "load_seconds")
    return f"{row['speedup'].replace(' ', '_').replace(':', '')}_{what}"


def print_table(rows: list[dict]) -> None:
    print(
        "\n| speed-up | measured | with it (median) | without it (median) | without / with: median [range] "
        "| reps faster with it | verdict |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        spec = ".0f" if r["unit"] == "MB" else ".3f"
        print(
            f"| {r['speedup']} | {r['measured']} | {r['on_median']:{spec}} {r['unit']} | {r['off_median']:{spec}} "
            f"{r['unit']} | {r['ratio_median']:.3f} [{r['ratio_min']:.3f}-{r['ratio_max']:.3f}] "
            f"| {r['reps_faster_with_it']:.0%} | {r['verdict']} |"
        )


# ---- the run ------------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny in-process model and toy data, 1 repetition")
    parser.add_argument("--threads", type=int, default=2, help="1 where other work shares the cores (see README)")
    parser.add_argument("--n-texts", type=int, default=192, help="snippets per feature-extraction pass")
    parser.add_argument("--lora-steps", type=int, default=6, help="optimizer steps per LoRA fit (the first not timed)")
    parser.add_argument("--reps", type=int, default=None, help="feature-extraction repetitions (default 5)")
    parser.add_argument("--lora-reps", type=int, default=None, help="LoRA repetitions (default 3)")
    parser.add_argument("--load-reps", type=int, default=None, help="loads per side, each its own process (3)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/speedups.json (none with --quick)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    quiet()
    batch = 16
    if args.quick:
        model = make_tiny(Path(tempfile.mkdtemp()) / "tiny")
        rows = sentiment_rows(10)
        train, val, texts = rows[:32], rows[32:40], [r["text"] for r in rows[:48]]
        lora_train = (rows * 2)[: batch * min(args.lora_steps, 3)]
    else:
        model = "smollm2-135m"
        data = rotten_tomatoes()
        shuffled = data["train"].shuffle(seed=0)
        train, lora_train = (
            list(shuffled.select(range(32))),
            list(shuffled.select(range(32, 32 + batch * args.lora_steps))),
        )
        val = list(data["validation"].select(range(16)))
        texts = data["test"]["text"][: args.n_texts]
    default = (1, 1, 1) if args.quick else (5, 3, 3)
    reps, lora_reps, load_reps = (
        x if x is not None else d for x, d in zip((args.reps, args.lora_reps, args.load_reps), default)
    )
    warmup = 0 if args.quick else 1  # feature extraction only: a LoRA fit costs 20-40 s (see the docstring)
    result = {
        "setup": {
            **machine(args.threads),
            "model": "tiny-llama (random)" if args.quick else "smollm2-135m (packaged, safetensors cache)",
            "data": "toy rows" if args.quick else "Rotten Tomatoes critic snippets",
            "n_texts": len(texts),
            "mean_tokens": None,
            "lora_mean_tokens": None,
            "batch_size": batch,
            "lora_steps": len(lora_train) // batch,
            "reps_features": reps,
            "reps_lora": lora_reps,
            "loads_per_side": load_reps,
            "warmup_reps_features": warmup,
            "warmup_reps_lora": 0,
            "variants": VARIANTS,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        }
    }
    start = time.perf_counter()
    import llmhead

    tokenizer = llmhead.from_pretrained(model).tokenizer
    tokens = [len(tokenizer(t)["input_ids"]) for t in texts]
    result["setup"]["mean_tokens"] = round(statistics.mean(tokens), 1)
    result["setup"]["lora_mean_tokens"] = round(
        statistics.mean(len(tokenizer(r["text"])["input_ids"]) for r in lora_train), 1
    )
    result["features"] = features(model, train, val, texts, reps, warmup, batch)
    print(f"feature extraction measured ({time.perf_counter() - start:.0f} s)", flush=True)
    result["lora"] = lora(model, lora_train, val, lora_reps, 0, batch)
    print(f"LoRA steps measured ({time.perf_counter() - start:.0f} s)", flush=True)
    result["load"] = load(model, load_reps, args.threads)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["setup"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = summarise(result)
    result["rows"] = rows
    ratios = {key_of(r): round(r["ratio_median"], 3) for r in rows}
    verdicts = {key_of(r): r["verdict"] for r in rows}
    result["ratios"], result["verdicts"] = ratios, verdicts
    print_table(rows)
    print(json.dumps({"ratios": ratios, "verdicts": verdicts}))
    out = args.out or (None if args.quick else str(ROOT / "benchmarks" / "results" / "speedups.json"))
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

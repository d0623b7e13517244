"""Time to accuracy: wall time from the raw data until a model reaches a validation target, llmhead (its defaults)
against the peer (AutoModelForSequenceClassification + peft + Trainer) given a grid of learning rates, the best of
which counts. One table = one data set and one mode, both sides, run alone:

    .venv/bin/python benchmarks/time_to_accuracy.py --dataset rt --mode lora    # ~30 min; writes results/tta-rt-lora.*
    .venv/bin/python benchmarks/time_to_accuracy.py --dataset rt --mode head
    .venv/bin/python benchmarks/time_to_accuracy.py --dataset rt --mode full
    .venv/bin/python benchmarks/time_to_accuracy.py --dataset vader --mode lora
    .venv/bin/python benchmarks/time_to_accuracy.py --dataset rt --mode lora --model gemma3-270m  # a second family
    .venv/bin/python benchmarks/time_to_accuracy.py --dataset bbc --mode head --peer-epochs 3     # a smaller budget
    .venv/bin/python benchmarks/time_to_accuracy.py --quick                    # tiny model, seconds (a test runs it)

What is timed (as MLPerf Training and DAWNBench time training): from the raw rows to a model that predicts, so
tokenization, feature passes, llmhead's warm start and every validation count; loading the weights is timed apart.
Both sides evaluate on the same validation rows at the same points: every ``E`` training examples (E a multiple
of both batch sizes, chosen so that llmhead's run is evaluated at least 8 times) and at each epoch's end; the
head-only peer at each epoch's end. Each evaluation's elapsed time, its own duration and the validation metric are
kept, so the JSON also gives each time with the evaluations taken out.

The target is fixed in advance: 0.98 x the best validation metric either side reached in a reference run of that
table, kept in ``results/tta-targets.json``; a table without one takes its target from the run itself and says so.
Each run is one spawned process (its own peak RSS). Writes ``results/tta-<dataset>-<mode>[-<model>].json`` and a PNG
of the validation metric against elapsed seconds for every run, with the target line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import isolated, machine, make_tiny, packaged_model_path, peer_training_args, sentiment_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = RESULTS / "tta-targets.json"
TARGET_FRACTION = 0.98
PEER_BATCH = 16  # the peer's batch, as in peer.py
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]

DATASETS = {  # training / validation / test rows, max_length, label column, task, the metric compared
    "rt": dict(n_train=1000, n_val=200, n_test=500, max_length=128, label="label", task="classification"),
    "bbc": dict(n_train=500, n_val=200, n_test=400, max_length=256, label="label", task="classification"),
    "vader": dict(n_train=1000, n_val=200, n_test=500, max_length=128, label="rating", task="regression"),
    "quick": dict(n_train=32, n_val=16, n_test=16, max_length=32, label="label", task="classification"),
}
MODELS = ["smollm2-135m", "gemma3-270m"]  # packaged weights (llmhead/model/assets.py); a second family and size
MODES = {  # the peer's learning-rate grid and epoch budget
    "head": dict(lrs=[5e-5, 2e-4, 1e-3], epochs=10),
    "lora": dict(lrs=[5e-5, 2e-4, 1e-3], epochs=3),
    "full": dict(lrs=[1e-5, 5e-5, 2e-4], epochs=2),
}


def metric_name(task: str) -> str:
    return "pearson" if task == "regression" else "accuracy"


# ---- data ---------------------------------------------------------------------------------------------------
def load(dataset: str, model: str = MODELS[0]):
    """(model path, train, validation, test rows): fixed samples of the packaged corpora (seed 0); ``model`` is a
    packaged model's alias (MODELS)."""
    spec = DATASETS[dataset]
    if dataset == "quick":
        folder = Path(tempfile.gettempdir()) / "llmhead-tta-quick"
        model = str(folder) if (folder / "config.json").is_file() else make_tiny(folder)
        rows = sentiment_rows(4)
        return model, rows, sentiment_rows(2), sentiment_rows(2)
    from llmhead.data import corpora

    data = {"rt": corpora.rotten_tomatoes, "bbc": corpora.bbc_news, "vader": corpora.vader_tweets}[dataset]()
    train = data["train"].shuffle(seed=0).select(range(min(spec["n_train"], len(data["train"]))))
    val = data["validation"].shuffle(seed=0).select(range(min(spec["n_val"], len(data["validation"]))))
    test = data["test"].shuffle(seed=0).select(range(min(spec["n_test"], len(data["test"]))))
    return packaged_model_path(model), list(train), list(val), list(test)


class Curve:
    """The evaluations of one run: elapsed seconds since the clock started, the metric, and evaluation time so far."""

    def __init__(self):
        self.start = None
        self.points: list[dict] = []
        self.eval_seconds = 0.0

    def begin(self):
        self.start = time.perf_counter()

    def add(self, metric: float, examples: int | None, eval_seconds: float) -> None:
        self.eval_seconds += eval_seconds
        elapsed = time.perf_counter() - self.start
        self.points.append(
            {
                "elapsed_s": round(elapsed, 2),
                "elapsed_without_evals_s": round(elapsed - self.eval_seconds, 2),
                "metric": None if metric is None or math.isnan(metric) else float(metric),
                "examples": examples,
            }
        )


# ---- the peer -----------------------------------------------------------------------------------------------
def peer_run(dataset: str, mode: str, lr: float, threads: int, eval_examples: int, epochs: int, model: str) -> dict:
    import datasets
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainerCallback,
    )

    torch.set_num_threads(threads)
    spec = DATASETS[dataset]
    model_path, train, val, test = load(dataset, model)
    regression = spec["task"] == "regression"
    names = [] if regression else sorted({r[spec["label"]] for r in train})
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=1 if regression else len(names),
        **({"problem_type": "regression"} if regression else {}),
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    load_s = time.perf_counter() - start
    curve = Curve()
    curve.begin()

    def encode(rows):
        column = [r[spec["label"]] for r in rows]
        target = [float(v) for v in column] if regression else [names.index(v) for v in column]
        ds = datasets.Dataset.from_dict({"text": [r["text"] for r in rows], "label": target})
        return ds.map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=spec["max_length"]), batched=True
        ).remove_columns("text")

    train_ds, val_ds, test_ds = encode(train), encode(val), encode(test)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=LORA_TARGETS))
    elif mode == "head":
        for name, param in model.named_parameters():
            param.requires_grad = "score" in name

    def score(logits, labels) -> float:
        logits = logits[0] if isinstance(logits, tuple) else logits
        if regression:
            return float(np.corrcoef(logits.reshape(-1), labels.reshape(-1))[0, 1])
        return float((logits.argmax(-1) == labels).mean())

    clock = {"last_step": None}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            clock["at"] = time.perf_counter()  # an evaluation, if any, starts after this

        def on_epoch_end(self, args, state, control, **kw):
            # every epoch's end too, as llmhead (once: eval_steps may have landed on this step already)
            control.should_evaluate = control.should_evaluate or clock["last_step"] != state.global_step
            clock["at"] = time.perf_counter()

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if clock["last_step"] == state.global_step:
                return
            clock["last_step"] = state.global_step
            took = time.perf_counter() - clock.get("at", time.perf_counter())
            curve.add(metrics.get("eval_score"), state.global_step * PEER_BATCH, took)

    steps = None if mode == "head" else max(1, eval_examples // PEER_BATCH)
    steps_kw = dict(eval_strategy="steps", eval_steps=steps) if steps else {}
    args = peer_training_args(epochs, per_device_train_batch_size=PEER_BATCH, learning_rate=lr, **steps_kw)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: {"score": score(p.predictions, p.label_ids)},
        callbacks=[Clock()],
    )
    trainer.remove_callback(PrinterCallback)  # the evaluation dicts on stdout
    trainer.train()
    total = time.perf_counter() - curve.start
    predicted = trainer.predict(test_ds)
    return {
        "who": "peer",
        "lr": lr,
        "epochs": epochs,
        "load_seconds": round(load_s, 2),
        "total_seconds": round(total, 2),
        "eval_seconds": round(curve.eval_seconds, 2),
        "curve": curve.points,
        "test": score(predicted.predictions, predicted.label_ids),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


# ---- llmhead ------------------------------------------------------------------------------------------------
def ours_run(
    dataset: str, mode: str, threads: int, eval_examples: int, model: str = MODELS[0], options: dict | None = None
) -> dict:
    """llmhead with its defaults for ``mode`` (``options``: ModelConfig fields set instead, for head_features.py)."""
    import numpy as np
    import torch

    import llmhead

    torch.set_num_threads(threads)
    spec = DATASETS[dataset]
    model_path, train, val, test = load(dataset, model)
    metric = metric_name(spec["task"])
    start = time.perf_counter()
    clf = llmhead.from_pretrained(
        model_path, mode=mode, task=spec["task"], max_length=spec["max_length"], **(options or {})
    )
    _ = clf.model  # the weights load here, timed apart, as the peer's from_pretrained
    load_s = time.perf_counter() - start
    curve = Curve()

    def on_evaluate(record):  # llmhead's own validation records, with the pass's own time
        seen = record["step"] * per_step if "step" in record else record["epoch"] * len(train)
        curve.add(record.get(metric), seen, record["eval_seconds"])

    fit = {"label": spec["label"], "progress": False}
    per_step = ours_batch(mode)
    if mode != "head":
        fit["eval_every"] = max(1, eval_examples // per_step)
    curve.begin()
    clf.fit(train, val, on_evaluate=on_evaluate, **fit)
    total = time.perf_counter() - curve.start
    predicted = clf.predict([r["text"] for r in test])
    truth = [r[spec["label"]] for r in test]
    if spec["task"] == "regression":
        test_metric = float(np.corrcoef(np.asarray(predicted, dtype=float), np.asarray(truth, dtype=float))[0, 1])
    else:
        test_metric = float(np.mean([str(p) == str(t) for p, t in zip(predicted, truth)]))
    backbone = sum(p.numel() for p in clf.model.backbone.parameters() if p.requires_grad)
    return {
        "who": "llmhead",
        "lr": clf.train_config.lr,  # the head's; the backbone's is lr x backbone_lr_ratio
        "backbone_lr": clf.train_config.lr * clf.train_config.backbone_lr_ratio if mode != "head" else None,
        "epochs": clf.train_config.epochs,
        "load_seconds": round(load_s, 2),
        "total_seconds": round(total, 2),
        "eval_seconds": round(curve.eval_seconds, 2),
        "curve": curve.points,
        "test": test_metric,
        "trainable_params": sum(p.numel() for p in clf.model.head.parameters()) + backbone,
        "history_len": len(clf.history),
    }


def ours_batch(mode: str) -> int:
    """Training examples per optimizer step with llmhead's defaults for ``mode`` (its batch_size x grad_accum)."""
    from llmhead import TrainConfig
    from llmhead.config.train import for_mode

    cfg = for_mode(TrainConfig(), mode)
    return cfg.batch_size * cfg.grad_accum


# ---- the table ----------------------------------------------------------------------------------------------
def eval_every_examples(dataset: str, mode: str) -> int:
    """E: a multiple of both batch sizes, as large as leaves each epoch of llmhead's at least 8 evaluations (every
    k steps and one at the epoch's end), so that the longer peer runs are not evaluated more than needed."""
    per_step = ours_batch(mode)
    steps = math.ceil(DATASETS[dataset]["n_train"] / per_step)
    k = max([1] + [k for k in range(1, steps + 1) if steps // k + (steps % k != 0) >= 8])
    return k * per_step


def time_to(curve: list[dict], target: float, key: str = "elapsed_s") -> float | None:
    """The elapsed time of the first evaluation at or above the target (None: never reached)."""
    return next((p[key] for p in curve if p["metric"] is not None and p["metric"] >= target), None)


def best_by(curve: list[dict], seconds: float) -> float | None:
    """The best validation metric a run had reached by ``seconds``."""
    values = [p["metric"] for p in curve if p["elapsed_s"] <= seconds and p["metric"] is not None]
    return max(values) if values else None


def summarise(runs: list[dict], target: float) -> dict:
    for run in runs:
        run["time_to_target_s"] = time_to(run["curve"], target)
        run["time_to_target_without_evals_s"] = time_to(run["curve"], target, "elapsed_without_evals_s")
        run["best_val"] = max((p["metric"] for p in run["curve"] if p["metric"] is not None), default=None)
    ours = next(r for r in runs if r["who"] == "llmhead")
    peers = [r for r in runs if r["who"] == "peer"]
    reached = [r for r in peers if r["time_to_target_s"] is not None]
    best_peer = (
        min(reached, key=lambda r: r["time_to_target_s"])
        if reached
        else max(peers, key=lambda r: r["best_val"] if r["best_val"] is not None else -math.inf)
    )
    out = {"target": target, "llmhead": ours["time_to_target_s"], "best_peer_lr": best_peer["lr"]}
    out["peer"] = best_peer["time_to_target_s"]
    if ours["time_to_target_s"] and best_peer["time_to_target_s"]:
        out["speedup"] = round(best_peer["time_to_target_s"] / ours["time_to_target_s"], 2)
        out["speedup_without_evals"] = round(
            best_peer["time_to_target_without_evals_s"] / ours["time_to_target_without_evals_s"], 2
        )
    elif ours["time_to_target_s"]:  # the peer never reached it: at least its whole run's time over ours
        out["speedup_at_least"] = round(best_peer["total_seconds"] / ours["time_to_target_s"], 2)
    faster = min([ours, best_peer], key=lambda r: r["time_to_target_s"] or math.inf)
    slower = best_peer if faster is ours else ours
    if faster["time_to_target_s"] is not None:
        out["slower_side_best_val_when_faster_reached_target"] = best_by(slower["curve"], faster["time_to_target_s"])
    out["peak_rss_ratio"] = (  # against the best peer run (the grid's runs differ only in the learning rate)
        round(ours["peak_rss_mb"] / best_peer["peak_rss_mb"], 2)
        if ours.get("peak_rss_mb") and best_peer.get("peak_rss_mb")
        else None
    )
    return out


def plot(result: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for run in result["runs"]:
        xs = [p["elapsed_s"] for p in run["curve"] if p["metric"] is not None]
        ys = [p["metric"] for p in run["curve"] if p["metric"] is not None]
        label = "llmhead (defaults)" if run["who"] == "llmhead" else f"peer, lr {run['lr']:g}"
        style = dict(linewidth=2.5, color="C3") if run["who"] == "llmhead" else dict(linewidth=1.2, alpha=0.8)
        axes.plot(xs, ys, marker="o", markersize=3, label=label, **style)
    axes.axhline(result["target"], color="grey", linestyle="--", label=f"target {result['target']:.4f}")
    axes.set_xlabel("elapsed seconds (data to model; evaluations included)")
    axes.set_ylabel(f"validation {result['metric']}")
    model = result["setup"].get("model", "smollm2-135m")
    title = f"{result['dataset']}, {result['mode']}, {model}: validation {result['metric']} against time"
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=[d for d in DATASETS if d != "quick"], default="rt")
    parser.add_argument("--mode", choices=list(MODES), default="lora")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0], help="packaged weights (both sides)")
    parser.add_argument("--quick", action="store_true", help="tiny in-process model and toy rows, inline")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lrs", type=float, nargs="+", default=None, help="the peer's grid (default: per mode)")
    parser.add_argument(
        "--peer-epochs", type=int, default=None, help="the peer's epoch budget (default: per mode); shown in the JSON"
    )
    parser.add_argument(
        "--peer-from",
        default=None,
        help="take the peer's runs from an earlier JSON of this table (same setup: checked) instead of rerunning "
        "them, e.g. after a change to llmhead only; the JSON names the file",
    )
    parser.add_argument("--target", type=float, default=None, help="the validation target (default: tta-targets.json)")
    parser.add_argument("--out", default=None, help="the JSON (default results/tta-<dataset>-<mode>.json); PNG beside")
    args = parser.parse_args(argv)
    if args.peer_epochs is not None and args.peer_epochs < 1:
        parser.error(f"--peer-epochs must be a positive number of epochs, got {args.peer_epochs}")
    if args.quick and args.model != MODELS[0]:
        parser.error("--quick runs a tiny in-process model: it takes no --model")
    dataset = "quick" if args.quick else args.dataset
    lrs = args.lrs or (MODES[args.mode]["lrs"][-1:] if args.quick else MODES[args.mode]["lrs"])
    every = eval_every_examples(dataset, args.mode)
    epochs = args.peer_epochs or (2 if args.quick else MODES[args.mode]["epochs"])
    names = [dataset, args.mode] + ([args.model] if args.model != MODELS[0] else [])  # the default model unnamed
    out = Path(args.out) if args.out else RESULTS / f"tta-{'-'.join(names)}.json"
    spec = DATASETS[dataset]
    setup = {
        **machine(args.threads),
        "model": "tiny-llama" if args.quick else args.model,
        **{k: v for k, v in spec.items()},
        "peer_batch": PEER_BATCH,
        "peer_epochs": epochs,
        "llmhead_batch": ours_batch(args.mode),
        "eval_every_examples": every if args.mode != "head" else "each epoch",
        "command": "benchmarks/time_to_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    reused = reused_peer_runs(Path(args.peer_from), dataset, args.mode, setup, lrs) if args.peer_from else []
    runs = [isolated(ours_run, dataset, args.mode, args.threads, every, args.model, inline=args.quick)]
    print(f"llmhead: {runs[-1]['total_seconds']:.1f} s, best val {max_metric(runs[-1])}", flush=True)
    if reused:
        runs += reused
        taken = ", ".join(f"{r['lr']:g}" for r in reused)
        setup["peer_runs_from"] = f"{args.peer_from}: the peer's runs at {taken} from that table, not rerun here"
    for lr in [lr for lr in lrs if lr not in {r["lr"] for r in reused}]:  # the rest of the grid runs here
        peer = (dataset, args.mode, lr, args.threads, every, epochs, args.model)
        runs.append(isolated(peer_run, *peer, inline=args.quick))
        print(f"peer lr {lr:g}: {runs[-1]['total_seconds']:.1f} s, best val {max_metric(runs[-1])}", flush=True)
    key = "/".join(names)
    known = json.loads(TARGETS.read_text()) if TARGETS.is_file() else {}
    if args.target is not None:
        target, source = args.target, "--target"
    elif key in known and not args.quick:
        target, source = known[key]["target"], f"{TARGETS.name} ({known[key]['from']})"
    else:
        best = max(max_metric(r) for r in runs)
        target, source = round(TARGET_FRACTION * best, 4), "this run (0.98 x the best validation metric of either side)"
    result = {
        "setup": setup,
        "dataset": dataset,
        "mode": args.mode,
        "metric": metric_name(spec["task"]),
        "target": target,
        "target_source": source,
        "runs": runs,
    }
    result["summary"] = summarise(runs, target)
    print(format_table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    return result


# what must match for an earlier run of the peer to stand in for a new one (the peer's code is unchanged)
PEER_SETUP = ("model", "n_train", "n_val", "n_test", "max_length", "peer_batch", "peer_epochs", "eval_every_examples")


def reused_peer_runs(path: Path, dataset: str, mode: str, setup: dict, lrs: list[float]) -> list[dict]:
    """The peer's runs of an earlier JSON of the same table at the learning rates of ``lrs`` it has (the rest of
    the grid is run anew), refused (SystemExit, naming the difference) unless the data, the model, the peer's
    batch, epochs, evaluation points, threads and CPU are the same and it has at least one of them."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--peer-from {path}: cannot read it as JSON ({exc})") from exc
    theirs = old.get("setup", {})
    wanted = {"dataset": dataset, "mode": mode, **{k: setup[k] for k in PEER_SETUP}}
    wanted.update(threads=setup["threads"], cpu=setup["cpu"])
    peers = [r for r in old.get("runs", []) if r.get("who") == "peer" and r["lr"] in lrs]
    found = {"dataset": old.get("dataset"), "mode": old.get("mode"), **{k: theirs.get(k) for k in PEER_SETUP}}
    if found["peer_epochs"] is None and peers:  # a JSON from before the setup named it: each run says its own
        found["peer_epochs"] = peers[0]["epochs"] if len({r["epochs"] for r in peers}) == 1 else None
    found.update(threads=theirs.get("threads"), cpu=theirs.get("cpu"))
    differ = [f"{k}: {found[k]!r} there, {wanted[k]!r} here" for k in wanted if found[k] != wanted[k]]
    if not peers:
        differ.append(f"it has no peer run at {', '.join(f'{lr:g}' for lr in lrs)}")
    if differ:
        why = "; ".join(differ)
        raise SystemExit(f"--peer-from {path}: not the same table, so its peer runs cannot stand in: {why}")
    return [{**r, "reused_from": str(path)} for r in peers]


def max_metric(run: dict) -> float:
    return max((p["metric"] for p in run["curve"] if p["metric"] is not None), default=float("nan"))


def _s(value) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "not reached"


def _v(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def format_table(result: dict) -> str:
    s = result["summary"]
    lines = [
        f"{result['dataset']} / {result['mode']}: target validation {result['metric']} {s['target']:.4f} "
        f"({result['target_source']})",
        "| run | lr | epochs | load s | time to target s | without evals s | best val | total s | test | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['who']} | {r['lr']:g} | {r['epochs']} | {r['load_seconds']:.1f} | {_s(r['time_to_target_s'])} | "
            f"{_s(r['time_to_target_without_evals_s'])} | {_v(r['best_val'])} | {r['total_seconds']:.1f} | "
            f"{r['test']:.4f} | {r.get('peak_rss_mb') or '-'} |"
        )
    ratio = s.get("speedup") or (f">= {s['speedup_at_least']}" if s.get("speedup_at_least") else "-")
    lines.append(
        f"speed-up (best peer lr {s['best_peer_lr']:g} / llmhead, time to target): {ratio}"
        f" (without evaluations: {s.get('speedup_without_evals', '-')}); peak RSS ratio {s['peak_rss_ratio']}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""llmhead against the peer, side by side in one run: what a user writes today with transformers + peft +
Trainer, on the same model, data, batch size, epochs, max_length and precision.

    .venv/bin/python benchmarks/peer.py                 # packaged SmolLM2, Rotten Tomatoes (about 28 minutes)
    .venv/bin/python benchmarks/peer.py --quick         # tiny in-process model, toy data (a test runs it)

The peer: AutoModelForSequenceClassification (pad_token_id set); head-only = requires_grad off outside `score`;
LoRA = peft LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=[q,k,v,o]); full = all weights;
Trainer with DataCollatorWithPadding, per-device batch 16, bf16 where the CPU has it, default learning rate;
trainer.predict for inference. llmhead: the same model and LoRA shape, its defaults otherwise.

Each phase runs in its own spawned process so it reports its own peak RSS. Prints a table and one final JSON
line with the ratios (llmhead over peer); writes the JSON to --out.

The speed of identical work drifts by 10-25% over minutes on a shared machine, and the two sides of a row run
one after the other. So the LoRA, full and prediction rows run ``--repeats`` times per side in the order peer, llmhead,
llmhead, peer, ... (each pair mirrored, which cancels a steady drift), and report each side's median rate; every
run's numbers stay in the JSON under ``runs``. Peak RSS is the highest of a side's runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CORPUS,
    isolated,
    machine,
    make_tiny,
    peer_training_args,
    rotten_tomatoes,
    sentiment_rows,
    smollm2_path,
    tiny_config,
    tiny_tokenizer,
)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


# ---- data ---------------------------------------------------------------------------------------------------
def load_data(source: str, n_train: int, n_test: int):
    """(model path, train rows, test rows, validation rows) as lists of {"text", "label"}.

    source: "quick" (tiny random Llama, toy data), "random-smollm2" (SmolLM2-135M's shape with random
    weights and synthetic texts of 10-40 words: for throughput where the packaged files cannot travel, e.g.
    the GPU check) or "real" (the packaged SmolLM2 and Rotten Tomatoes)."""
    if source in ("quick", "random-smollm2"):
        folder = Path(tempfile.gettempdir()) / f"llmhead-peer-{source}-{os.getuid()}"
        if source == "quick":
            model = make_tiny(folder) if not (folder / "config.json").is_file() else str(folder)
            return model, sentiment_rows(4), sentiment_rows(2), sentiment_rows(1)
        if not (folder / "config.json").is_file():
            import torch
            from transformers import AutoModelForCausalLM

            config = tiny_config(49152, hidden=576)
            config.update(
                dict(num_hidden_layers=30, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3)
            )
            torch.manual_seed(0)
            AutoModelForCausalLM.from_config(config).save_pretrained(folder)
            tiny_tokenizer().save_pretrained(folder)
        import numpy as np

        rng = np.random.default_rng(0)
        words = " ".join(CORPUS).split()

        def rows(n):
            return [
                {
                    "text": " ".join(rng.choice(words, rng.integers(10, 41))),
                    "label": ["pos", "neg"][int(rng.integers(2))],
                }
                for _ in range(n)
            ]

        return str(folder), rows(n_train), rows(n_test), rows(200)
    data = rotten_tomatoes()
    train = data["train"].shuffle(seed=0).select(range(n_train))
    pool = [*data["test"], *data["validation"]]  # 973 + 487 snippets never used for training
    # llmhead validates every epoch for early stopping (its cost is counted in its training time): 100 snippets
    test, val = pool[:n_test], pool[n_test : n_test + 100]
    return smollm2_path(), list(train), test, val


def _threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _accuracy(predicted, rows) -> float:
    return sum(str(p) == str(r["label"]) for p, r in zip(predicted, rows)) / len(rows)


# ---- the peer -----------------------------------------------------------------------------------------------
def peer_phase(kind: str, source: str, n_train: int, n_test: int, epochs: int, threads: int, max_length: int) -> dict:
    _threads(threads)
    import datasets
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
    )

    model_path, train, test, _ = load_data(source, n_train, n_test)
    names = sorted({r["label"] for r in train})
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def encode(rows):
        ds = datasets.Dataset.from_dict(
            {"text": [r["text"] for r in rows], "label": [names.index(r["label"]) for r in rows]}
        )
        return ds.map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True
        ).remove_columns("text")

    train_ds, test_ds = encode(train), encode(test)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(names))
    model.config.pad_token_id = tokenizer.pad_token_id
    if kind == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=LORA_TARGETS))
    elif kind in ("head", "predict"):
        for name, param in model.named_parameters():
            param.requires_grad = "score" in name
    stamps: dict[int, float] = {}

    class EpochClock(TrainerCallback):  # the training time at the end of each epoch
        def on_epoch_end(self, args, state, control, **kw):
            stamps[round(state.epoch)] = time.perf_counter()

    args = peer_training_args(epochs)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[EpochClock()],
    )
    if kind == "predict":  # prediction alone; its speed does not depend on what the score head learnt
        start = time.perf_counter()
        trainer.predict(test_ds)
        return {"predict_examples_per_s": len(test) / (time.perf_counter() - start)}
    train_start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - train_start
    start = time.perf_counter()
    logits = trainer.predict(test_ds).predictions
    predict_s = time.perf_counter() - start
    logits = logits[0] if isinstance(logits, tuple) else logits
    result = {
        "train_seconds": train_s,
        "train_examples_per_s": epochs * len(train) / train_s,
        "predict_examples_per_s": len(test) / predict_s,
        "test_accuracy": _accuracy([names[i] for i in logits.argmax(-1)], test),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if epochs >= 10 and 5 in stamps:  # the same run's throughput over its first 5 epochs
        result["examples_per_s_first_5_epochs"] = 5 * len(train) / (stamps[5] - train_start)
    return result


# ---- llmhead ------------------------------------------------------------------------------------------------
def ours_phase(kind: str, source: str, n_train: int, n_test: int, epochs: int, threads: int, max_length: int) -> dict:
    _threads(threads)
    import llmhead

    model_path, train, test, val = load_data(source, n_train, n_test)
    options = {"mode": "head" if kind == "predict" else kind, "head_hidden": [], "max_length": max_length}
    if kind == "lora":
        options.update(lora_r=8, lora_alpha=16, lora_dropout=0.0, lora_targets=LORA_TARGETS)  # the peer's LoraConfig
    if kind == "full":
        options["freeze_blocks"] = 0  # every weight, as the peer's (llmhead's default freezes the bottom half)
    clf = llmhead.from_pretrained(model_path, **options)
    _ = clf.model  # the weights load here, outside the timing, as the peer's from_pretrained
    fit = {"epochs": epochs, "batch_size": 16, "progress": False}
    if kind == "head":
        fit["patience"] = 0  # run every epoch, as the peer does
    if kind == "predict":  # prediction alone: a head as initialised (its speed does not depend on training)
        clf.fit(train[:32], val[:16], epochs=0, batch_size=16, progress=False)
        start = time.perf_counter()
        clf.predict([r["text"] for r in test], batch_size=16)
        return {"predict_examples_per_s": len(test) / (time.perf_counter() - start)}
    start = time.perf_counter()
    clf.fit(train, val, **fit)
    train_s = time.perf_counter() - start
    texts = [r["text"] for r in test]
    start = time.perf_counter()
    predicted = clf.predict(texts, batch_size=16)
    predict_s = time.perf_counter() - start
    head = sum(p.numel() for p in clf.model.head.parameters())
    backbone = sum(p.numel() for p in clf.model.backbone.parameters() if p.requires_grad)
    return {
        "train_seconds": train_s,
        "train_examples_per_s": epochs * len(train) / train_s,
        "predict_examples_per_s": len(test) / predict_s,
        "test_accuracy": _accuracy(predicted, test),
        "trainable_params": head + backbone,
    }


def mirrored(shape: tuple, repeats: int, inline: bool) -> tuple[dict, dict]:
    """Each side ``repeats`` times, in the order peer, ours, ours, peer, peer, ours...: the medians of each side."""
    runs: dict[str, list[dict]] = {"peer": [], "llmhead": []}
    order = [("peer", "llmhead") if i % 2 == 0 else ("llmhead", "peer") for i in range(repeats)]
    for who in (w for pair in order for w in pair):
        runs[who].append(isolated(peer_phase if who == "peer" else ours_phase, *shape, inline=inline))
    return summarise(runs["peer"]), summarise(runs["llmhead"])


def summarise(runs: list[dict]) -> dict:
    """Median rates and accuracy over runs, the highest peak RSS, and every run as it was."""
    import statistics

    if len(runs) == 1:
        return runs[0]
    fixed = ("peak_rss_mb", "trainable_params")
    out = {
        k: statistics.median(r[k] for r in runs)
        for k, v in runs[0].items()
        if isinstance(v, (int, float)) and k not in fixed
    }
    peaks = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None]
    return {
        **out,
        "peak_rss_mb": max(peaks) if peaks else None,
        "trainable_params": runs[0].get("trainable_params"),
        "runs": runs,
    }


def baselines(source: str, n_train: int, n_test: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    _, train, test, _ = load_data(source, n_train, n_test)
    labels = [r["label"] for r in train]
    majority = max(set(labels), key=labels.count)
    vectorizer = TfidfVectorizer().fit([r["text"] for r in train])
    model = LogisticRegression(max_iter=2000).fit(vectorizer.transform([r["text"] for r in train]), labels)
    predicted = model.predict(vectorizer.transform([r["text"] for r in test]))
    return {
        "majority_accuracy": _accuracy([majority] * len(test), test),
        "tfidf_logreg_accuracy": _accuracy(predicted, test),
    }


# ---- the run ------------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny in-process model and toy data, in-process")
    parser.add_argument("--random-smollm2", action="store_true", help="SmolLM2's shape, random weights, toy texts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-full", type=int, default=200, help="training examples for the full fine-tuning row")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out: head5 head10 lora full predict")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs per side of the LoRA, full and prediction rows (default 2; 1 with --quick)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    inline = args.quick
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 2)
    if repeats < 1:
        parser.error(f"--repeats must be at least 1, got {repeats}")
    source = "quick" if args.quick else "random-smollm2" if args.random_smollm2 else "real"
    common = (source, args.n_train, args.n_test)
    result = {
        "setup": {
            **machine(args.threads),
            "n_train": args.n_train,
            "n_test": args.n_test,
            "n_full": args.n_full,
            "max_length": args.max_length,
            "batch_size": 16,
            "repeats_lora_full_predict": repeats,
            "model": {"quick": "tiny-llama", "random-smollm2": "SmolLM2-135M shape, random weights"}.get(
                source, "smollm2-135m (packaged, safetensors)"
            ),
        }
    }
    result["baselines"] = baselines(*common)
    rows = []
    plan = [
        ("head, 5 epochs", "head", args.n_train, 5, "head5"),
        ("head, 10 epochs", "head", args.n_train, 10, "head10"),
        ("LoRA r=8 qkvo, 1 epoch", "lora", args.n_train, 1, "lora"),
        (f"full, {args.n_full} examples, 1 epoch", "full", args.n_full, 1, "full"),
        ("prediction alone, head model", "predict", args.n_train, 0, "predict"),
    ]
    peer_head10 = None
    for label, kind, n, epochs, key in plan:
        if key in args.skip:
            continue
        shape = (kind, source, n, args.n_test, epochs, args.threads, args.max_length)
        if key in ("lora", "full", "predict"):
            peer, ours = mirrored(shape, repeats, inline)
        elif key == "head5" and "head10" not in args.skip:
            peer = None  # the 10-epoch peer run below also times its first 5 epochs
            ours = isolated(ours_phase, *shape, inline=inline)
        else:
            peer = isolated(peer_phase, *shape, inline=inline)
            ours = isolated(ours_phase, *shape, inline=inline)
        if key == "head10":
            peer_head10 = peer
        rows.append({"row": label, "key": key, "epochs": epochs, "n_train": n, "peer": peer, "llmhead": ours})
    for row in rows:  # fill the peer's 5-epoch throughput from its 10-epoch run
        if row["key"] == "head5" and row["peer"] is None and peer_head10 is not None:
            row["peer"] = {
                "train_examples_per_s": peer_head10.get("examples_per_s_first_5_epochs"),
                "note": "first 5 epochs of the peer's 10-epoch run (same per-epoch work)",
                "peak_rss_mb": peer_head10["peak_rss_mb"],
            }
    result["rows"] = rows
    ratios = {}
    for row in rows:
        p, o = row["peer"], row["llmhead"]
        if row["key"] == "predict" and p and o:
            ratios["predict_speedup"] = round(o["predict_examples_per_s"] / p["predict_examples_per_s"], 2)
            continue
        if not p or not p.get("train_examples_per_s"):
            continue
        ratios[f"{row['key']}_train_speedup"] = round(o["train_examples_per_s"] / p["train_examples_per_s"], 2)
        if p.get("predict_examples_per_s"):
            ratios[f"{row['key']}_predict_speedup"] = round(
                o["predict_examples_per_s"] / p["predict_examples_per_s"], 2
            )
        if p.get("test_accuracy") is not None:
            ratios[f"{row['key']}_accuracy_delta"] = round(o["test_accuracy"] - p["test_accuracy"], 4)
        if p.get("peak_rss_mb") and o.get("peak_rss_mb"):
            ratios[f"{row['key']}_memory_ratio"] = round(o["peak_rss_mb"] / p["peak_rss_mb"], 2)
    result["ratios"] = ratios
    print_table(result)
    print(json.dumps({"ratios": ratios}))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _fmt(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def print_table(result: dict) -> None:
    b = result["baselines"]
    print(
        f"\nbaselines: majority {b['majority_accuracy']:.4f}, "
        f"TF-IDF + logistic regression {b['tfidf_logreg_accuracy']:.4f}"
    )
    print(
        f"{'row':<32} {'who':<8} {'train ex/s':>10} {'predict ex/s':>12} {'test acc':>8} "
        f"{'peak RSS MB':>11} {'trainable':>11}"
    )
    for row in result["rows"]:
        for who in ("peer", "llmhead"):
            r = row[who] or {}
            print(
                f"{row['row']:<32} {who:<8} {_fmt(r.get('train_examples_per_s'), '10.1f')} "
                f"{_fmt(r.get('predict_examples_per_s'), '12.1f')} {_fmt(r.get('test_accuracy'), '8.4f')} "
                f"{_fmt(r.get('peak_rss_mb'), '11.0f')} {_fmt(r.get('trainable_params'), '11,')}"
            )


if __name__ == "__main__":
    main()

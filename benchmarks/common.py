"""Helpers shared by the benchmark scripts: isolated phases (so each reports its own peak memory),
timing, a description of the machine and versions for the results JSON, the packaged real data, and the tiny
random models and toy rows of the ``--quick`` smoke runs (benchmarks never import the test suite's fixtures)."""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import time


def timed(fn, repeats: int = 1) -> float:
    """Best of ``repeats`` wall times: the least disturbed by other work on a shared machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB). On Linux, ``VmHWM`` of /proc/self/status: ``ru_maxrss`` of a
    spawned child also counts its parent's high-water mark (Linux keeps the largest RSS across fork and exec), so a
    phase spawned from a parent that had loaded a model would report the parent's peak instead of its own."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB, macOS: bytes


def rss_mb() -> float | None:
    """This process's resident memory now (MB; ``VmRSS``), or None where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            return next(round(int(line.split()[1]) / 1024, 1) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def _child(fn, args, queue):
    try:
        result = fn(*args)
        result["peak_rss_mb"] = peak_rss_mb()
        queue.put(("ok", result))
    except BaseException as exc:  # report, do not hang the parent
        import traceback

        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def isolated(fn, *args, inline: bool = False) -> dict:
    """Run ``fn(*args)`` in a fresh spawned process and return its dict plus that process's peak RSS, so
    phases of one benchmark run do not share (or inherit) each other's memory high-water mark."""
    if inline:
        return {**fn(*args), "peak_rss_mb": None}
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(fn, args, queue))
    process.start()
    status, payload = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"benchmark phase {getattr(fn, '__name__', fn)} failed:\n{payload}")
    return payload


def machine(threads: int) -> dict:
    import accelerate
    import peft
    import torch
    import transformers

    import llmhead
    from llmhead.model.precision import resolve_dtype

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus_visible": os.cpu_count(),
        "threads": threads,
        "bf16_native": resolve_dtype("auto") == "bfloat16",
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {
            "llmhead": llmhead.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "accelerate": accelerate.__version__,
        },
    }


# ---- data ---------------------------------------------------------------------------------------------------
def rotten_tomatoes():
    """The Rotten Tomatoes critic snippets packaged with llmhead (train / validation / test ``DatasetDict``)."""
    try:
        from llmhead.data import corpora
    except ImportError:  # the package's layout before llmhead/data/
        from llmhead import corpora
    return corpora.rotten_tomatoes()


def smollm2_path() -> str:
    """The local transformers folder of the packaged SmolLM2-135M (converted from its GGUF once, then cached)."""
    return packaged_model_path("smollm2-135m")


def packaged_model_path(alias: str) -> str:
    """The local transformers folder of a packaged model (``smollm2-135m``, ``gemma3-270m``): converted from its GGUF
    once, then cached."""
    import llmhead

    return llmhead.from_pretrained(alias).source.pretrained_path()


# ---- tiny random models and toy rows for --quick runs ---------------------------------------------------------
CORPUS = [
    "the film was wonderful and moving",
    "a dull boring mess of a movie",
    "great acting and a clever script",
    "terrible pacing and awful dialogue",
    "i loved every minute of it",
    "i hated the ending and the music",
    "a joyful bright funny story",
    "a sad slow grim tale",
]


def sentiment_rows(n_repeat: int = 2) -> list[dict]:
    """Hand-written toy rows: label 'pos' or 'neg'."""
    labels = ["pos", "neg"] * 4
    return [{"text": t, "label": y} for _ in range(n_repeat) for t, y in zip(CORPUS, labels)]


def tiny_tokenizer():
    """A byte-level BPE tokenizer (300 tokens) trained on :data:`CORPUS`, right padding, with a pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<eos>", "<pad>"]))
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<pad>", padding_side="right"
    )


def tiny_config(vocab: int, hidden: int = 32):
    """A 2-block Llama config (4 heads, 2 key/value heads)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=1,
    )


def make_tiny(folder) -> str:
    """Save a random 2-block Llama causal LM (float32 safetensors, with its LM head) and :func:`tiny_tokenizer` to
    ``folder``; returns the folder, which ``llmhead.from_pretrained`` loads as any local model."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


# ---- the peer's Trainer settings ------------------------------------------------------------------------------
def peer_training_args(epochs: int, **overrides):
    """The peer's ``TrainingArguments`` as a user writes them: batch 16, bf16 where the CPU has it (or on CUDA), no
    saving, logging or tqdm, seed 0; ``overrides`` (learning rate, evaluation) on top."""
    import tempfile

    import torch
    from transformers import TrainingArguments

    from llmhead.model.precision import resolve_dtype

    settings = dict(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        num_train_epochs=epochs,
        bf16=resolve_dtype("auto") == "bfloat16" or torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    return TrainingArguments(**{**settings, **overrides})

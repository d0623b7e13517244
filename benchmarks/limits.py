"""Distance to the limit and scaling, in one run: achieved FLOP/s of llmhead's forward pass and LoRA training
step against a matmul peak measured in the same run (same precision, same threads), then how time and memory
grow with sequence length, `layer`, and the number of training examples.

    .venv/bin/python benchmarks/limits.py            # packaged SmolLM2 (about 6 minutes)
    .venv/bin/python benchmarks/limits.py --quick    # tiny in-process model (a test runs it)

FLOPs are counted, not profiled: a forward pass costs 2 * (non-embedding parameters) per token plus causal
attention, 2 * layers * T * hidden per token (PaLM's count), less the top block's MLP on every position but
the pooled one, which llmhead does not run. A LoRA step costs about twice the forward: the
backward pass computes the inputs' gradients through every frozen matrix (as much work as the forward) and
weight gradients only for the adapters (negligible). Each scaling row runs in its own process (peak RSS).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import isolated, machine  # noqa: E402


def _setup(threads: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)


def _model_path(quick: bool) -> str:
    if quick:
        from peer import load_data

        return load_data("quick", 0, 0)[0]
    from common import smollm2_path

    return smollm2_path()


def matmul_peak(threads: int, quick: bool) -> dict:
    """The best bf16 (or float32 without native bf16) matmul rate over shapes like the model's."""
    _setup(threads)
    import torch

    from llmhead.model.precision import resolve_dtype, torch_dtype

    dtype = torch_dtype(resolve_dtype("auto"))
    shapes = (
        [(256, 256, 256)] if quick else [(2048, 576, 1536), (2048, 1536, 576), (2048, 2048, 2048), (1024, 4096, 1024)]
    )
    best = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            a @ b
        reps = 3 if quick else 10
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        rate = 2 * m * k * n * reps / (time.perf_counter() - start)
        if rate > best.get("flops", 0):
            best = {"flops": rate, "shape": [m, k, n]}
    return {"peak_flops": best["flops"], "peak_shape": best["shape"], "dtype": str(dtype)}


def _forward_flops(config, batch: int, seq: int) -> float:
    """FLOPs the forward executes (every block's matrices on every token, plus attention's scores and values)."""
    layers = config.num_hidden_layers
    h, inter = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_block = h * h * 2 + 2 * h * kv + 3 * h * inter  # q, o, k, v, gate/up/down matrices
    tokens = batch * seq
    total = 2 * layers * per_block * tokens + 2 * layers * seq * h * tokens
    return total


def forward_and_step(
    threads: int, quick: bool, batch: int, seq: int, layer: int | None, lora_step: bool, profile: bool = False
) -> dict:
    """Achieved FLOP/s of llmhead's forward (features) and, optionally, of a LoRA training step."""
    _setup(threads)
    import torch

    import llmhead
    from llmhead.features.extract import autocast
    from llmhead.model.precision import resolve_dtype, torch_dtype
    from llmhead.strategies import for_config

    dtype = torch_dtype(resolve_dtype("auto"))
    # all the blocks unless a layer is asked for, as the committed limits.json was measured
    whole = -1 if layer is None else layer
    clf = llmhead.from_pretrained(_model_path(quick), layer=whole, pooling="last", head_hidden=[])
    model = clf.model
    backbone = model.backbone
    config = backbone.config
    ids = torch.randint(10, config.vocab_size - 10, (batch, seq))
    mask = torch.ones_like(ids)
    flops = _forward_flops(config, batch, seq)
    reps = 2 if quick else 4
    with torch.inference_mode():
        for _ in range(2):
            with autocast(ids.device, dtype):
                model.features(ids, mask)
        start = time.perf_counter()
        for _ in range(reps):
            with autocast(ids.device, dtype):
                model.features(ids, mask)
        forward_s = (time.perf_counter() - start) / reps
    result = {
        "batch": batch,
        "seq": seq,
        "blocks": config.num_hidden_layers,
        "forward_seconds": forward_s,
        "forward_flops_per_s": flops / forward_s,
        "forward_examples_per_s": batch / forward_s,
    }
    if lora_step:
        from llmhead.config import ModelConfig

        lora = ModelConfig(mode="lora", lora_r=8, lora_alpha=16, lora_targets=["q_proj", "k_proj", "v_proj", "o_proj"])
        # as mode="lora" trains: the base in the compute dtype (bf16 here), float32 adapters, autocast
        backbone = for_config(lora).adapt(backbone)
        model.backbone = backbone
        model.head = torch.nn.Linear(config.hidden_size, 2)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        targets = torch.randint(0, 2, (batch,))

        def step():
            with autocast(ids.device, dtype):
                pooled = model.features(ids, mask)[:, 0]
                loss = torch.nn.functional.cross_entropy(model.head(pooled.float()), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        model.train()
        for _ in range(2):
            step()
        start = time.perf_counter()
        for _ in range(reps):
            step()
        step_s = (time.perf_counter() - start) / reps
        if profile:  # where one step's time goes, by operator (self time)
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
            result["lora_step_profile"] = [
                {
                    "op": e.key,
                    "self_ms": round(e.self_cpu_time_total / 1e3, 1),
                    "share": round(e.self_cpu_time_total / total, 3),
                }
                for e in top
            ]
        result.update(
            lora_step_seconds=step_s,
            lora_step_flops_per_s=2 * flops / step_s,
            lora_step_examples_per_s=batch / step_s,
        )
    return result


def head_fit(threads: int, quick: bool, n: int) -> dict:
    """Head-only fit (features + 20 head epochs) on ``n`` Rotten Tomatoes snippets."""
    _setup(threads)
    import llmhead

    if quick:
        from peer import load_data

        rows = (load_data("quick", 0, 0)[1] * 8)[:n]
    else:
        from common import rotten_tomatoes

        rows = list(rotten_tomatoes()["train"].select(range(n)))
    # the last token of all the blocks, as the committed limits.json was measured
    clf = llmhead.from_pretrained(_model_path(quick), max_length=128, pooling="last", layer=-1)
    _ = clf.model  # the weights load here, outside the timing
    start = time.perf_counter()
    clf.fit(rows, epochs=20, patience=0, progress=False)
    return {"n": n, "fit_seconds": time.perf_counter() - start}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--profile", action="store_true", help="also print where a LoRA step's time goes")
    args = parser.parse_args(argv)
    q, t = args.quick, args.threads
    inline = q
    result = {"setup": machine(t)}
    peak = isolated(matmul_peak, t, q, inline=inline)
    result["matmul_peak"] = peak
    main_row = isolated(forward_and_step, t, q, 16, 128 if not q else 16, None, True, args.profile, inline=inline)
    main_row["forward_fraction_of_peak"] = main_row["forward_flops_per_s"] / peak["peak_flops"]
    main_row["lora_step_fraction_of_peak"] = main_row["lora_step_flops_per_s"] / peak["peak_flops"]
    result["at_16x128"] = main_row
    seqs = [8, 16] if q else [32, 64, 128, 256, 512]
    result["by_seq"] = [isolated(forward_and_step, t, q, 16, s, None, False, inline=inline) for s in seqs]
    layers = [1, 2] if q else [6, 12, 18, 24, 30]
    result["by_layer"] = [
        isolated(forward_and_step, t, q, 16, 128 if not q else 16, k, False, inline=inline) for k in layers
    ]
    sizes = [16, 32] if q else [250, 500, 1000, 2000]
    result["by_examples"] = [isolated(head_fit, t, q, n, inline=inline) for n in sizes]
    for rows in (result["by_seq"], result["by_layer"]):
        for r in rows:
            r["forward_fraction_of_peak"] = r["forward_flops_per_s"] / peak["peak_flops"]

    print(
        f"\nmatmul peak {peak['peak_flops'] / 1e9:.1f} GFLOP/s ({peak['dtype']}, {t} threads, "
        f"shape {peak['peak_shape']})"
    )
    m = main_row
    print(
        f"batch 16 x {m['seq']}: forward {m['forward_flops_per_s'] / 1e9:.1f} GFLOP/s = "
        f"{m['forward_fraction_of_peak']:.0%} of peak; LoRA step {m['lora_step_flops_per_s'] / 1e9:.1f} GFLOP/s = "
        f"{m['lora_step_fraction_of_peak']:.0%}"
    )
    print(f"\n{'seq':>5} {'fwd ex/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'peak RSS MB':>12}")
    for r in result["by_seq"]:
        print(
            f"{r['seq']:>5} {r['forward_examples_per_s']:>9.1f} {r['forward_flops_per_s'] / 1e9:>8.1f} "
            f"{r['forward_fraction_of_peak']:>8.0%} {r['peak_rss_mb'] or 0:>12.0f}"
        )
    print(f"\n{'blocks':>6} {'fwd ex/s':>9} {'of peak':>8} {'peak RSS MB':>12}")
    for r in result["by_layer"]:
        print(
            f"{r['blocks']:>6} {r['forward_examples_per_s']:>9.1f} {r['forward_fraction_of_peak']:>8.0%} "
            f"{r['peak_rss_mb'] or 0:>12.0f}"
        )
    print(f"\n{'examples':>8} {'head fit s':>10} {'peak RSS MB':>12}")
    for r in result["by_examples"]:
        print(f"{r['n']:>8} {r['fit_seconds']:>10.1f} {r['peak_rss_mb'] or 0:>12.0f}")
    for op in m.get("lora_step_profile", []):
        print(f"  {op['op']:<40} {op['self_ms']:>9.1f} ms {op['share']:>6.1%}")
    summary = {
        "forward_fraction_of_peak": round(m["forward_fraction_of_peak"], 3),
        "lora_step_fraction_of_peak": round(m["lora_step_fraction_of_peak"], 3),
    }
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

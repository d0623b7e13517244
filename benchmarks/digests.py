"""What the trust checks cost: the base-weights fingerprint (a SHA-256 of every value of a module's tensors) and
the file digests a save records and a load checks, in seconds per GiB, on 1 GiB of float32 tensors.

    python benchmarks/digests.py [--gib 1.0] [--repeats 3] [--out benchmarks/results/digests.json]
    python benchmarks/digests.py --quick   # a smoke test: 64 MiB, one repeat
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, timed  # noqa: E402

from llmhead.io.save import file_digest  # noqa: E402
from llmhead.model.backbone import fingerprint  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/digests.json")
    args = parser.parse_args(argv)
    gib, repeats = (1 / 16, 1) if args.quick else (args.gib, args.repeats)
    rows = max(1, round(gib * 16))  # tensors of 64 MiB, as a model's large projections are
    module = torch.nn.Module()
    for i in range(rows):
        module.register_buffer(f"w{i}", torch.randn(16, 1024, 1024))
    size_gib = rows / 16
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.safetensors"
        save_file(dict(module.named_buffers()), str(path))
        file_digest(path)  # the file in the page cache, as right after a save
        file_s = timed(lambda: file_digest(path), repeats)
    fingerprint_s = timed(lambda: fingerprint(module), repeats)
    result = {
        "gib": size_gib,
        "fingerprint_s_per_gib": round(fingerprint_s / size_gib, 3),
        "file_digest_s_per_gib": round(file_s / size_gib, 3),
        "machine": machine(torch.get_num_threads()),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}))
    if not args.quick:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

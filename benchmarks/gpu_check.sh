#!/usr/bin/env bash
# The prepared GPU check (about 10 minutes on one GPU). On a CUDA machine, from the repository root:
#
#     bash benchmarks/gpu_check.sh            # results in $OUT if set (the device tool), else benchmarks/results/gpu/
#
# 1. the CUDA-only tests (tests/test_gpu.py): QLoRA through bitsandbytes on CUDA, bf16/fp16 mixed precision,
#    an FSDP save/load round trip of LoRA + head through `accelerate launch`;
# 2. the peer comparison (benchmarks/peer.py) on a SmolLM2-135M-shaped model with random weights (throughput
#    does not depend on the values; the packaged GGUF is too large to travel), toy texts, max_length 128.
# Missing Python packages can be provided as wheels in .whl/ (installed to /tmp/site, no network needed).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:-benchmarks/results/gpu}"
mkdir -p "$RESULTS"
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
$PY - <<'PY' | tee "$RESULTS/environment.json"
import json, torch, transformers, peft, accelerate
try:
    import bitsandbytes; bnb = bitsandbytes.__version__
except Exception as exc:
    bnb = f"missing: {exc}"
print(json.dumps({"cuda": torch.cuda.is_available(), "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                  "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                  "accelerate": accelerate.__version__, "bitsandbytes": bnb}))
PY
timeout 360 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py --junitxml "$RESULTS/gpu_tests.xml" 2>&1 | tail -40 | tee "$RESULTS/gpu_tests.log"
tests=$?
timeout 300 $PY benchmarks/peer.py --random-smollm2 --n-train 2000 --n-test 2000 --repeats 1 --out "$RESULTS/peer_gpu.json" 2>&1 | tail -20
bench=$?
echo "{\"tests_exit\": $tests, \"peer_exit\": $bench}" | tee "$RESULTS/summary.json"

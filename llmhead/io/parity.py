"""A parity check users can run: the same texts must give the same logits however they are fed.

report = llmhead.check(clf)        # raises nothing; report["passed"] says whether all checks held
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from llmhead.io.export import templated_inputs, why_not_exportable
from llmhead.io.load import load
from llmhead.model.precision import resolve_dtype

SAMPLE = [
    "Short.",
    "A somewhat longer sentence, so that padding is needed for the short ones in the same batch.",
    "Medium length text here.",
    "One more, with numbers 12345 and symbols: (!?) - to vary the tokens.",
]
# Stated tolerances on max |logit difference|: float32 math is reordered by batching (tiny
# differences); bf16 rounds activations to 8 bits of mantissa.
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2}


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def check(clf, texts: list[str] | None = None, tolerance: float | None = None) -> dict:
    """Max |logit difference| for: left vs right padding, one at a time vs batched, save -> load,
    merge, and export -> AutoModelForSequenceClassification (when the head exports)."""
    texts = list(texts or SAMPLE)
    tol = tolerance if tolerance is not None else TOLERANCE[resolve_dtype(clf.config.dtype)]
    tokenizer = clf.tokenizer
    side = tokenizer.padding_side
    results: dict[str, float | str] = {}
    try:
        tokenizer.padding_side = "left"
        left = clf.logits(texts)
        tokenizer.padding_side = "right"
        right = clf.logits(texts)
    finally:
        tokenizer.padding_side = side
    reference = clf.logits(texts)
    results["left_vs_right_padding"] = _diff(left, right)
    results["one_at_a_time_vs_batched"] = _diff(torch.cat([clf.logits([t]) for t in texts]), reference)
    with tempfile.TemporaryDirectory() as tmp:
        clf.save(Path(tmp) / "saved")
        copy = load(Path(tmp) / "saved")  # merge and export act on a copy: clf stays as it was
        results["save_load"] = _diff(copy.logits(texts), reference)
        try:
            results["merge"] = _diff(copy.merge().logits(texts), reference)
        except ValueError as exc:  # QLoRA: merging into 4-bit weights would re-quantize them
            results["merge"] = f"skipped: {exc}"
        reason = why_not_exportable(clf)
        if reason is None:
            results["export_transformers"] = _diff(
                _exported_logits(clf.export(Path(tmp) / "exported"), texts), reference
            )
        else:
            results["export_transformers"] = "skipped: " + reason
    numbers = [v for v in results.values() if isinstance(v, float)]
    return {"tolerance": tol, "checks": results, "passed": all(v <= tol for v in numbers)}


@torch.inference_mode()
def _exported_logits(folder: Path, texts: list[str]) -> torch.Tensor:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    texts = templated_inputs(folder, texts)  # like with like: the inputs the classifier's head was trained on
    # transformers finds the last non-pad token from pad_token_id: one text at a time avoids its
    # pad == eos ambiguity, which is the peer's limitation and not what this check measures.
    return torch.cat([model(**tokenizer([t], return_tensors="pt", truncation=True)).logits for t in texts])

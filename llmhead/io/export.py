"""Export a classifier as a plain transformers ``*ForSequenceClassification`` folder, which
``AutoModelForSequenceClassification`` loads and serving engines for such models (vLLM, TGI) serve.

transformers' sequence-classification models apply a bias-free linear ``score`` to the final hidden
state of the last non-pad token. A head exports exactly when it is that: linear, no bias, last-token
pooling of one layer's final-norm output, and an input normalization that is a pure per-feature scale
(folded into ``score``).

What the classifier did to a text before its model saw it travels with the export: ``config.json`` holds
``llmhead_inputs`` (the ``template``, the text-pair separator and ``max_length``; transformers keeps unknown config
keys), the exported tokenizer's ``model_max_length`` is ``max_length``, and ``llmhead.templated_inputs(folder,
texts)`` turns raw texts (or text pairs) into what the exported model expects. A serving engine's client applies
it before sending, and truncates at the tokenizer's maximum length, as transformers' pipelines do.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llmhead.progress import say

INPUTS_KEY = "llmhead_inputs"  # in the exported config.json: how a raw text becomes the model's input
PROBLEM_TYPES = {
    "classification": "single_label_classification",
    "multilabel": "multi_label_classification",
}


def why_not_exportable(clf) -> str | None:
    """None when ``clf`` exports exactly; otherwise the reason and what to do instead."""
    c = clf.config
    reasons = []
    if c.task not in PROBLEM_TYPES:
        reasons.append("regression targets are standardized, and undoing that needs a bias the score layer lacks")
    if c.head_hidden:
        reasons.append(f"the head has hidden layers {c.head_hidden} (needs head_hidden=[])")
    if c.head_bias:
        reasons.append("the head has a bias (needs head_bias=False)")
    if c.input_norm not in ("scale", "none"):
        reasons.append(f"input_norm={c.input_norm!r} shifts or learns the input (needs 'scale' or 'none')")
    if c.pooling != "last":
        reasons.append(f"pooling={c.pooling!r} (transformers pools the last token only)")
    if c.layers is not None:
        reasons.append("multi-layer features (layers=...) (use layer=k instead)")
    if c.long_inputs == "chunk":
        reasons.append("long_inputs='chunk' (transformers truncates)")
    if not reasons:
        return None
    return (
        "this classifier cannot be exported as a transformers *ForSequenceClassification model: "
        + "; ".join(reasons)
        + ". Build it with head_hidden=[], head_bias=False, input_norm='scale', pooling='last' to export, "
        "or keep using clf.save() + llmhead.load(), which keeps any head."
    )


def export_transformers(clf, folder: str | Path) -> Path:
    from transformers import AutoModelForSequenceClassification

    reason = why_not_exportable(clf)
    if reason:
        raise ValueError(reason)
    backbone = clf.model.backbone
    if hasattr(backbone, "merge_and_unload"):  # LoRA adapters: fold them into a copy of the weights
        if any(type(p).__name__ == "Params4bit" for p in backbone.parameters()):  # bitsandbytes 4-bit
            raise ValueError(
                "a QLoRA model cannot be exported exactly: its base weights are 4-bit; train with "
                "mode='lora' to export, or keep clf.save()"
            )
        import copy

        backbone = copy.deepcopy(backbone).merge_and_unload()
    head = clf.model.head
    linear = head.mlp[-1]
    weight = (linear.weight / head.scale[0]).detach().float()  # fold x / scale into score: (C, H)

    config = backbone.config.__class__.from_dict(backbone.config.to_dict())
    names = [str(n) for n in clf.labels.names]
    config.num_labels = len(names)
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}
    config.problem_type = PROBLEM_TYPES[clf.config.task]
    config.pad_token_id = clf.tokenizer.pad_token_id
    config.dtype = "float32"
    c = clf.config
    setattr(
        config, INPUTS_KEY, {"template": c.template, "pair_separator": c.pair_separator, "max_length": c.max_length}
    )
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    missing, unexpected = model.base_model.load_state_dict(
        {k: v.float() for k, v in backbone.state_dict().items()}, strict=False
    )
    if missing or unexpected:
        raise RuntimeError(
            f"backbone weights do not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}"
        )
    score = getattr(model, "score", None)
    if score is None or score.weight.shape != weight.shape:
        raise ValueError(f"{type(model).__name__} has no score layer of shape {tuple(weight.shape)}")
    with torch.no_grad():
        score.weight.copy_(weight)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    clf.tokenizer.save_pretrained(folder)
    settings = folder / "tokenizer_config.json"  # the classifier cut inputs at max_length: so does the export
    tokenizer_config = json.loads(settings.read_text())
    tokenizer_config["model_max_length"] = c.max_length
    settings.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    if c.template != "{text}":
        say(
            f"exported with template {c.template!r}: put each text into it before sending it to the exported model "
            "(llmhead.templated_inputs(folder, texts) does; config.json holds it as llmhead_inputs)"
        )
    return folder


def templated_inputs(folder: str | Path, texts: list) -> list[str]:
    """``texts`` (strings, or (first, second) pairs) as the exported model in ``folder`` expects them: each put
    into the template it was trained with, a pair joined by its separator first."""
    config = json.loads((Path(folder) / "config.json").read_text())
    inputs = config.get(INPUTS_KEY) or {"template": "{text}", "pair_separator": "\n"}
    joined = [t if isinstance(t, str) else inputs["pair_separator"].join(t) for t in texts]
    return [inputs["template"].replace("{text}", t) for t in joined]

"""Export a classifier as a plain transformers ``*ForSequenceClassification`` folder, which
``AutoModelForSequenceClassification`` loads and serving engines for such models (vLLM, TGI) serve.

transformers' sequence-classification models apply a bias-free linear ``score`` to the final hidden
state of the last non-pad token. A head exports exactly when it is that: linear, no bias, last-token
pooling of one layer's final-norm output, and an input normalization that is a pure per-feature scale
(folded into ``score``).

A classifier trained with a ``template`` saw each text inside it; the exported model must too. The template is
written into ``config.json`` as ``llmhead_template`` (transformers keeps unknown config keys), and
``templated_inputs(folder, texts)`` applies it: a serving engine's client puts each text into it before sending.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEMPLATE_KEY = "llmhead_template"  # in the exported config.json: the input template the head was trained on
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
    if clf.config.template != "{text}":  # what a serving client must apply to reproduce the classifier's inputs
        setattr(config, TEMPLATE_KEY, clf.config.template)
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
    return folder


def templated_inputs(folder: str | Path, texts: list[str]) -> list[str]:
    """``texts`` as the exported model in ``folder`` expects them: put into the template it was trained with (as
    is when it had none)."""
    import json

    template = json.loads((Path(folder) / "config.json").read_text()).get(TEMPLATE_KEY) or "{text}"
    return [template.replace("{text}", t) for t in texts]

"""Loading a float32 checkpoint into bfloat16 by casting the mapped file tensor by tensor (llmhead/mapped.py):
the same model as transformers' own bfloat16 load, the file's pages returned, their contents intact."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny

from llmhead.model.backbone import Source, load_backbone
from llmhead.speedups import mapped

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


def tensors(model):
    return [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]


@pytest.mark.parametrize("keep_blocks", [None, 1])
def test_equals_transformers_bf16_load(tiny_model, keep_blocks):
    from transformers import AutoConfig, AutoModel

    assert mapped.stored_dtype(tiny_model) == torch.float32
    ours = load_backbone(Source(tiny_model, "pretrained"), "bfloat16", keep_blocks=keep_blocks)
    config = AutoConfig.from_pretrained(tiny_model)
    if keep_blocks:
        config.num_hidden_layers = keep_blocks
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:keep_blocks]
    theirs = AutoModel.from_pretrained(tiny_model, config=config, dtype=torch.bfloat16).eval()
    assert [n for n, _ in tensors(ours)] == [n for n, _ in tensors(theirs)]
    for (name, a), (_, b) in zip(tensors(ours), tensors(theirs)):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert ours.config.dtype == theirs.config.dtype == torch.bfloat16
    ids = torch.tensor([[5, 9, 14, 3, 22], [7, 7, 30, 2, 11]])
    with torch.inference_mode():
        assert torch.equal(ours(ids).last_hidden_state, theirs(ids).last_hidden_state)


def test_causal_lm_equals_transformers_bf16_load_and_keeps_ties(tiny_model):
    """The ICL path loads the causal LM this way: Gemma3 ties its LM head to the embeddings, Llama and Qwen2 not."""
    from transformers import AutoModelForCausalLM

    ours = mapped.from_pretrained(AutoModelForCausalLM, tiny_model, torch.bfloat16)
    theirs = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    for (name, a), (_, b) in zip(tensors(ours), tensors(theirs), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    tied = theirs.lm_head.weight is theirs.get_input_embeddings().weight
    assert (ours.lm_head.weight is ours.get_input_embeddings().weight) == tied


def _mapping_rss_kb(folder: str) -> int:
    """Resident KiB of this process's mappings of ``folder``'s safetensors files (from /proc/self/smaps)."""
    root, total, inside = str(Path(folder).resolve()), 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=5)
            if "-" in head[0] and len(head) >= 5 and head[0][0] in "0123456789abcdef" and ":" not in head[0]:
                inside = len(head) == 6 and head[5].strip().endswith(".safetensors") and head[5].startswith(root)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_pages_are_returned_and_contents_stay(tmp_path):
    from transformers import AutoModel

    folder = make_tiny(tmp_path / "wide", "llama", hidden=256)  # tensors of many pages each
    model = AutoModel.from_pretrained(folder, dtype=torch.float32)  # views of the file's mapping, no copy
    old = [p.data for p in model.parameters()]  # held: the mapping stays, and these must still read right
    expected = [t.clone() for t in old]  # reading them also faults every page in
    resident = _mapping_rss_kb(folder)
    size = sum(t.numel() * 4 for t in old) // 1024
    assert resident > 0.9 * size
    released = mapped.cast_parameters(model, torch.bfloat16, folder)
    assert released > 0.9 * size * 1024
    assert _mapping_rss_kb(folder) < 0.1 * resident  # only pages shared by two tensors stay
    for t, e in zip(old, expected):  # released pages fault back in from the file, unchanged
        assert torch.equal(t, e)
    for p, e in zip(model.parameters(), expected):
        assert p.dtype == torch.bfloat16 and torch.equal(p, e.to(torch.bfloat16))
    assert model.config.dtype == torch.bfloat16


def test_applies_only_where_it_is_known_to_be_exact(tiny_llama, tmp_path):
    from transformers import AutoModel, LlamaModel

    assert mapped.applies(tiny_llama, torch.bfloat16, LlamaModel, False) == torch.float32
    assert mapped.applies(tiny_llama, torch.float32, LlamaModel, False) is None  # stored as asked: no cast
    assert mapped.applies(tiny_llama, torch.bfloat16, LlamaModel, True) is None  # remote code: its own load
    assert mapped.applies(tiny_llama, torch.bfloat16, None, False) is None

    class KeepsFloat32(LlamaModel):
        _keep_in_fp32_modules = ["norm"]

    assert mapped.applies(tiny_llama, torch.bfloat16, KeepsFloat32, False) is None
    assert mapped.applies("org/hub-model", torch.bfloat16, LlamaModel, False) is None  # not a local folder

    mixed = tmp_path / "mixed"
    model = AutoModel.from_pretrained(tiny_llama)
    model.norm.weight.data = model.norm.weight.data.to(torch.float16)
    model.save_pretrained(mixed)
    assert mapped.stored_dtype(str(mixed)) is None  # two floating dtypes: transformers loads it itself

"""The CPU speed-ups (llmhead/speedups/), each against the plain path: a classifier's outputs with
``speedups=[name]`` equal those with ``speedups=[]``, bit for bit where the module says it is exact (mapped_load),
within the rounding it states where it rounds (short_attention), on tiny in-process models. Every such test also
checks that the speed-up ran, so that equality is not trivial. Then each module's own edge cases, and the
benchmark that measures the gains (--quick)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny, sentiment_rows
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import llmhead
from llmhead.speedups import attention, mapped

ROWS = sentiment_rows(2)
# At most 8 tokens each: the tiny models' heads are 8 wide, and without gradients short_attention takes calls of at
# most head_dim keys (longer ones go to SDPA, which would make its comparison trivial).
TEXTS = [
    "a good film",
    "bad",
    "i loved every minute of it",
    "a dull boring mess",
    "great acting",
    "a sad slow grim tale",
]


def classifier(model: str, speedups: list[str], dtype: str = "float32", head=None, **options):
    """A fitted head classifier; with ``head`` (another classifier's), that head, so logits differ only by features."""
    clf = llmhead.from_pretrained(model, dtype=dtype, speedups=speedups, seed=0, **options)
    clf.fit(ROWS, ROWS[:8], epochs=0 if head is not None else 3, progress=False)
    if head is not None:
        clf.model.head.load_state_dict(head.model.head.state_dict())
    return clf


def assert_same_heads(a, b) -> None:
    sa, sb = a.model.head.state_dict(), b.model.head.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def assert_within_rounding(on: torch.Tensor, off: torch.Tensor, float32: torch.Tensor | None) -> None:
    """float32: equal to float32 rounding. bfloat16: no further from the plain path, nor from float32, than twice the
    plain bf16 path's own distance from float32 (the tolerance attention.py and lastblock.py state)."""
    if float32 is None:
        torch.testing.assert_close(on, off, rtol=1e-4, atol=1e-5)
        return
    own = (off - float32).abs().max()
    assert own > 0  # bf16 really rounds here
    assert (on - off).abs().max() <= 2 * own and (on - float32).abs().max() <= 2 * own


# ---- mapped_load: exact --------------------------------------------------------------------------------------
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


def tensors(model):
    return [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]


@linux_only
def test_mapped_load_equals_the_plain_path_bit_for_bit(tiny_model, monkeypatch):
    """bf16 from the float32 file: every tensor, the trained head and the logits equal the plain load's."""
    casts, cast = [], mapped.cast_parameters
    monkeypatch.setattr(mapped, "cast_parameters", lambda *a, **k: casts.append(1) or cast(*a, **k))
    off = classifier(tiny_model, [], "bfloat16")
    assert casts == []
    on = classifier(tiny_model, ["mapped_load"], "bfloat16")
    assert casts == [1]  # it ran
    assert [n for n, _ in tensors(on.model.backbone)] == [n for n, _ in tensors(off.model.backbone)]
    for (name, a), (_, b) in zip(tensors(on.model.backbone), tensors(off.model.backbone)):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert_same_heads(on, off)
    assert torch.equal(on.logits(TEXTS), off.logits(TEXTS))
    classifier(tiny_model, ["mapped_load"], "float32")  # stored as asked: nothing to cast
    assert casts == [1]


@linux_only
def test_mapped_load_equals_transformers_own_bf16_load_of_fewer_blocks(tiny_model):
    from transformers import AutoConfig, AutoModel

    ours = llmhead.from_pretrained(tiny_model, dtype="bfloat16", speedups=["mapped_load"], layer=1).model.backbone
    config = AutoConfig.from_pretrained(tiny_model)
    config.num_hidden_layers = 1
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:1]
    theirs = AutoModel.from_pretrained(tiny_model, config=config, dtype=torch.bfloat16).eval()
    assert [n for n, _ in tensors(ours)] == [n for n, _ in tensors(theirs)]
    for (name, a), (_, b) in zip(tensors(ours), tensors(theirs)):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert ours.config.dtype == theirs.config.dtype == torch.bfloat16
    ids = torch.tensor([[5, 9, 14, 3, 22], [7, 7, 30, 2, 11]])
    with torch.inference_mode():
        assert torch.equal(ours(ids).last_hidden_state, theirs(ids).last_hidden_state)


@linux_only
def test_mapped_causal_lm_equals_transformers_bf16_load_and_keeps_ties(tiny_model):
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


@linux_only
def test_mapped_pages_are_returned_and_contents_stay(tmp_path):
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


def test_mapped_load_applies_only_where_it_is_known_to_be_exact(tiny_llama, tmp_path):
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


# ---- short_attention: equal up to the rounding it states ---------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_short_attention_equals_sdpa_within_its_rounding(tiny_model, dtype, monkeypatch):
    off = classifier(tiny_model, [], dtype)
    on = classifier(tiny_model, ["short_attention"], dtype, head=off)
    reference = classifier(tiny_model, [], "float32", head=off) if dtype == "bfloat16" else None
    assert on.model.backbone.config._attn_implementation == attention.NAME
    assert off.model.backbone.config._attn_implementation == "sdpa"
    fallbacks = []  # short_attention hands calls it does not take to this function
    monkeypatch.setattr(
        "transformers.integrations.sdpa_attention.sdpa_attention_forward",
        lambda *a, **kw: fallbacks.append(1) or sdpa_attention_forward(*a, **kw),
    )
    ours = on.logits(TEXTS, batch_size=len(TEXTS))
    assert fallbacks == []  # every call took the matmul path
    monkeypatch.undo()
    plain = off.logits(TEXTS, batch_size=len(TEXTS))
    assert_within_rounding(ours, plain, reference.logits(TEXTS, batch_size=len(TEXTS)) if reference else None)


@pytest.mark.parametrize("name", ["short_attention"])
def test_lora_training_through_it_equals_the_plain_path(tiny_llama, name):
    """The training path (gradients through the speed-up, MLP adapters of the top block included), in float32."""
    lora = dict(mode="lora", lora_targets="all-linear", lora_dropout=0.0)
    fits = {}
    for speedups in ([], [name]):
        clf = llmhead.from_pretrained(tiny_llama, dtype="float32", speedups=speedups, seed=0, **lora)
        plain = dict(warm_start=False, mixed_precision="no", progress=False)
        clf.fit(ROWS, ROWS[:8], epochs=1, batch_size=8, lr=1e-2, backbone_lr_ratio=0.1, **plain)
        fits[bool(speedups)] = clf
    on, off = fits[True], fits[False]
    assert (on.model.backbone.config._attn_implementation == attention.NAME) == (name == "short_attention")
    adapters = {n: p for n, p in on.model.backbone.named_parameters() if "lora_B" in n}
    top_mlp = [p for n, p in adapters.items() if f"layers.{on.model.backbone.config.num_hidden_layers - 1}.mlp" in n]
    assert top_mlp and all(p.abs().sum() > 0 for p in top_mlp)  # the trimmed MLP's adapters trained
    plain = dict(off.model.backbone.named_parameters())
    for n, p in on.model.backbone.named_parameters():
        if "lora_" in n:
            torch.testing.assert_close(p, plain[n], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(on.logits(TEXTS), off.logits(TEXTS), rtol=1e-4, atol=1e-5)


def test_feature_cache_keeps_the_two_attention_kernels_apart(tiny_llama, tmp_path):
    """In bf16 their features differ by rounding, so features computed with one are never served to the other."""
    fresh = classifier(tiny_llama, [], "bfloat16")  # no cache
    files = []
    for speedups in (["short_attention"], [], ["short_attention"]):
        clf = llmhead.from_pretrained(tiny_llama, dtype="bfloat16", speedups=speedups, seed=0)
        clf.fit(ROWS, ROWS[:8], epochs=3, feature_cache=str(tmp_path), progress=False)
        files.append(len([p for p in tmp_path.rglob("*") if p.is_file()]))
        if not speedups:
            assert_same_heads(clf, fresh)  # trained on its own kernel's features
        else:
            on = clf
    assert files[0] > 0 and files[1] > files[0] and files[2] == files[1]  # the third run read the first's features
    assert not torch.equal(on.model.head.state_dict()["mlp.0.weight"], fresh.model.head.state_dict()["mlp.0.weight"])


def qkv(batch, heads, kv_heads, length, keys, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, dim, generator=g, requires_grad=True)
    k = torch.randn(batch, kv_heads, keys, dim, generator=g, requires_grad=True)
    v = torch.randn(batch, kv_heads, keys, dim, generator=g, requires_grad=True)
    return q, k, v


class Attention(torch.nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups, self.is_causal = groups, True


def both(module, q, k, v, mask, **kw):
    outs = []
    for fn in (attention.short_attention, sdpa_attention_forward):
        for t in (q, k, v):
            t.grad = None
        out, weights = fn(module, q, k, v, mask, **kw)
        assert weights is None
        (out * torch.arange(out.numel()).reshape(out.shape).sin()).sum().backward()
        outs.append((out.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone()))
    return outs


@pytest.mark.parametrize("kv_heads", [4, 2, 1])  # plain, grouped-query, multi-query
def test_short_attention_values_and_gradients_equal_sdpa(kv_heads):
    q, k, v = qkv(3, 4, kv_heads, 7, 7)
    ours, theirs = both(Attention(4 // kv_heads), q, k, v, None, scaling=0.3)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_short_attention_padding_mask_and_cache_offset_equal_sdpa():
    """Left padding (a boolean mask with fully masked rows) and queries after a cached prefix (T < S)."""
    q, k, v = qkv(2, 4, 2, 5, 9)
    mask = torch.ones(2, 1, 5, 9, dtype=torch.bool).tril(4)  # causal, bottom-right aligned
    mask[1, :, :, :3] = False  # the second row's first three keys are padding
    ours, theirs = both(Attention(2), q, k, v, mask)
    real = mask.any(-1).squeeze(1)  # (B, T): queries that see at least one key
    torch.testing.assert_close(ours[0][real], theirs[0][real], atol=1e-5, rtol=1e-5)
    for a, b in zip(ours[1:], theirs[1:]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    q, k, v = qkv(2, 4, 4, 3, 8, seed=1)  # a cached prefix without a mask: every query sees it and its own past
    out, _ = attention.short_attention(Attention(1), q, k, v, None)
    full = torch.ones(3, 8, dtype=torch.bool).tril(5)
    ref, _ = sdpa_attention_forward(Attention(1), q, k, v, full[None, None].expand(2, 1, 3, 8))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_short_attention_hands_long_calls_and_soft_capping_to_sdpa(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "transformers.integrations.sdpa_attention.sdpa_attention_forward",
        lambda *a, **kw: calls.append(kw) or (torch.zeros(1), None),
    )
    monkeypatch.setattr(attention, "MAX_SCORES", 4 * 7 * 7 - 1)
    q, k, v = qkv(1, 4, 4, 7, 7)
    attention.short_attention(Attention(1), q, k, v, None)  # one score over the cap
    attention.short_attention(Attention(1), q[..., :6, :], k[..., :6, :], v[..., :6, :], None, softcap=30.0)
    assert len(calls) == 2
    attention.short_attention(Attention(1), q[..., :6, :], k[..., :6, :], v[..., :6, :], None)
    assert len(calls) == 2
    q, k, v = qkv(1, 2, 2, 9, 9, dim=4)  # 9 keys > 2 x head_dim
    attention.short_attention(Attention(1), q, k, v, None)
    assert len(calls) == 3
    with torch.no_grad():  # forward-only (feature extraction, prediction) takes it too, up to head_dim keys
        attention.short_attention(Attention(1), q[..., :4, :], k[..., :4, :], v[..., :4, :], None)
        assert len(calls) == 3
        attention.short_attention(Attention(1), q[..., :6, :], k[..., :6, :], v[..., :6, :], None)  # 6 keys > 4
        assert len(calls) == 4
    attention.short_attention(Attention(1), q[..., :6, :], k[..., :6, :], v[..., :6, :], None)  # training: <= 8
    assert len(calls) == 4


# ---- the benchmark ---------------------------------------------------------------------------------------------
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_benchmark_interleaves_and_judges_against_its_control(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import speedups

    order = []
    values = speedups.interleaved(["a", "b", "c"], lambda n: order.append(n) or len(order), reps=2, warmup=1)
    assert order == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]  # reversed every other repetition
    assert values == {"a": [6, 7], "b": [5, 8], "c": [4, 9]}  # the warm-up repetition is not kept
    judged = speedups.compare(on=[1.0, 1.0, 1.0, 1.0], off=[1.1, 1.08, 1.12, 0.99], noise=0.03)
    assert judged["reps_faster_with_it"] == 0.75 and judged["verdict"] == "within noise"  # 3 of 4 is not enough
    assert speedups.compare([1.0] * 4, [1.1, 1.08, 1.12, 1.09], noise=0.03)["verdict"] == "gain"
    assert speedups.compare([1.0] * 4, [1.1, 1.08, 1.12, 1.09], noise=0.15)["verdict"] == "within noise"
    assert speedups.compare([1.0] * 4, [0.9, 0.92, 0.88, 0.91], noise=0.03)["verdict"] == "loss"
    assert speedups.compare([800, 801, 799], [1200, 1190, 1210], None, memory=True)["verdict"] == "gain"
    assert speedups.compare([800, 801, 799], [805, 810, 790], None, memory=True)["verdict"] == "within noise"


def test_benchmark_quick(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import speedups

    result = speedups.main(["--quick", "--out", str(tmp_path / "s.json")])
    measured = {(r["speedup"], r["measured"].split(",")[0]) for r in result["rows"]}
    for name, what in [
        ("short_attention", "feature extraction"),
        ("short_attention", "LoRA step"),
        ("mapped_load", "peak RSS of the bf16 load"),
        ("all", "LoRA step"),
    ]:
        assert (name, what) in measured
    assert all(r["on_median"] > 0 and r["off_median"] > 0 for r in result["rows"])
    assert result["load"]["runs"]["all"][0]["dtype"] == "bfloat16" and (tmp_path / "s.json").is_file()
    scale = result["features"]["logit_scale"]
    assert all(d <= 0.05 * scale for d in result["features"]["max_abs_logit_diff_vs_none"].values())

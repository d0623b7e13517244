"""Pooling choices, layer choice with truncation, multi-layer features and long inputs, on tiny models."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny, sentiment_rows
from hypothesis import given, settings
from hypothesis import strategies as st

import llmhead
from llmhead.features.extract import aggregate, chunk
from llmhead.model.blocks import block_plan, check_distinct, describe_blocks, describe_training, frozen_blocks
from llmhead.model.pooling import last_token_index, pool


@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.integers(0, 4), st.booleans())
@settings(max_examples=60, deadline=None)
def test_pooling_ignores_padding_on_either_side(lengths, extra, left):
    """Pooled vectors depend only on the real tokens, wherever the padding sits."""
    width = max(lengths) + extra
    torch.manual_seed(0)
    real = [torch.randn(n, 3) for n in lengths]
    hidden = torch.full((len(lengths), width, 3), 1e4)  # garbage in the padding
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, r in enumerate(real):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        hidden[i, span], mask[i, span] = r, 1
    assert last_token_index(mask).tolist() == [width - 1 if left else n - 1 for n in lengths]
    for how, expected in (
        ("last", [r[-1] for r in real]),
        ("mean", [r.mean(0) for r in real]),
        ("max", [r.max(0).values for r in real]),
        ("last+mean", [torch.cat([r[-1], r.mean(0)]) for r in real]),
    ):
        torch.testing.assert_close(pool(hidden, mask, how), torch.stack(expected))


@pytest.mark.parametrize("layer,blocks", [(1, 1), (-1, 2), (-2, 1)])
def test_layer_k_keeps_exactly_k_blocks(tiny_llama, layer, blocks):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", layer=layer).fit(sentiment_rows(1), epochs=1)
    assert len(clf.model.backbone.layers) == blocks
    assert clf.model.backbone.config.num_hidden_layers == blocks


@pytest.mark.parametrize(
    "total,fraction,block", [(30, 0.75, 23), (18, 0.75, 14), (24, 0.75, 18), (2, 0.75, 2), (2, 0.5, 1), (4, 0.01, 1)]
)
def test_a_fractional_layer_is_that_share_of_the_depth_rounded_half_up(total, fraction, block):
    assert block_plan(total, fraction, None) == (block, None)


def test_head_mode_defaults_to_last_and_mean_at_three_quarters_depth(tmp_path):
    """The frozen modes' default features: 3 of a 4-block model's blocks run, and the head reads the last token's
    and the mean token's states of block 3 side by side (2 x hidden wide), through the final norm as layer=3 does."""
    from transformers import AutoModel

    path = make_tiny(tmp_path / "m", "llama", layers=4)
    clf = llmhead.from_pretrained(path, dtype="float32", head_hidden=[]).fit(sentiment_rows(1), epochs=1)
    assert (clf.config.pooling, clf.config.layer) == ("last+mean", 0.75)
    assert len(clf.model.backbone.layers) == 3
    full = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    assert clf.model.head.config()["in_dim"] == 2 * full.config.hidden_size
    batch = clf.tokenizer(["the film was wonderful"], return_tensors="pt")
    with torch.inference_mode():
        state = full.norm(full(**batch, output_hidden_states=True).hidden_states[3])  # (1, T, H)
        got = clf.model.features(batch["input_ids"], batch["attention_mask"])[:, 0]
    torch.testing.assert_close(got, torch.cat([state[:, -1], state.mean(1)], -1), atol=1e-5, rtol=1e-5)
    clf.save(tmp_path / "saved")
    again = llmhead.load(tmp_path / "saved")
    assert (again.config.pooling, again.config.layer) == ("last+mean", 0.75)
    torch.testing.assert_close(again.logits(["a dull film"]), clf.logits(["a dull film"]), atol=0, rtol=0)


def test_layer_out_of_range_is_named(tiny_llama):
    clf = llmhead.from_pretrained(tiny_llama, layer=5)
    with pytest.raises(ValueError, match=r"layer 5 is out of range: this model has 2 blocks"):
        clf.fit(sentiment_rows(1), epochs=1)


def test_truncated_model_matches_the_full_models_hidden_state(tmp_path):
    """layer=k must give block k's output of the full model (through the final norm), not another model."""
    from transformers import AutoModel

    path = make_tiny(tmp_path / "m", "llama")
    for k in (1, 2):
        clf = llmhead.from_pretrained(path, dtype="float32", layer=k, pooling="last", head_hidden=[])
        clf.fit(sentiment_rows(1), epochs=1)
        full = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        batch = clf.tokenizer(["the film was wonderful"], return_tensors="pt")
        with torch.inference_mode():
            states = full(**batch, output_hidden_states=True).hidden_states
            expected = full.norm(states[k]) if k < 2 else states[k]
            got = clf.model.features(batch["input_ids"], batch["attention_mask"])[:, 0]
        torch.testing.assert_close(got, expected[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mix", ["concat", "weighted"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "last+mean", "attention"])
def test_multi_layer_features_train_and_reload(tiny_model, mix, pooling, tmp_path):
    clf = llmhead.from_pretrained(tiny_model, dtype="float32", layers=[0, 1, -1], layer_mix=mix, pooling=pooling)
    clf.fit(sentiment_rows(2), epochs=30, patience=0, lr=3e-3)
    assert clf.history[-1]["train_loss"] < clf.history[0]["train_loss"]
    texts = [r["text"] for r in sentiment_rows(1)]
    clf.tokenizer.padding_side = "left"
    left = clf.logits(texts)
    clf.tokenizer.padding_side = "right"
    torch.testing.assert_close(clf.logits(texts), left, atol=1e-5, rtol=1e-4)
    clf.save(tmp_path / "m")
    torch.testing.assert_close(llmhead.load(tmp_path / "m").logits(texts), clf.logits(texts), atol=0, rtol=0)
    if mix == "weighted":
        assert clf.model.head.mix.shape == (3,)


@pytest.mark.parametrize("norm", ["standardize", "scale", "layernorm", "none"])
def test_input_norms_train(tiny_llama, norm):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", input_norm=norm, dropout=0.0)
    clf.fit(sentiment_rows(2), epochs=40, patience=0, lr=3e-3)
    assert clf.evaluate(sentiment_rows(1))["accuracy"] == 1.0


def test_chunk_windows_cover_every_token_and_repeat_bos():
    class Tok:
        all_special_ids = [0]

        def __call__(self, texts, **_):
            return {"input_ids": [[0, *range(1, n + 1)] for n in texts]}

    windows, owner = chunk(Tok(), [5, 30], max_length=10, overlap=3)
    assert owner[0] == 0 and windows[0] == [0, 1, 2, 3, 4, 5]
    long = [w for w, o in zip(windows, owner) if o == 1]
    assert all(w[0] == 0 and len(w) <= 10 for w in long)
    assert sorted({t for w in long for t in w[1:]}) == list(range(1, 31))
    assert all(a[-3:] == b[1:4] for a, b in zip(long, long[1:]))  # consecutive windows overlap by 3


def test_aggregate_mean_and_max():
    feats = torch.tensor([[1.0], [3.0], [5.0], [-1.0]])
    torch.testing.assert_close(aggregate(feats, [0, 0, 1, 1], 2, "mean"), torch.tensor([[2.0], [2.0]]))
    torch.testing.assert_close(aggregate(feats, [0, 0, 1, 1], 2, "max"), torch.tensor([[3.0], [5.0]]))


def test_long_inputs_chunked_instead_of_truncated(tiny_llama):
    long_text = " ".join(["the film was wonderful and moving"] * 20)
    rows = sentiment_rows(2) + [{"text": long_text, "label": "pos"}]
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", max_length=16)
    clf.fit(rows, epochs=1)
    assert clf.truncated >= 1  # reported, with truncation as the default
    chunked = llmhead.from_pretrained(tiny_llama, dtype="float32", max_length=16, long_inputs="chunk", chunk_overlap=4)
    chunked.fit(rows, epochs=1)
    assert chunked.truncated == 0
    assert chunked.predict([long_text])[0] in ("pos", "neg")


def test_attention_pooling_trains_its_query_and_caches_token_states(tiny_llama, tmp_path):
    clf = llmhead.from_pretrained(tiny_llama, dtype="float32", pooling="attention", dropout=0.0)
    clf.fit(sentiment_rows(2), epochs=40, patience=0, lr=3e-3, feature_cache=str(tmp_path / "cache"))
    query = clf.model.head.attention.query
    assert query.abs().sum() > 0  # it started at zero (mean pooling) and learned
    assert clf.evaluate(sentiment_rows(1))["accuracy"] == 1.0
    cached = list((tmp_path / "cache").glob("*/*.safetensors"))
    assert cached, "token states were not written to the disk cache"
    from safetensors.torch import load_file

    stored = load_file(cached[0])
    assert set(stored) == {"keys", "values", "lengths"}
    assert stored["values"].shape[0] == int(stored["lengths"].sum())
    again = llmhead.from_pretrained(tiny_llama, dtype="float32", pooling="attention", dropout=0.0)
    again.fit(sentiment_rows(2), epochs=40, patience=0, lr=3e-3, feature_cache=str(tmp_path / "cache"))
    assert again.extractor.cache.misses == 0 and again.extractor.cache.hits == len(
        sentiment_rows(2)
    )  # nothing recomputed
    torch.testing.assert_close(again.logits(["a new text"]), clf.logits(["a new text"]))


def test_attention_pooling_equals_mean_pooling_at_zero_query():
    from llmhead.model.pooling import AttentionPool

    tokens = torch.randn(2, 5, 1, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    got = AttentionPool(1, 4)(tokens, mask)[:, 0]
    torch.testing.assert_close(got, pool(tokens[:, :, 0], mask, "mean"))


def test_feature_set_take_pads_token_states():
    from llmhead.features.extract import FeatureSet

    values = torch.arange(6.0).view(6, 1, 1)  # three examples with 1, 2 and 3 tokens
    fs = FeatureSet(values, torch.tensor([1, 2, 3]))
    tokens, mask = fs.take(torch.tensor([2, 0]))
    assert tokens.shape == (2, 3, 1, 1) and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert tokens[0, :, 0, 0].tolist() == [3.0, 4.0, 5.0] and tokens[1, 0, 0, 0] == 0.0


def test_describe_blocks_says_what_the_head_reads():  # what `llmhead info` shows beside the layer option
    assert describe_blocks(30, 0.75, None) == "block 23 of 30"
    assert describe_blocks(18, 0.75, None) == "block 14 of 18"
    assert describe_blocks(30, -1, None) == describe_blocks(30, None, None) == "block 30 of 30 (the final output)"
    assert describe_blocks(30, None, [0, 10, -1]) == "blocks 0, 10, 30 of 30 (0: the embeddings; 30: the final output)"
    assert describe_blocks(30, None, [-1]) == "block 30 of 30 (the final output)"
    assert describe_blocks(30, None, [5, 10]) == "blocks 5, 10 of 30"
    with pytest.raises(ValueError, match="out of range"):
        describe_blocks(30, 31, None)
    with pytest.raises(ValueError, match=r"layers \[2, -1\] name block 2 more than once on this 2-block model"):
        check_distinct(2, [2, -1])
    check_distinct(2, [1, -1])
    assert block_plan(2, None, [2, -1]) == (2, [2, 2])  # a model saved so still loads


def test_freeze_blocks_counts_or_shares_the_depth():  # what full fine-tuning trains, and `llmhead info` says
    assert frozen_blocks(30, 0.5) == frozen_blocks(30, 15) == 15 and frozen_blocks(18, 0.5) == 9
    assert frozen_blocks(30, 0.0) == frozen_blocks(30, 0) == 0 and frozen_blocks(5, 0.5) == 2  # down: half trains
    assert frozen_blocks(1, 0.5) == 0 and frozen_blocks(3, 0.5) == 1  # a 1-block model trains its block
    assert describe_training(30, 0.5, "full") == "blocks 16-30 of 30 (the embeddings and blocks 1-15 frozen)"
    assert describe_training(30, 0, "full") == "blocks 1-30 of 30 and the embeddings"
    assert describe_training(30, 1, "full") == "blocks 2-30 of 30 (the embeddings and block 1 frozen)"
    assert describe_training(30, 30, "full") == "no block (the final norm only) (the embeddings and blocks 1-30 frozen)"
    assert describe_training(30, 0, "lora") == "adapters on blocks 1-30 of 30"
    assert describe_training(30, 29, "lora") == "adapters on block 30 of 30"
    with pytest.raises(ValueError, match=r"share of the depth in \[0, 1\)"):
        frozen_blocks(30, 1.5)


def test_a_block_named_twice_is_refused_before_any_weights_load(tiny_llama, no_model_load):
    clf = llmhead.from_pretrained(tiny_llama, mode="head", layers=[2, -1])
    with pytest.raises(ValueError, match=r"layers \[2, -1\] name block 2 more than once on this 2-block model"):
        clf.fit(sentiment_rows(1), progress=False)

"""Fixtures: tiny random decoders (Llama, Qwen2, Gemma3) built in-process and saved to a tmp dir,
so tests load them through the same path users take; and the packaged SmolLM2, truncated to a few
real layers, for integration tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import CORPUS, sentiment_rows  # noqa: E402, F401  (the toy data the benchmarks use too)


def tiny_tokenizer(padding_side: str = "right", with_pad: bool = True):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<unk>", "<eos>"] + (["<pad>"] if with_pad else [])
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<eos>",
        pad_token="<pad>" if with_pad else None,
        padding_side=padding_side,
    )


def tiny_config(family: str, vocab: int, hidden: int = 32, layers: int = 2):
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=1,
    )
    if family == "llama":
        return LlamaConfig(**common)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "gemma3":
        return Gemma3TextConfig(**common, head_dim=8, sliding_window=16, query_pre_attn_scalar=8)
    raise ValueError(family)


def make_tiny(
    folder: Path, family: str, padding_side: str = "right", with_pad: bool = True, hidden: int = 32, layers: int = 2
) -> str:
    """Save a random causal LM (with its LM head, as real checkpoints have) and a tokenizer to ``folder``."""
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer(padding_side, with_pad)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(family, len(tokenizer), hidden, layers))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session", params=["llama", "qwen2", "gemma3"])
def tiny_model(request, tmp_path_factory) -> str:
    return make_tiny(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    return make_tiny(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="session")
def smollm2_8layers(tmp_path_factory) -> str:
    """The packaged SmolLM2 with its real embeddings and first 8 real blocks, as a local directory."""
    from transformers import AutoModel, AutoTokenizer

    from llmhead.model.backbone import resolve

    path = resolve("smollm2-135m").pretrained_path()  # converts the GGUF once into the cache
    folder = tmp_path_factory.mktemp("smollm2-8")
    AutoModel.from_pretrained(path, num_hidden_layers=8).save_pretrained(folder)
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def no_model_load(monkeypatch):
    """Any attempt to load weights fails the test: data errors must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was checked")

    from llmhead.model import backbone, loading  # loading imported now, so it never binds the refusal for good

    monkeypatch.setattr(backbone, "load_backbone", refuse)
    monkeypatch.setattr(loading, "load_backbone", refuse)
    monkeypatch.setattr(backbone, "load_tokenizer", refuse)

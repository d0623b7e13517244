"""Load a decoder LLM without its LM head: from a built-in alias, a ``.gguf`` file, a local
transformers directory or a hub id.

GGUF weights are dequantized once and written to a safetensors cache (``LLMHEAD_CACHE``), so
later loads take about a second instead of tens of seconds of pure-Python dequantization.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from . import mapped
from .assets import PACKAGED_MODELS, cache_dir, packaged_gguf
from .precision import torch_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where the weights come from, resolved without loading them."""

    name: str  # what the user gave
    kind: str  # "alias" | "gguf" | "pretrained"
    gguf: Path | None = None  # the GGUF file, for aliases and .gguf paths

    def pretrained_path(self) -> str:
        """What ``from_pretrained`` should read: the converted cache for GGUF, the name otherwise."""
        if self.gguf is None:
            return self.name
        cached = _gguf_cache_dir(self.gguf)
        return str(cached if (cached / "config.json").is_file() else convert_gguf(self.gguf))


def resolve(model: str) -> Source:
    """Decide what ``model`` names and fail now, before anything loads, when it cannot be found."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty string (alias, .gguf path, directory or hub id), got {model!r}")
    if model in PACKAGED_MODELS:
        return Source(model, "alias", packaged_gguf(model))
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return Source(str(path.resolve()), "gguf", path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            hint = f" It holds {ggufs[0].name}: pass that file's path." if ggufs else ""
            raise FileNotFoundError(f"{path} has no config.json, so it is not a transformers model directory.{hint}")
        return Source(str(path.resolve()), "pretrained")
    looks_local = model.startswith((".", "/", "~")) or os.sep + os.sep in model or model.count("/") > 1
    if looks_local:
        raise FileNotFoundError(f"model directory not found: {path}")
    close = difflib.get_close_matches(model, list(PACKAGED_MODELS), n=2, cutoff=0.6)
    if "/" not in model and close:
        raise ValueError(f"unknown model alias {model!r}; did you mean {' or '.join(map(repr, close))}?")
    return Source(model, "pretrained")  # a hub id: from_pretrained downloads it or uses the local HF cache


def _gguf_cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "converted" / f"{gguf.stem}-{key}"


def convert_gguf(gguf: Path) -> Path:
    """Dequantize ``gguf`` once into a safetensors transformers directory and return that directory."""
    from transformers import AutoModel, AutoTokenizer

    target = _gguf_cache_dir(gguf)
    log.info("converting %s to safetensors in %s (once; later loads are fast)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModel.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # transformers marks GGUF-loaded models as quantized, which blocks training and saving.
    # Rebuilding from a config without quantization_config gives identical outputs and a normal model.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModel.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # a half-written conversion is never picked up
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():  # not a concurrent winner: a real failure
            raise
    return target


def load_tokenizer(source: Source, trust_remote_code: bool = False):
    """The tokenizer, plus a note of the pad token we had to add (None when it had one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.pretrained_path(), trust_remote_code=trust_remote_code)
    added = None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"the tokenizer of {source.name!r} has neither a pad nor an EOS token; "
                "set tokenizer.pad_token yourself before training"
            )
        # Safe because pooling reads positions from attention_mask, never from pad_token_id.
        tokenizer.pad_token = tokenizer.eos_token
        added = f"pad_token set to eos_token {tokenizer.eos_token!r}"
        log.info("%s: %s", source.name, added)
    return tokenizer, added


def model_config(source: Source, trust_remote_code: bool = False):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source.pretrained_path(), trust_remote_code=trust_remote_code)


def block_plan(total: int, layer: int | None, layers: list[int] | None) -> tuple[int, list[int] | None]:
    """How many blocks to keep, and which ``hidden_states`` to pool (None: the final output).

    Blocks are numbered from 1 (``hidden_states[k]`` is the output of block k, ``hidden_states[0]`` the
    embeddings); negative numbers count from the top, -1 being the last of ``total`` blocks.
    """

    def absolute(i: int, lowest: int) -> int:
        j = total + 1 + i if i < 0 else i
        if not lowest <= j <= total:
            raise ValueError(
                f"layer {i} is out of range: this model has {total} blocks (valid: {lowest}..{total} or -{total}..-1)"
            )
        return j

    if layer is not None:
        return absolute(layer, 1), None
    if layers is not None:
        indices = [absolute(i, 0) for i in layers]
        return max(1, *indices), indices
    return total, None


def load_backbone(
    source: Source,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    keep_blocks: int | None = None,
    quantization_config=None,
):
    """The base model (``AutoModel``): embeddings and the first ``keep_blocks`` blocks, no LM head.

    Blocks above ``keep_blocks`` are never built or loaded, so compute and memory fall with it.
    """
    from transformers import AutoModel

    config = model_config(source, trust_remote_code)
    if keep_blocks is not None and keep_blocks < config.num_hidden_layers:
        config.num_hidden_layers = keep_blocks
        if getattr(config, "layer_types", None):  # Gemma3, Qwen2...: one attention type per block
            config.layer_types = config.layer_types[:keep_blocks]
    if quantization_config is not None:  # bitsandbytes places the 4-bit weights itself
        model = AutoModel.from_pretrained(
            source.pretrained_path(),
            config=config,
            dtype=torch_dtype(dtype),
            trust_remote_code=trust_remote_code,
            quantization_config=quantization_config,
            device_map={"": 0 if torch.cuda.is_available() else "cpu"},
        )
    else:  # a float32 checkpoint asked for in bf16 is cast from the mapped file, one tensor at a time
        model = mapped.from_pretrained(
            AutoModel, source.pretrained_path(), torch_dtype(dtype), config, trust_remote_code
        )
    model.eval()
    return model


def lm_head_rows(source: Source, backbone, token_ids: list[int], trust_remote_code: bool = False) -> torch.Tensor:
    """(len(token_ids), H) float32 rows of the LM head the backbone was trained with.

    Tied models reuse the input embeddings; otherwise the rows are read from the checkpoint's safetensors
    (only those rows), or, for hub ids, from the causal LM loaded once.
    """
    config = model_config(source, trust_remote_code)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text_config, "tie_word_embeddings", getattr(config, "tie_word_embeddings", False)):
        return backbone.get_input_embeddings().weight[token_ids].detach().float()
    folder = Path(source.pretrained_path())
    if folder.is_dir():
        from safetensors import safe_open

        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(str(path), "pt") as f:
                for key in f.keys():
                    if key.endswith("lm_head.weight"):
                        return f.get_slice(key)[token_ids].float()
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(source.pretrained_path(), trust_remote_code=trust_remote_code)
    return lm.get_output_embeddings().weight[token_ids].detach().float()


def fingerprint(model: torch.nn.Module) -> str:
    """A cheap identity for a backbone's weights: shapes plus the first and last values of each tensor."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1).float()
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(torch.cat([flat[:64], flat[-64:]]).numpy().tobytes())
    return digest.hexdigest()[:16]

"""Load a decoder LLM without its LM head: from a built-in alias, a ``.gguf`` file, a local
transformers directory or a hub id.

GGUF weights are dequantized once and written to a safetensors cache (``LLMHEAD_CACHE``), so
later loads take about a second instead of tens of seconds of pure-Python dequantization.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from llmhead import speedups
from llmhead.io.folder import honour_umask
from llmhead.model.assets import PACKAGED_MODELS, cache_dir, packaged_gguf
from llmhead.model.precision import torch_dtype
from llmhead.model.quiet import expected_load

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
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError as exc:
        raise ValueError(f"model {model!r} is {_NOT_LOCAL}, nor a hub id ({exc}). {_ALIASES}") from None
    if _offline() and not _cached(model):  # from_pretrained would fail later, with a message that names no id
        raise HubModelError(
            f"model {model!r} is {_NOT_LOCAL}, so it is read as a Hugging Face hub id, and the hub is offline "
            f"(HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) with no copy of it in the local cache. {_ALIASES}"
        )
    if not _offline() and not _cached(model):
        _probe_hub(model)  # one quick request now, instead of from_pretrained's retries and a message naming no id
    return Source(model, "pretrained")  # a hub id: from_pretrained downloads it or uses the local HF cache


class HubModelError(OSError):
    """A hub id that could not be loaded: the hub is unreachable or offline, or it has no such model."""


_NOT_LOCAL = "not a built-in alias, a .gguf file or a local transformers folder"
_ALIASES = f"Built-in aliases: {', '.join(PACKAGED_MODELS)}."


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))  # also when set after import
    return bool(constants.HF_HUB_OFFLINE) or any(f and f.strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _probe_hub(repo_id: str) -> None:
    """Ask the hub once, with a short timeout and no retries, whether ``repo_id`` exists; raise ``HubModelError``
    when it does not or the hub cannot be reached. A gated model exists (from_pretrained then asks for a token)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    said = f"model {repo_id!r} is {_NOT_LOCAL}, so it was read as a Hugging Face hub id"
    try:
        HfApi().model_info(repo_id, timeout=10)
    except GatedRepoError:
        return
    except RepositoryNotFoundError:
        raise HubModelError(
            f"{said}, and the hub has no such model (or it is private: log in with `hf auth login`). {_ALIASES}"
        ) from None
    except HfHubHTTPError:
        return  # the hub answered with some other error (rate limit, outage): from_pretrained will say what
    except Exception as exc:  # no route, no DNS, refused, timed out: the HTTP client's own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubModelError(
            f"{said}, and the hub cannot be reached from here ({type(exc).__name__}: {first}). {_ALIASES} "
            "For a hub model without a network: download it where there is one (`hf download ID --local-dir DIR`) "
            "and pass DIR."
        ) from None


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


@contextlib.contextmanager
def _from_hub(source: Source, what: str):
    """Turn the OSError of a hub id that cannot be loaded into one that names the id and what was tried."""
    try:
        yield
    except OSError as exc:
        if source.kind != "pretrained" or Path(source.name).is_dir() or isinstance(exc, HubModelError):
            raise
        reason = "the hub is offline (HF_HUB_OFFLINE is set)" if _offline() else "the hub could not be reached"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubModelError(
            f"cannot load the {what} of model {source.name!r}: it is {_NOT_LOCAL}, so it was read as a Hugging Face "
            f"hub id, and {reason}, or it has no such model ({first}). {_ALIASES}"
        ) from exc


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
        honour_umask(tmp)  # a cache others on the machine may share
        os.replace(tmp, target)  # a half-written conversion is never picked up
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():  # not a concurrent winner: a real failure
            raise
    return target


def load_tokenizer(source: Source, trust_remote_code: bool = False):
    """The tokenizer, plus a note of the pad token we had to add (None when it had one)."""
    from transformers import AutoTokenizer

    with _from_hub(source, "tokenizer"):
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

    with _from_hub(source, "config"):
        return AutoConfig.from_pretrained(source.pretrained_path(), trust_remote_code=trust_remote_code)


def load_backbone(
    source: Source,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    keep_blocks: int | None = None,
    quantization_config=None,
    enabled_speedups: tuple[str, ...] = speedups.NAMES,
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
    with _from_hub(source, "weights"), expected_load():
        model = _load_weights(
            AutoModel, source, dtype, trust_remote_code, config, quantization_config, enabled_speedups
        )
    model.eval()
    return model


def _load_weights(auto, source: Source, dtype: str, trust_remote_code: bool, config, quantization_config, enabled):
    if quantization_config is not None:  # bitsandbytes places the 4-bit weights itself
        model = auto.from_pretrained(
            source.pretrained_path(),
            config=config,
            dtype=torch_dtype(dtype),
            trust_remote_code=trust_remote_code,
            quantization_config=quantization_config,
            device_map={"": 0 if torch.cuda.is_available() else "cpu"},
        )
    else:  # a float32 checkpoint asked for in bf16 is cast from the mapped file, one tensor at a time
        model = speedups.load_pretrained(
            enabled, auto, source.pretrained_path(), torch_dtype(dtype), config, trust_remote_code
        )
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

    with _from_hub(source, "LM head"):
        lm = AutoModelForCausalLM.from_pretrained(source.pretrained_path(), trust_remote_code=trust_remote_code)
    return lm.get_output_embeddings().weight[token_ids].detach().float()


def fingerprint(model: torch.nn.Module) -> str:
    """The identity of a backbone: a SHA-256 of its configuration and of every tensor's (parameters and buffers)
    name, shape, dtype and every byte of its values, so any change to any value or setting is noticed (a save of a
    head or of adapters depends on the exact base)."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:  # settings such as rope_theta or rms_norm_eps change outputs as much as weights do
        fields = config.to_diff_dict()
        for key in ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures"):
            fields.pop(key, None)
        digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    tensors = dict(model.state_dict())
    # buffers the state dict leaves out (non-persistent: rotary inv_freq, Gemma's embed_scale)
    tensors.update({f"buffer:{k}": v for k, v in model.named_buffers() if k not in tensors})
    for name, tensor in sorted(tensors.items()):
        tensor = tensor.detach()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        flat = tensor.contiguous().reshape(-1)
        digest.update(memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else b"")
    return digest.hexdigest()[:16]

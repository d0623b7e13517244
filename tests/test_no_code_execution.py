"""Nothing llmhead reads can run code: no pickle or other code-carrying loader anywhere in the package or the
recipes, no torch.load without weights_only=True, no eval/exec, no accelerate save_state/load_state (they
pickle RNG states and registered objects)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "llmhead").rglob("*.py"), *(ROOT / "recipes").rglob("*.py")])
CODE_LOADERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
PICKLING_CALLS = {"load_state", "save_state", "read_pickle", "to_pickle", "load_custom_state", "save_custom_state"}


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    safe_loaders = {"SafeLoader", "CSafeLoader"} | {  # classes of this file built on yaml's SafeLoader
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any("SafeLoader" in ast.unparse(b) for b in node.bases)
    }
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in CODE_LOADERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in CODE_LOADERS:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
            found.append(f"{where}: from torch import load")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("eval", "exec") and isinstance(func, ast.Name):
                found.append(f"{where}: {name}(...)")
            if name in PICKLING_CALLS:
                found.append(f"{where}: .{name}(...) pickles")
            loader = keywords.get("Loader")
            loader = ast.unparse(loader).split(".")[-1] if loader is not None else None
            if name == "load" and owner == "yaml" and loader not in safe_loaders:
                found.append(f"{where}: yaml.load without a SafeLoader")
            if name == "load" and isinstance(func, ast.Attribute) and getattr(func.value, "attr", None) == "jit":
                found.append(f"{where}: torch.jit.load")
            if name == "load" and owner == "torch":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    found.append(f"{where}: torch.load without weights_only=True")
            if name == "load" and owner in ("np", "numpy"):
                allow = keywords.get("allow_pickle")
                if isinstance(allow, ast.Constant) and allow.value:
                    found.append(f"{where}: numpy.load(allow_pickle=True)")
            if "trust_remote_code" in keywords:
                value = keywords["trust_remote_code"]
                if isinstance(value, ast.Constant) and value.value is True:
                    found.append(f"{where}: trust_remote_code=True hard-coded")
    return found


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nfrom joblib import load\nimport torch\nimport numpy as np\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\ntorch.load('x', weights_only=True)\n"
        "eval('1')\nexec('1')\nacc.load_state('d')\nnp.load('x', allow_pickle=True)\nf(trust_remote_code=True)\n"
        "from torch import load\nyaml.load(s)\ntorch.jit.load('m')\nyaml.safe_load(s)\n"
        "class L(yaml.SafeLoader): pass\nyaml.load(s, Loader=L)\nyaml.load(s, Loader=yaml.FullLoader)\n"
    )
    global ROOT
    root, ROOT = ROOT, tmp_path
    try:
        found = problems(bad)
    finally:
        ROOT = root
    assert len(found) == 13, found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_code_executing_loader(path):
    assert problems(path) == []

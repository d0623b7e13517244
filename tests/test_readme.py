"""Every command README.md, docs/design.md and benchmarks/README.md show: the scripts, configuration files,
Makefile targets and test files exist, recipe configurations with their ``key=value`` overrides load, and a
script's ``--flags`` are its own.
(The Python examples are executed in tests/test_real.py; the demo's numbers come from running ``make demo``.)"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/design.md", "benchmarks/README.md")
INSTALL = ("python3 -m venv", "pip install", ".venv/bin/pip")  # need a network or a new venv: not run here


def commands() -> list[tuple[str, str]]:
    """(document, command): each line of a bash block, and each inline `python ...` command."""
    found = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            lines = block.replace("\\\n", " ").splitlines()  # a line ending in a backslash goes on
            found += [(doc, line.split("  #")[0].strip()) for line in lines if line.strip()]
        for inline in re.findall(r"`((?:\.venv/bin/)?python3? (?:recipes|benchmarks)/[^`]+)`", text):
            found.append((doc, inline))
    return found


def recipe_config(script: str, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import train

        config = args[args.index("--config") + 1]
        overrides = [a for a in args if "=" in a and not a.startswith("-") and "[" not in a.split("=", 1)[1][:1]]
        overrides += [a for a in args if re.fullmatch(r"[\w.]+=\[.*\]", a)]
        if script.endswith("train.py"):
            train.load_config(str(ROOT / config), sorted(set(overrides)))
    finally:
        sys.path.pop(0)


@pytest.mark.parametrize("doc,command", commands())
def test_every_command_shown_is_real(doc, command):
    if command.startswith(INSTALL):
        return
    words = shlex.split(command.replace("|", " "))
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert all(w in targets or "=" in w for w in words[1:]), f"{doc}: {command}: no such Makefile target"
        return
    for word in words:
        if word.startswith(("recipes/", "benchmarks/", "tests/", "docs/")):
            path = word.split("::")[0].strip("[]")
            assert (ROOT / path).exists(), f"{doc}: {command}: {path} does not exist"
    scripts = [w for w in words if w.endswith(".py") and (ROOT / w).exists()]
    assert scripts or words[0] in ("pytest", "llmhead"), f"{doc}: {command}: runs no script of this repository"
    for script in scripts:
        source = (ROOT / script).read_text()
        after = words[words.index(script) + 1 :]
        for flag in [w.split("=")[0] for w in after if w.startswith("--")]:
            assert f'"{flag}"' in source, f"{doc}: {command}: {script} has no option {flag}"
        if script.startswith("recipes/") and "--config" in after:
            recipe_config(script, after)

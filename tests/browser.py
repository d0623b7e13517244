"""Render a page in real headless Chromium (Debian's package; `make test` installs it) and report which images
loaded: a script put at the top of a copy of the page (before its Content-Security-Policy, which then still
applies to everything the page loads) records, after the load event, every <img> and whether it decoded
(naturalWidth > 0), and --dump-dom returns the DOM with that record."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROBE = (
    '<script>window.addEventListener("load", () => {'
    " const images = [...document.images];"
    " const ok = (i) => i.complete && i.naturalWidth > 0;"
    ' const record = document.createElement("pre"); record.id = "llmhead-check";'
    " record.textContent = JSON.stringify({images: images.length, loaded: images.filter(ok).length,"
    " broken: images.filter((i) => !ok(i)).map((i) => i.alt),"
    ' scripts: document.querySelectorAll("script").length});'
    " document.body.appendChild(record); });</script>"
)


def chromium() -> str:
    """The browser, or a skip (a failure under CI, where `make test` must have installed it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (make test installs it: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )


def rendered(page: Path) -> tuple[dict, str]:
    """(the image record, the DOM Chromium built) of ``page`` as a browser renders it."""
    text = page.read_text(encoding="utf-8")
    assert "<head>" in text
    probed = page.with_name(page.stem + ".probed.html")
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    try:
        dom = run(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()]).stdout
    finally:
        probed.unlink()
    found = re.search(r'<pre id="llmhead-check">(.*?)</pre>', dom, re.S)
    assert found, f"the page never finished loading in Chromium: {dom[-500:]!r}"
    return json.loads(html.unescape(found.group(1))), dom


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 3200) -> Path:
    run(["--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={out}", page.as_uri()])
    return out

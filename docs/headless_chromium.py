"""Headless Chromium for the pictures under docs/: the page's DOM after scripts ran (to
check a page shows what it should before it is kept) and a screenshot of it.

Needs Debian's `chromium` package (`apt-get install chromium`). Every run gets a fresh
profile, and the browser is kept off the network: the pages are local files.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# no first-run screens, no background traffic, no sandbox (which needs privileges a container lacks)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
TIMEOUT_S = 120


def default_chromium() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


def _run(chromium: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    return done.stdout


def dom(url: str, *, chromium: str) -> str:
    """The page's HTML as the browser holds it once loaded."""
    return _run(chromium, "--dump-dom", url)


def screenshot(url: str, out: Path, *, chromium: str, width: int, height: int) -> None:
    _run(chromium, f"--window-size={width},{height}", f"--screenshot={out}", url)

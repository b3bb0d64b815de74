"""A headless Chromium for the tests, driven over the DevTools protocol.

Where the browser comes from, in order (as :mod:`tests.pg` does for PostgreSQL):

1. ``/usr/bin/chromium`` (Debian's package), else ``chromium`` or ``chromium-browser`` on the PATH;
2. when there is none and the tests run as root on Debian (as CI does), the ``chromium``
   package, installed with ``apt-get install -y`` (after ``apt-get update`` when the
   package lists do not know it yet);
3. otherwise the tests that need a browser are skipped, saying why.

The browser runs with ``--remote-debugging-pipe``: the DevTools protocol travels as
NUL-terminated JSON messages over two pipes (the browser reads file descriptor 3 and
writes 4), so no port is opened and no websocket client is needed. It runs with a
throw-away profile and without anything that would reach the network on its own
(component updates, sync, background networking).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

APT_PACKAGE = "chromium"
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace to sandbox with
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-pipe",
    "--window-size=1200,900",
)
#: How long one protocol command or page load may take before the test fails.
STEP_TIMEOUT_S = 60.0


def find_browser() -> str | None:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def install() -> None:
    """Install Debian's Chromium, reading the package lists first when they do not know
    it (a fresh machine's are often empty). RuntimeError when that fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    known = subprocess.run(["apt-cache", "policy", APT_PACKAGE], capture_output=True, text=True, check=False)
    steps = [["apt-get", "install", "-y", "--quiet", APT_PACKAGE]]
    if "Candidate:" not in known.stdout or "Candidate: (none)" in known.stdout:
        steps.insert(0, ["apt-get", "update", "--quiet"])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env, check=False, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"installing Chromium failed: $ {' '.join(step)}\n{(done.stdout + done.stderr)[-4000:]}")


def browser_or_skip() -> str:
    """The browser's executable, installed first when that is possible (root on Debian)."""
    found = find_browser()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            "no Chromium (/usr/bin/chromium or chromium on the PATH), and it can only be installed here as "
            "root with apt-get; install Debian's 'chromium' package"
        )
    install()  # a failure fails the tests: where the browser can be installed, it must be
    found = find_browser()
    if found is None:
        raise RuntimeError(f"the '{APT_PACKAGE}' package is installed, but no chromium executable was found")
    return found


_MOVE_PIPES = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4);"
    " os.close(int(sys.argv[1])); os.close(int(sys.argv[2])); os.execv(sys.argv[3], sys.argv[3:])"
)


def _above_4(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 5)
    os.close(fd)
    return moved


class ProtocolError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


class Browser:
    """One headless Chromium and one page in it, attached over the protocol pipes."""

    def __init__(self, executable: str, profile: Path) -> None:
        self._log = (profile / "chromium.log").open("wb")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # above 4, so that moving one to 3 or 4 cannot overwrite the other; a small Python
        # program moves them there and becomes the browser (a shell would take only fds 0-9)
        to_browser_read, from_browser_write = (_above_4(fd) for fd in (to_browser_read, from_browser_write))
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _MOVE_PIPES,
                str(to_browser_read),
                str(from_browser_write),
                executable,
                *FLAGS,
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(to_browser_read, from_browser_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.session = ""
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call("Page.enable")
            self.call("Network.enable")
        except (OSError, ProtocolError) as err:
            self.close()
            output = (profile / "chromium.log").read_text(errors="replace")[-3000:]
            raise ProtocolError(f"the browser did not start: {err}\n{output}") from err

    # -- the protocol ---------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise ProtocolError("the browser did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise ProtocolError("the browser closed its protocol pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        found: dict[str, Any] = json.loads(message)
        return found

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command (to the page once attached) and return its result."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            command["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise ProtocolError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    def wait_for(self, event: str) -> dict[str, Any]:
        """The next event of this name (those already received count)."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            for i, message in enumerate(self._events):
                if message.get("method") == event:
                    del self._events[: i + 1]
                    params: dict[str, Any] = message.get("params", {})
                    return params
            self._events.append(self._read_message(deadline))

    # -- what the tests do ----------------------------------------------------------------------

    def set_headers(self, headers: dict[str, str]) -> None:
        """Send these headers with every request from now on (e.g. ``Authorization``)."""
        self.call("Network.setExtraHTTPHeaders", headers=headers)

    def open(self, url: str) -> None:
        """Load ``url`` and wait until the page has loaded."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise ProtocolError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """Click, with the mouse, in the middle of the first element matching ``selector``,
        and wait for the page it opens to load."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
            # the first box: a link that wraps over lines has nothing of it in the middle of them all
            " const r = e.getClientRects()[0]; return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        self._events.clear()
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        self.wait_for("Page.loadEventFired")

    def screenshot(self, path: Path, *, selector: str | None = None) -> None:
        """A PNG of the page (or of one element of it)."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            rect = self.evaluate(
                f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                " return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; })()"
            )
            params["clip"] = {"x": rect[0], "y": rect[1], "width": rect[2], "height": rect[3], "scale": 1}
            params["captureBeyondViewport"] = True
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))

    def close(self) -> None:
        with contextlib.suppress(ProtocolError, OSError):
            self.session = ""
            self.call("Browser.close")
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()


@contextlib.contextmanager
def running_browser() -> Iterator[Browser]:
    executable = browser_or_skip()
    profile = Path(tempfile.mkdtemp(prefix="gate-chromium-"))
    browser = Browser(executable, profile)
    try:
        yield browser
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """A fresh headless browser for one test."""
    with running_browser() as browser:
        yield browser

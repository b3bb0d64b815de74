"""Renderings of a Verdict: ``json`` (the gate.verdict/v1 contract), ``text`` (for people),
``markdown`` (pull-request comments, CI job summaries), ``junit`` (CI test reports) and
``html`` (one self-contained page with charts).

Every renderer is a pure ``render_X(verdict) -> str``: the same verdict gives the same output.

Each renderer's module is imported when its function (or :data:`RENDERERS`) is first
asked for, so a command printing one report loads that renderer alone: ``gate eval
--format json`` never imports the HTML page's charts or the JUnit writer's XML.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gate.report.html import render_html
    from gate.report.json import render_json
    from gate.report.junit import render_junit
    from gate.report.markdown import render_markdown
    from gate.report.text import render_text
    from gate.verdict import Verdict

    RENDERERS: dict[str, Callable[[Verdict], str]]

#: each format's renderer: ``render_<format>`` in ``gate.report.<format>``
_FORMATS = ("json", "text", "markdown", "junit", "html")


def renderer(fmt: str) -> Callable[[Verdict], str]:
    """The renderer of one format, importing its module alone (KeyError for an unknown one)."""
    if fmt not in _FORMATS:
        raise KeyError(fmt)
    render: Callable[[Verdict], str] = getattr(importlib.import_module(f"gate.report.{fmt}"), f"render_{fmt}")
    return render


def __getattr__(name: str) -> Any:
    """``RENDERERS`` and the ``render_<format>`` functions, imported on first use."""
    if name == "RENDERERS":
        renderers = {fmt: renderer(fmt) for fmt in _FORMATS}
        globals()["RENDERERS"] = renderers
        return renderers
    if name.startswith("render_") and name.removeprefix("render_") in _FORMATS:
        return renderer(name.removeprefix("render_"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RENDERERS", "render_html", "render_json", "render_junit", "render_markdown", "render_text", "renderer"]

"""Renderings of a Verdict: ``json`` (the gate.verdict/v1 contract), ``text`` (for people),
``markdown`` (pull-request comments, CI job summaries), ``junit`` (CI test reports) and
``html`` (one self-contained page with charts).

Every renderer is a pure ``render_X(verdict) -> str``: the same verdict gives the same output.
"""

from collections.abc import Callable

from gate.report.html import render_html
from gate.report.json import render_json
from gate.report.junit import render_junit
from gate.report.markdown import render_markdown
from gate.report.text import render_text
from gate.verdict import Verdict

RENDERERS: dict[str, Callable[[Verdict], str]] = {
    "json": render_json,
    "text": render_text,
    "markdown": render_markdown,
    "junit": render_junit,
    "html": render_html,
}

__all__ = ["RENDERERS", "render_html", "render_json", "render_junit", "render_markdown", "render_text"]

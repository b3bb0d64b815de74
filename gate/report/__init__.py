"""Renderings of a Verdict: ``json`` (the gate.verdict/v1 contract) and ``text`` (for people)."""

from gate.report.json import render_json
from gate.report.text import render_text

RENDERERS = {"json": render_json, "text": render_text}

__all__ = ["RENDERERS", "render_json", "render_text"]

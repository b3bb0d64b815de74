"""The frame every dashboard page shares: the style sheet, the navigation, badges,
links and the small pages (errors, login, "not available").

Every text that comes from the audit log, a request or a policy goes through
:func:`e` (HTML escaping, quotes included); every id or name put in a URL goes through
:func:`path_part` or :func:`query`. The pages carry no script at all, and the server
sends them with a Content-Security-Policy that forbids loading anything from anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import quote, urlencode

_STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328;
       background: #f6f8fa; line-height: 1.45; }
header { background: #24292f; color: #fff; }
header nav { max-width: 1200px; margin: 0 auto; padding: .7rem 1.5rem; display: flex; gap: 1.4rem;
             align-items: center; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header a.here { text-decoration: underline; }
header .who { margin-left: auto; font-size: .85rem; color: #d0d7de; display: flex; gap: .6rem; }
header form { margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: .5rem 1.5rem 3rem; }
h1 { font-size: 1.4rem; }
h2 { font-size: 1.15rem; margin: 1.8rem 0 .6rem; }
table { border-collapse: collapse; background: #fff; width: 100%; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, textarea { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em; }
.sha { word-break: break-all; color: #57606a; font-size: .8rem; }
.badge { display: inline-block; border-radius: 1rem; padding: .05rem .6rem; font-size: .8rem; font-weight: 700;
         color: #fff; background: #8c959f; }
.badge.pass { background: #1a7f37; }
.badge.fail { background: #cf222e; }
.badge.error { background: #d4a72c; color: #1f2328; }
.badge.waived, .badge.active { background: #8250df; }
.badge.pending { background: #0969da; }
form.replay label { display: block; font-size: .85rem; color: #57606a; }
details { margin: 1rem 0; }
form.filters { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end; margin: 1rem 0; }
form.filters label { display: flex; flex-direction: column; font-size: .8rem; color: #57606a; }
input, select, button, textarea { font: inherit; }
textarea { width: 100%; min-height: 16rem; }
.note { color: #57606a; font-size: .9rem; }
.problem { background: #fff8c5; border: 1px solid #d4a72c; padding: .8rem 1rem; }
.pager { margin: 1rem 0; }
svg.chart { background: #fff; border: 1px solid #d0d7de; max-width: 100%; height: auto; }
svg.chart .grid { stroke: #eaeef2; }
svg.chart .frame { fill: none; stroke: #8c959f; }
svg.chart .axis { stroke: #8c959f; }
svg.chart .mark { stroke: #8c959f; stroke-dasharray: 4 3; }
svg.chart text { font-size: 12px; fill: #57606a; }
svg.chart .legend { fill: #1f2328; }
"""

#: The sections of the navigation: path, title.
SECTIONS = (("/evaluations", "Evaluations"), ("/datasets", "Datasets"), ("/waivers", "Waivers"), ("/replay", "Replay"))


def e(value: object) -> str:
    """Text as HTML: escaped, quotes included (safe in element text and attribute values)."""
    return escape(str(value), quote=True)


def path_part(value: str) -> str:
    """One path segment of a URL: every character outside letters and digits quoted."""
    return quote(value, safe="")


def query(params: Mapping[str, str | Sequence[str]]) -> str:
    """``?a=1&b=2`` for the non-empty parameters; "" for none."""
    kept = {k: v for k, v in params.items() if v}
    return "?" + urlencode(kept, doseq=True) if kept else ""


def badge(decision: str | None, state: str) -> str:
    if decision is None:
        return '<span class="badge">running</span>'
    word = decision if state != "interrupted" else f"{decision} (interrupted)"
    return f'<span class="badge {e(decision.lower())}">{e(word)}</span>'


def page(title: str, body: Sequence[str], *, here: str = "", visitor: str | None = None) -> str:
    """A whole dashboard page."""
    links = [f'<a href="{path}"{" class=here" if path == here else ""}>{name}</a>' for path, name in SECTIONS]
    who = ""
    if visitor is not None:
        who = (
            f'<span class="who">token {e(visitor)} <form method="post" action="/logout">'
            '<button type="submit">Log out</button></form></span>'
        )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            '<head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(title)} · gate</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            f'<header><nav><a href="/evaluations"><strong>gate</strong></a>{"".join(links)}{who}</nav></header>',
            "<main>",
            *body,
            "</main>",
            "</body>",
            "</html>",
        ]
    )


def problem_page(status: int, reason: str, message: str) -> str:
    """The page of a refused or failed request."""
    return page(f"{status} {reason}", [f"<h1>{status} {e(reason)}</h1>", f'<p class="problem">{e(message)}</p>'])


def login_page(message: str) -> str:
    """The page a browser without a valid token gets: why, and a form to give one."""
    return page(
        "Log in",
        [
            "<h1>Log in</h1>",
            f'<p class="problem">{e(message)}</p>',
            '<form method="post" action="/login">',
            '<label>Token <input type="password" name="token" autocomplete="current-password" required></label>',
            '<button type="submit">Log in</button>',
            "</form>",
            '<p class="note">Any token this server accepts on its gRPC API opens the dashboard; a token with only'
            " the <code>read</code> role opens nothing else.</p>",
        ],
    )


def unavailable(title: str, here: str, what: str, *, visitor: str | None) -> str:
    """A section this server cannot show, saying why."""
    return page(
        title,
        [f"<h1>{e(title)}</h1>", f'<p class="problem">{e(what)} is not available on this server.</p>'],
        here=here,
        visitor=visitor,
    )

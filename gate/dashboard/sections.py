"""The waivers page and the replay of a pasted policy.

The waivers page lists every waiver the audit log records (:mod:`gate.waivers`), with its
state now: active, expired, revoked or pending. The replay page takes a policy pasted in
a form and shows what it would have decided on the recorded evaluations
(:func:`gate.replay.replay_store`: from the evidence each verdict kept, no model run, the
predictions tables from the server's results cache when a rule needs them); it records
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from gate.dashboard.layout import badge, e, page, path_part, query
from gate.errors import GateError

if TYPE_CHECKING:
    from gate.dashboard.server import Dashboard
    from gate.replay import ReplayReport, ReplayRow
    from gate.waivers import Waiver

#: The most evaluations one replay from the dashboard judges.
MAX_REPLAY = 5000
DEFAULT_REPLAY = 200
_WAIVER_FILTERS = ("model", "dataset")


class SectionError(ValueError):
    """A request the section cannot answer; the message says why (a 400)."""


def _waiver_row(waiver: Waiver, state: str) -> str:
    revoked = ""
    if waiver.revoked_at:
        revoked = f"{e(waiver.revoked_at)} by {e(waiver.revoked_by)}: {e(waiver.revoke_reason)}"
    return (
        f'<tr><td><code>{e(waiver.id)}</code></td><td><span class="badge {e(state)}">{e(state)}</span></td>'
        f'<td><a href="/evaluations{e(query({"model": waiver.model_sha256}))}" class="sha">'
        f"{e(waiver.model_sha256)}</a></td>"
        f'<td><a href="/datasets/{path_part(waiver.dataset)}">{e(waiver.dataset)}</a></td>'
        f"<td><code>{e(waiver.rule_id)}</code></td><td>{e(waiver.reason)}</td>"
        f"<td>{e(waiver.granted_by)}<br>{e(waiver.granted_at)}</td><td>{e(waiver.expires_at)}</td>"
        f"<td>{revoked}</td></tr>"
    )


def waivers(dashboard: Dashboard, params: Mapping[str, str], *, visitor: str | None) -> tuple[int, str]:
    """The status and page of ``GET /waivers`` (filters ``model`` and ``dataset``)."""
    from gate.waivers import utc_now

    unknown = sorted(set(params) - set(_WAIVER_FILTERS))
    if unknown:
        raise SectionError(f"unknown query parameter {unknown[0][:200]!r}; this page takes model and dataset")
    model = (params.get("model") or "").strip().lower() or None
    dataset = (params.get("dataset") or "").strip() or None
    found = dashboard.store.waivers(model_sha256=model, dataset=dataset)
    now = utc_now()
    body = ["<h1>Waivers</h1>"]
    if model or dataset:
        body.append(f'<p class="note">Only {e(model or dataset)}. <a href="/waivers">All waivers</a>.</p>')
    if found:
        body += [
            '<table class="waivers"><thead><tr><th>waiver</th><th>state</th><th>model</th><th>dataset</th>'
            "<th>rule</th><th>reason</th><th>granted</th><th>expires</th><th>revoked</th></tr></thead><tbody>",
            *(_waiver_row(w, w.state(now)) for w in found),
            "</tbody></table>",
        ]
    else:
        body.append('<p class="empty">No waiver is recorded.</p>')
    return 200, page("Waivers", body, here="/waivers", visitor=visitor)


# -- replay --------------------------------------------------------------------------------------


def _replay_form(form: Mapping[str, str]) -> str:
    return (
        '<form class="replay" method="post" action="/replay">'
        '<label>Policy (YAML)<textarea name="policy" required spellcheck="false">'
        f"{e(form.get('policy', ''))}</textarea></label>"
        '<p class="filters">'
        f'<label>dataset <input name="dataset" value="{e(form.get("dataset", ""))}" placeholder="every dataset">'
        "</label> "
        f'<label>since <input name="since" value="{e(form.get("since", ""))}" placeholder="2026-01-31"></label> '
        f'<label>at most <input name="limit" value="{e(form.get("limit", DEFAULT_REPLAY))}" size="6"></label> '
        '<button type="submit">Replay</button></p></form>'
    )


def _replay_row(row: ReplayRow) -> str:
    link = f'<a href="/evaluations/{path_part(row.evaluation_id)}">{e(row.evaluation_id)}</a>'
    new = badge(row.new, "done") if row.new is not None else f"not replayable: {e(row.reason)}"
    blocking = "<br>".join(e(b) for b in row.blocking)
    return (
        f"<tr><td>{link}</td><td>{e(row.created_at)}</td><td>{e(row.model_name or row.model_sha256[:12])}</td>"
        f"<td>{e(row.dataset)}</td><td>{e(row.policy)}</td><td>{badge(row.old, 'done')}</td><td>{new}</td>"
        f"<td>{blocking}</td></tr>"
    )


def _replay_table(rows: list[ReplayRow], css: str) -> str:
    return (
        f'<table class="{css}"><thead><tr><th>evaluation</th><th>accepted</th><th>model</th><th>dataset</th>'
        "<th>recorded under</th><th>recorded</th><th>replayed</th><th>blocking under the pasted policy</th>"
        "</tr></thead><tbody>" + "".join(_replay_row(r) for r in rows) + "</tbody></table>"
    )


def _report(report: ReplayReport) -> list[str]:
    changed = [r for r in report.rows if r.change != "same"]
    same = [r for r in report.rows if r.change == "same"]
    out = [f"<h2>Policy {e(report.policy.get('name'))}</h2>", f'<p class="summary">{e(report.summary())}</p>']
    if changed:
        out += ["<h3>Would change, or cannot be replayed</h3>", _replay_table(changed, "replay changed")]
    if same:
        out += [
            f"<details><summary>{len(same)} with the same verdict</summary>",
            _replay_table(same, "replay same"),
            "</details>",
        ]
    return out


def _options(form: Mapping[str, str]) -> tuple[str | None, str | None, int]:
    from gate.replay import parse_since

    dataset = form.get("dataset", "").strip() or None
    since = parse_since(form["since"]) if form.get("since", "").strip() else None
    text = form.get("limit", "").strip() or str(DEFAULT_REPLAY)
    if not text.isdigit() or not 1 <= int(text) <= MAX_REPLAY:
        raise SectionError(f"at most: give a number of evaluations from 1 to {MAX_REPLAY}, not {text[:50]!r}")
    return dataset, since, int(text)


def replay(dashboard: Dashboard, form: Mapping[str, list[str]] | None, *, visitor: str | None) -> tuple[int, str]:
    """The status and page of ``GET /replay`` (``form`` None) and ``POST /replay``."""
    from gate.policy.schema import parse_policy
    from gate.replay import replay_store

    fields = {k: v[0] for k, v in (form or {}).items() if v}
    body = [
        "<h1>Replay a policy</h1>",
        '<p class="note">Paste a policy: each recorded evaluation is judged again from the evidence its verdict'
        " kept, no model is run, and nothing is recorded.</p>",
        _replay_form(fields),
    ]
    status = 200
    if form is not None:
        try:
            dataset, since, limit = _options(fields)
            policy = parse_policy(fields.get("policy", ""), source="<pasted>")
            report = replay_store(
                dashboard.store,
                policy,
                results=dashboard.config.cache_dir / "results",
                dataset=dataset,
                since=since,
                limit=limit,
            )
            body += _report(report)
        except (GateError, SectionError) as err:
            status = 400
            message = err.message if isinstance(err, GateError) else str(err)
            body.append(f'<pre class="problem">{e(message)}</pre>')
    return status, page("Replay a policy", body, here="/replay", visitor=visitor)

"""The dashboard's waivers page and its replay of a pasted policy, in a real headless
Chromium, over the audit log of a real server that evaluated real models (the fixtures
of ``tests/test_dashboard.py``): the evaluations the default policy failed, replayed under
a lenient policy, would now pass; a recorded waiver is listed with its state."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from gate.dashboard import Dashboard
from gate.store import open_store
from gate.waivers import new_waiver, utc_now
from tests import test_dashboard
from tests.chromium import Browser
from tests.test_dashboard import READ_TOKEN, TOKENS, Evaluated, fetch

# fixtures: the evaluated server's audit log, dashboards over it, a headless browser
evaluated = test_dashboard.evaluated
dashboard = test_dashboard.dashboard
chromium = test_dashboard.chromium

LENIENT = """version: 1
name: lenient
rules:
  - {id: some-accuracy, type: metric, metric: accuracy, min: 0.5}
"""


def test_a_pasted_policy_is_replayed_over_the_recorded_evaluations(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser
) -> None:
    board = dashboard()
    chromium.open(board.url + "replay")
    chromium.evaluate(f"document.querySelector('textarea[name=policy]').value = {json.dumps(LENIENT)}")
    chromium.click("form.replay button[type=submit]")
    assert chromium.evaluate("document.querySelector('.summary').textContent") == (
        "4 evaluations: 0 would now FAIL, 2 would now PASS"
    )
    changed = chromium.evaluate(
        "[...document.querySelectorAll('table.replay.changed tbody tr')]"
        ".map(r => [r.cells[0].textContent, r.cells[5].textContent, r.cells[6].textContent])"
    )
    assert changed == [
        [evaluated.ids["ccc333"], "FAIL", "PASS"],
        [evaluated.ids["bbb222"], "FAIL", "PASS"],
    ]
    assert chromium.evaluate("document.querySelectorAll('table.replay.same tbody tr').length") == 2
    # the pasted policy stays in the form, to be edited and replayed again
    assert chromium.evaluate("document.querySelector('textarea[name=policy]').value") == LENIENT
    assert chromium.evaluate("performance.getEntriesByType('resource').length") == 0


def test_a_policy_that_does_not_parse_is_refused_with_its_problem(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser
) -> None:
    board = dashboard()
    chromium.open(board.url + "replay")
    chromium.evaluate("document.querySelector('textarea[name=policy]').value = 'version: 1\\nname: x\\nrules: []\\n'")
    chromium.click("form.replay button[type=submit]")
    assert "the rule list is empty" in chromium.evaluate("document.querySelector('.problem').textContent")
    assert chromium.evaluate("document.querySelector('.summary')") is None


def test_replay_needs_a_token_when_tokens_are_configured(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated
) -> None:
    import urllib.request

    board = dashboard(tokens=TOKENS)
    body = urllib.parse.urlencode({"policy": LENIENT}).encode()
    for headers, status in (({}, 401), ({"Authorization": f"Bearer {READ_TOKEN}"}, 200)):
        request = urllib.request.Request(board.url + "replay", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                code, html = reply.status, reply.read().decode()
        except urllib.error.HTTPError as err:
            code, html = err.code, err.read().decode()
        assert code == status
        assert ("would now PASS" in html) == (status == 200)


def test_the_waivers_page_lists_each_waiver_with_its_state(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser
) -> None:
    board = dashboard()
    status, html, _ = fetch(board.url + "waivers")
    assert status == 200 and "No waiver is recorded." in html
    with open_store(evaluated.config.store_target) as store:
        record = store.get(evaluated.ids["bbb222"])
        assert record is not None
        waiver = new_waiver(
            model_sha256=record.model_sha256,
            dataset="pets",
            rule_id="recall-floor",
            reason="hotfix <b>#4390</b>: rabbits come back next week",
            expires=(utc_now() + dt.timedelta(days=7)).date().isoformat(),
            granted_by="operator",
            now=utc_now(),
        )
        store.record_waiver(waiver)
    chromium.open(board.url + "waivers")
    rows = chromium.evaluate(
        "[...document.querySelectorAll('table.waivers tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
    )
    assert len(rows) == 1
    assert rows[0][:6] == [
        waiver.id,
        "active",
        record.model_sha256,
        "pets",
        "recall-floor",
        "hotfix <b>#4390</b>: rabbits come back next week",
    ]
    # the model links to its evaluations
    chromium.click("table.waivers a.sha")
    assert chromium.evaluate("document.querySelectorAll('a.report-link').length") == 1
    status, html, _ = fetch(board.url + "waivers?dataset=cars")
    assert status == 200 and "No waiver is recorded." in html
    assert fetch(board.url + "waivers?color=red")[0] == 400

"""The web dashboard, end to end: a real gate server evaluates real ONNX models, and the
dashboard serves what its audit log recorded, to a real headless Chromium (see
``tests/chromium.py``) and to plain HTTP requests: the list and its filters, a click that
opens the report, the per-dataset recall chart, tokens and TLS.

Set ``GATE_DASHBOARD_SCREENSHOTS=1`` to refresh the screenshots in ``docs/``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.client import GateClient, GateClientError
from gate.config import ConfigError, ServerConfig, TokenEntry, load_config
from gate.dashboard import Dashboard
from gate.server import create_server
from gate.store import open_store
from gate.tokens import token_sha256
from tests import chromium as browsers
from tests import test_auth
from tests.chromium import Browser
from tests.conftest import ROOT, Served, write_pets
from tests.models import lookup_model, one_hot_rows, table_model
from tests.test_auth import Pki

READ_TOKEN = "read-token-5c2e8f0a1b"
SUBMIT_TOKEN = "submit-token-9d4b7e3c6f"
TOKENS = [
    {"name": "wallboard", "sha256": token_sha256(READ_TOKEN), "roles": ["read"]},
    {"name": "ci", "sha256": token_sha256(SUBMIT_TOKEN), "roles": ["submit"]},
]
SCREENSHOTS = os.environ.get("GATE_DASHBOARD_SCREENSHOTS") == "1"

# fixtures: a headless browser, and certificates from a test CA
chromium = browsers.chromium
pki = test_auth.pki


@dataclass(frozen=True)
class Evaluated:
    """A server's audit log holding four finished evaluations of three models on ``pets``."""

    config: ServerConfig
    ids: dict[str, str]  # git_sha label -> evaluation id
    verdicts: dict[str, str]  # evaluation id -> PASS / FAIL


def _models() -> list[tuple[str, bytes, str]]:
    """(git sha, model, name): the accurate model, one that calls every rabbit a cat, one
    that calls every dog a cat, and the accurate one again."""
    return [
        ("aaa111", lookup_model(3), "good.onnx"),
        ("bbb222", table_model(one_hot_rows([0, 1, 0], 3)), "no-rabbits.onnx"),
        ("ccc333", table_model(one_hot_rows([0, 0, 2], 3)), "no-dogs.onnx"),
        ("ddd444", lookup_model(3), "good.onnx"),
    ]


def evaluate_on_a_server(
    root: Path, runs: Sequence[tuple[bytes, str, dict[str, Any]]]
) -> tuple[ServerConfig, list[str]]:
    """Evaluate each (model, name, labels) on ``pets`` with the default policy, in turn, on
    a real server whose files are under ``root``; its configuration and the evaluation
    ids. The server is stopped: its audit log stays."""
    write_pets(root)
    settings = {
        "listen": "127.0.0.1:0",
        "data_dir": "data",
        "datasets": ["datasets"],
        "policies": [str(ROOT / "policies")],
    }
    (root / "gate.yaml").write_text(yaml.safe_dump(settings))
    config = load_config(root / "gate.yaml")
    server, port = create_server(config)
    try:
        with GateClient(f"127.0.0.1:{port}", timeout=120) as client:
            return config, [
                client.evaluate(
                    client.upload_model(model).sha256, "pets", policy_name="default", labels=labels, model_name=name
                ).evaluation_id
                for model, name, labels in runs
            ]
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    runs = [(model, name, {"git_sha": sha}) for sha, model, name in _models()]
    config, ids = evaluate_on_a_server(tmp_path_factory.mktemp("dashboard"), runs)
    with open_store(config.store_target) as store:
        verdicts = {i: (store.get(i) or pytest.fail(f"{i} was not recorded")).decision or "" for i in ids}
    return Evaluated(config, {sha: i for (sha, _, _), i in zip(_models(), ids, strict=True)}, verdicts)


@pytest.fixture
def dashboard(evaluated: Evaluated) -> Iterator[Callable[..., Dashboard]]:
    """Start dashboards over the evaluated server's audit log, with these settings changed."""
    started: list[Dashboard] = []

    def start(**settings: Any) -> Dashboard:
        if "tokens" in settings:
            settings["tokens"] = [TokenEntry(**t) for t in settings["tokens"]]
        config = evaluated.config.model_copy(update=settings)
        board = Dashboard(config, listen="127.0.0.1:0")
        board.start()
        started.append(board)
        return board

    yield start
    for board in started:
        board.stop()


def fetch(
    url: str, *, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers of a GET (an error status is an answer, not an exception)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:
            return reply.status, reply.read().decode(), dict(reply.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def table_ids(html: str) -> list[str]:
    return re.findall(r'class="report-link" href="/evaluations/[^"]+">([^<]+)</a>', html)


def assert_self_contained(browser: Browser) -> None:
    """The page fetched nothing but itself, and links only to this server or data: URIs."""
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
    targets = browser.evaluate(
        "[...document.querySelectorAll('[src],[href],[action]')]"
        ".map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('action'))"
    )
    outside = [t for t in targets if not t.startswith(("/", "?", "#", "data:"))]
    assert not outside, outside


# -- in the browser ------------------------------------------------------------------------------


def test_the_list_shows_every_evaluation_and_a_click_opens_its_report(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser
) -> None:
    board = dashboard()
    chromium.open(board.url + "evaluations")
    assert_self_contained(chromium)
    shown = chromium.evaluate(
        "[...document.querySelectorAll('table.evaluations a.report-link')].map(a => a.textContent)"
    )
    # newest first
    assert shown == [evaluated.ids[sha] for sha in ("ddd444", "ccc333", "bbb222", "aaa111")]
    badges = chromium.evaluate("[...document.querySelectorAll('table.evaluations .badge')].map(b => b.textContent)")
    assert badges == ["PASS", "FAIL", "FAIL", "PASS"]
    assert [evaluated.verdicts[i] for i in shown] == badges

    chromium.click(f'a.report-link[href="/evaluations/{evaluated.ids["bbb222"]}"]')
    assert chromium.evaluate("location.pathname") == f"/evaluations/{evaluated.ids['bbb222']}"
    assert chromium.evaluate("document.querySelector('.banner .word').textContent") == "FAIL"
    assert "rabbit" in chromium.evaluate("document.querySelector('main').textContent")
    assert chromium.evaluate("document.querySelectorAll('img[src^=\"data:image/png\"]').length") > 0
    assert_self_contained(chromium)
    if SCREENSHOTS:
        chromium.open(board.url + "evaluations")
        chromium.screenshot(ROOT / "docs" / "dashboard-list.png")


def test_the_dataset_page_charts_per_class_recall_over_time(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser, tmp_path: Path
) -> None:
    board = dashboard()
    chromium.open(board.url + "datasets")
    chromium.click('a[href="/datasets/pets"]')
    assert_self_contained(chromium)
    size = chromium.evaluate(
        "(() => { const r = document.querySelector('svg.chart').getBoundingClientRect();"
        " return [r.width, r.height]; })()"
    )
    assert size[0] > 400 and size[1] > 200  # drawn, at a readable size
    series = chromium.evaluate("[...document.querySelectorAll('svg.chart g.series')].map(g => g.dataset.name)")
    assert series == ["cat", "dog", "rabbit"]
    # a point per evaluation on every line; the rabbit line dips to 0 with the model that never says rabbit
    points = chromium.evaluate(
        "[...document.querySelectorAll('svg.chart g.series')].map(g => g.querySelectorAll('circle').length)"
    )
    assert points == [4, 4, 4]
    rabbit = chromium.evaluate(
        "[...document.querySelectorAll('svg.chart g.series[data-name=rabbit] circle title')].map(t => t.textContent)"
    )
    assert sum("rabbit: 0.000 · no-rabbits.onnx" in t for t in rabbit) == 1
    # where the model changes: good → no-rabbits → no-dogs → good
    assert chromium.evaluate("document.querySelectorAll('svg.chart line.mark').length") == 4
    shot = ROOT / "docs" / "dashboard-recall.png" if SCREENSHOTS else tmp_path / "chart.png"
    chromium.screenshot(shot, selector="figure.recall-chart")
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_the_filters_select_by_dataset_policy_verdict_and_label(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser
) -> None:
    board = dashboard()
    chromium.open(board.url + "evaluations")
    chromium.evaluate(
        "document.querySelector('select[name=verdict]').value = 'FAIL';"
        "document.querySelector('input[name=label]').value = 'git_sha=ccc333'"
    )
    chromium.click("form.filters button[type=submit]")
    assert chromium.evaluate("location.search") == "?dataset=&policy=&verdict=FAIL&model=&label=git_sha%3Dccc333"
    assert chromium.evaluate("[...document.querySelectorAll('a.report-link')].map(a => a.textContent)") == [
        evaluated.ids["ccc333"]
    ]
    ids = evaluated.ids
    for filters, expected in [
        ("verdict=FAIL", [ids["ccc333"], ids["bbb222"]]),
        ("verdict=pass&dataset=pets&policy=default", [ids["ddd444"], ids["aaa111"]]),
        ("label=git_sha%3Daaa111", [ids["aaa111"]]),
        ("dataset=cars", []),
        ("policy=recall-critical", []),
        ("label=team%3Dvision", []),
    ]:
        status, html, _ = fetch(f"{board.url}evaluations?{filters}")
        assert status == 200 and table_ids(html) == expected, filters


def test_pages_of_the_list_follow_one_another(evaluated: Evaluated) -> None:
    from gate.dashboard.queries import Filters, list_evaluations
    from gate.store import open_store

    with open_store(evaluated.config.store_target) as store:
        seen: list[str] = []
        after = None
        while True:
            page = list_evaluations(store, Filters(after=after), limit=3)
            seen += [r.evaluation_id for r in page.records]
            if page.older is None:
                break
            after = page.older
        labelled = list_evaluations(store, Filters(label=("git_sha", "bbb222")), limit=1)
    assert seen == [evaluated.ids[sha] for sha in ("ddd444", "ccc333", "bbb222", "aaa111")]
    assert [r.evaluation_id for r in labelled.records] == [evaluated.ids["bbb222"]]


def test_the_verdict_document_is_served_as_recorded(dashboard: Callable[..., Dashboard], evaluated: Evaluated) -> None:
    board = dashboard()
    evaluation_id = evaluated.ids["aaa111"]
    status, body, headers = fetch(f"{board.url}evaluations/{evaluation_id}/verdict.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    document = json.loads(body)
    assert document["evaluation_id"] == evaluation_id and document["labels"] == {"git_sha": "aaa111"}


# -- tokens ----------------------------------------------------------------------------------------


def test_without_a_token_nothing_is_shown_when_tokens_are_configured(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser
) -> None:
    board = dashboard(tokens=TOKENS)
    for path in ("", "evaluations", f"evaluations/{evaluated.ids['aaa111']}", "datasets/pets", "waivers", "replay"):
        status, html, headers = fetch(board.url + path)
        assert status == 401, path
        assert headers["WWW-Authenticate"] == 'Bearer realm="gate dashboard"'
        assert evaluated.ids["aaa111"] not in html and "pets" not in html
    for bad in ("Bearer not-a-token", "Basic cmVhZDp4", f"Bearer {READ_TOKEN} extra", "Bearer"):
        status, html, _ = fetch(board.url + "evaluations", headers={"Authorization": bad})
        assert status == 401 and not table_ids(html), bad
    status, _, _ = fetch(board.url + "evaluations", headers={"Cookie": "gate_token=not-a-token"})
    assert status == 401

    chromium.open(board.url + "evaluations")
    assert chromium.evaluate("document.querySelector('table.evaluations')") is None
    assert chromium.evaluate("document.querySelector('form[action=\"/login\"] input[name=token]') !== null")


@pytest.mark.parametrize("token", [READ_TOKEN, SUBMIT_TOKEN])
def test_any_role_may_read(dashboard: Callable[..., Dashboard], evaluated: Evaluated, token: str) -> None:
    board = dashboard(tokens=TOKENS)
    status, html, _ = fetch(board.url + "evaluations", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and len(table_ids(html)) == 4


def test_a_browser_logs_in_with_a_token_and_out_again(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser
) -> None:
    board = dashboard(tokens=TOKENS)
    chromium.open(board.url + "login")
    chromium.evaluate("document.querySelector('input[name=token]').value = 'wrong-token'")
    chromium.click("form[action='/login'] button")
    assert "not valid" in chromium.evaluate("document.querySelector('.problem').textContent")
    chromium.evaluate(f"document.querySelector('input[name=token]').value = {json.dumps(READ_TOKEN)}")
    chromium.click("form[action='/login'] button")
    assert chromium.evaluate("location.pathname") == "/evaluations"
    assert chromium.evaluate("document.querySelectorAll('a.report-link').length") == 4
    assert "wallboard" in chromium.evaluate("document.querySelector('header .who').textContent")
    assert chromium.evaluate("document.cookie") == ""  # HttpOnly: no script could read the token
    chromium.click("header .who button")
    assert chromium.evaluate("location.pathname") == "/login"
    chromium.open(board.url + "evaluations")
    assert chromium.evaluate("document.querySelector('table.evaluations')") is None


def test_a_bearer_header_opens_the_pages_in_a_browser(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, chromium: Browser
) -> None:
    board = dashboard(tokens=TOKENS)
    chromium.set_headers({"Authorization": f"Bearer {READ_TOKEN}"})
    chromium.open(board.url + "datasets/pets")
    assert chromium.evaluate("document.querySelectorAll('svg.chart g.series').length") == 3


def test_a_read_token_may_not_use_the_grpc_api(serve: Callable[..., Served]) -> None:
    served = serve(tokens=TOKENS)
    with (
        GateClient(served.address, timeout=30, token=READ_TOKEN) as client,
        pytest.raises(GateClientError) as refused,
    ):
        client.list_verdicts()
    assert refused.value.code == "PERMISSION_DENIED"
    assert "token 'wallboard' may not call ListVerdicts: that needs the 'submit' role" in refused.value.details
    with GateClient(served.address, timeout=30, token=SUBMIT_TOKEN) as client:
        assert client.list_verdicts() == []


# -- TLS -------------------------------------------------------------------------------------------


def test_tls_as_the_grpc_api_has_it(dashboard: Callable[..., Dashboard], evaluated: Evaluated, pki: Pki) -> None:
    board = dashboard(tls_cert=pki.server_cert, tls_key=pki.server_key, tokens=TOKENS)
    assert board.url.startswith("https://")
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    status, html, _ = fetch(
        board.url + "evaluations", headers={"Authorization": f"Bearer {READ_TOKEN}"}, context=trusting
    )
    assert status == 200 and len(table_ids(html)) == 4
    # a client that does not trust the server's CA stops at the handshake
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(board.url + "evaluations", context=ssl.create_default_context(cafile=str(pki.other_ca)))
    # plain HTTP to the TLS port gets no page
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        fetch(board.url.replace("https://", "http://") + "evaluations")


def test_mutual_tls_wants_a_client_certificate_signed_by_the_ca(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, pki: Pki
) -> None:
    board = dashboard(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    known = ssl.create_default_context(cafile=str(pki.ca))
    known.load_cert_chain(pki.client_cert, pki.client_key)
    status, html, _ = fetch(board.url + "evaluations", context=known)
    assert status == 200 and len(table_ids(html)) == 4
    stranger = ssl.create_default_context(cafile=str(pki.ca))
    stranger.load_cert_chain(pki.stranger_cert, pki.stranger_key)
    for context in (ssl.create_default_context(cafile=str(pki.ca)), stranger):
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            fetch(board.url + "evaluations", context=context)


def test_the_browser_reads_the_dashboard_over_tls(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, pki: Pki, chromium: Browser
) -> None:
    board = dashboard(tls_cert=pki.server_cert, tls_key=pki.server_key)
    chromium.call("Security.setIgnoreCertificateErrors", ignore=True)  # the test CA is not the browser's
    chromium.open(board.url + "evaluations")
    assert chromium.evaluate("location.protocol") == "https:"
    assert chromium.evaluate("document.querySelectorAll('a.report-link').length") == 4


# -- the setting -----------------------------------------------------------------------------------


def test_http_listen_from_the_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATE_HTTP_LISTEN", raising=False)
    f = tmp_path / "gate.yaml"
    f.write_text("data_dir: data\n")
    assert load_config(f).http_listen is None
    f.write_text("data_dir: data\nhttp_listen: 0.0.0.0:8080\n")
    assert load_config(f).http_listen == "0.0.0.0:8080"
    monkeypatch.setenv("GATE_HTTP_LISTEN", "127.0.0.1:9090")
    assert load_config(f).http_listen == "127.0.0.1:9090"
    monkeypatch.setenv("GATE_HTTP_LISTEN", "8080")
    with pytest.raises(ConfigError, match="http_listen"):
        load_config(f)


def test_a_role_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text(yaml.safe_dump({"tokens": [{"name": "x", "sha256": "0" * 64, "roles": ["reader"]}]}))
    with pytest.raises(ConfigError, match=r"tokens\.0\.roles\.0"):
        load_config(f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_gate_serve_starts_the_dashboard_when_http_listen_is_set(tmp_path: Path) -> None:
    write_pets(tmp_path)
    f = tmp_path / "gate.yaml"
    f.write_text(f"data_dir: data\ndatasets: [datasets]\npolicies: [{ROOT / 'policies'}]\n")
    url = f"http://127.0.0.1:{_free_port()}/evaluations"
    env = {**os.environ, "GATE_HTTP_LISTEN": url.split("/")[2]}
    command = [sys.executable, "-m", "gate", "serve", "--config", str(f), "--listen", "127.0.0.1:0"]
    with subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL) as proc:
        try:
            answer = None
            for _ in range(600):  # the server starts within a minute
                try:
                    answer = fetch(url)
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert proc.poll() is None, "gate serve stopped"
                    time.sleep(0.1)
            assert answer is not None and answer[0] == 200
            assert "No evaluation matches these filters." in answer[1]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 303),
        ("GET", "/nowhere", 404),
        ("GET", "/evaluations/x/y", 404),
        ("GET", "/datasets/pets/extra", 404),
        ("POST", "/evaluations", 405),
        ("GET", "/logout", 405),
        ("PUT", "/evaluations", 501),
    ],
)
def test_what_the_dashboard_does_not_serve(
    dashboard: Callable[..., Dashboard], evaluated: Evaluated, method: str, path: str, status: int
) -> None:
    import http.client

    board = dashboard()
    connection = http.client.HTTPConnection(board.host, board.port, timeout=30)
    connection.request(method, path, body=b"" if method != "GET" else None)
    reply = connection.getresponse()
    reply.read()
    connection.close()
    assert reply.status == status
    if status == 303:
        assert reply.headers["Location"] == "/evaluations"
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_a_dashboard_open_to_the_network_without_tokens_or_tls_warns(
    evaluated: Evaluated, caplog: pytest.LogCaptureFixture
) -> None:
    with Dashboard(evaluated.config, listen="0.0.0.0:0") as board:
        board.start()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("anyone who reaches" in w for w in warnings)
    assert any("clear text" in w for w in warnings)

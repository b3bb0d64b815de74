"""The bad-input corpus, the web dashboard: hostile and careless HTTP requests, and
records whose names and labels carry HTML, each against a real dashboard over a real
audit log (see the section "Attacks: the dashboard" of docs/bad-input-corpus.md, which
lists every case here with its outcome: ``doc_expectations``).

The HTML cases are checked in a real headless Chromium: what a record holds shows as
text, and the page runs no script and holds no element a name smuggled in.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gate.config import TokenEntry
from gate.dashboard import Dashboard
from gate.store import open_store
from gate.tokens import token_sha256
from gate.verdict import Decision, Verdict
from tests import chromium as browsers
from tests import test_auth
from tests.chromium import Browser
from tests.models import lookup_model
from tests.test_auth import Pki
from tests.test_dashboard import evaluate_on_a_server

TOKEN = "corpus-read-token-31f9"
SCRIPT = "<script>document.title='owned'</script>"
IMG = '"><img src=x onerror="document.title=\'owned\'">'
CLASS_NAMES = [SCRIPT, IMG, "rabbit & 'hare'"]

# fixtures: a headless browser, and certificates from a test CA
chromium = browsers.chromium
pki = test_auth.pki


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {
        "dashboard-path-traversal": ("`404`", "no evaluation with id"),
        "dashboard-huge-request-line": ("`414`",),
        "dashboard-long-filter-value": ("`400`", "the limit is 512"),
        "dashboard-many-query-parameters": ("`400`", "at most 64 query parameters"),
        "dashboard-repeated-parameter": ("`400`", "is given 2 times"),
        "dashboard-unknown-verdict": ("`400`", "verdict must be one of PASS, FAIL, ERROR"),
        "dashboard-unknown-page-start": ("`400`", "no evaluation with id"),
        "dashboard-bad-tokens": ("`401`", "the token is not valid here"),
        "dashboard-huge-form": ("`413`", "the limit is 3145728"),
        "dashboard-cross-site-form": ("`403`", "a form from another site may not be sent here"),
        "dashboard-html-in-labels": ("`200`", "shown as text"),
        "dashboard-html-in-names": ("`200`", "shown as text"),
        "dashboard-stalled-tls-handshake": ("`200`", "served meanwhile"),
    }


@dataclass(frozen=True)
class Corpus:
    board: Dashboard
    evaluation_id: str  # a real evaluation with HTML in its labels
    forged_id: str  # a record written straight to the audit log with HTML in every name


def _record_with_html_names(store_target: str) -> str:
    """A FAIL recorded through the audit log's own API, as an older server or another
    writer of the database could have left it: HTML in the model, dataset, policy and
    class names."""
    verdict = Verdict(
        decision=Decision.FAIL,
        model={"sha256": "ab" * 32, "path": SCRIPT},
        dataset={"name": IMG, "classes": CLASS_NAMES},
        policy={"name": SCRIPT},
        metrics={
            "samples": 3,
            "accuracy": 0.0,
            "per_class": {name: {"recall": 0.5, "precision": 0.5, "support": 1} for name in CLASS_NAMES},
        },
        evaluation_id="forged-1",
        labels={"git_sha": IMG},
    ).to_dict()
    with open_store(store_target) as store:
        store.record_accepted(
            evaluation_id="forged-1",
            model_sha256="ab" * 32,
            model_name=SCRIPT,
            dataset=IMG,
            policy=SCRIPT,
            labels={"git_sha": IMG, "extra": {SCRIPT: IMG}},
            requested_provider="cpu",
        )
        store.record_result("forged-1", verdict)
    return "forged-1"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    labels = {"git_sha": SCRIPT, "pipeline_id": IMG, "extra": {IMG: SCRIPT}}
    config, (evaluation_id,) = evaluate_on_a_server(
        tmp_path_factory.mktemp("corpus-dashboard"), [(lookup_model(3), IMG, labels)]
    )
    forged = _record_with_html_names(config.store_target)
    tokens = [TokenEntry(name="corpus", sha256=token_sha256(TOKEN), roles=("read",))]
    with Dashboard(config.model_copy(update={"tokens": tokens}), listen="127.0.0.1:0") as board:
        board.start()
        yield Corpus(board, evaluation_id, forged)


def _request(
    board: Dashboard, method: str, target: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, str]:
    connection = http.client.HTTPConnection(board.host, board.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in {"Authorization": f"Bearer {TOKEN}", **(headers or {})}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        reply = connection.getresponse()
        return reply.status, reply.read().decode("utf-8", errors="replace")
    finally:
        connection.close()


# -- requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/evaluations/..%2F..%2F..%2Fetc%2Fpasswd",
        "/evaluations/%2e%2e",
        "/../../../etc/passwd",
        "/evaluations/../../gate.yaml",
        "/datasets/..%2F..%2Fdata%2Faudit.sqlite3/",
        "/evaluations/%00",
    ],
)
def test_path_traversal_reads_no_file(corpus: Corpus, target: str) -> None:
    status, html = _request(corpus.board, "GET", target)
    assert status in (400, 404), target
    assert "root:" not in html and "SQLite format" not in html and "data_dir" not in html


def test_path_traversal_names_the_missing_evaluation(corpus: Corpus) -> None:
    status, html = _request(corpus.board, "GET", "/evaluations/..%2F..%2Fetc%2Fpasswd")
    assert status == 404 and "no evaluation with id &#x27;../../etc/passwd&#x27;" in html


def test_a_huge_request_line_is_refused(corpus: Corpus) -> None:
    status, _ = _request(corpus.board, "GET", "/evaluations?dataset=" + "a" * 70_000)
    assert status == 414
    # the server still answers
    assert _request(corpus.board, "GET", "/evaluations")[0] == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("dataset=" + "x" * 5000, "dataset is 5000 characters long; the limit is 512"),
        ("&".join(f"p{i}=1" for i in range(100)), "at most 64 query parameters"),
        ("verdict=PASS&verdict=FAIL", "query parameter &#x27;verdict&#x27; is given 2 times"),
        ("verdict=MAYBE", "verdict must be one of PASS, FAIL, ERROR, not &#x27;MAYBE&#x27;"),
        ("after=never-recorded", "no evaluation with id &#x27;never-recorded&#x27; to list from"),
        ("label=no-equals-sign", "label must be KEY=VALUE"),
        ("color=red", "unknown query parameter &#x27;color&#x27;"),
    ],
)
def test_query_strings_the_list_cannot_use(corpus: Corpus, query: str, message: str) -> None:
    status, html = _request(corpus.board, "GET", "/evaluations?" + query)
    assert status == 400 and message in html


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN} {TOKEN}"},
        {"Authorization": "Bearer " + "x" * 8000},
        {"Authorization": "", "Cookie": f"gate_token={TOKEN}x"},
        {"Authorization": "", "Cookie": 'gate_token="<script>"; other=1'},
        {"Authorization": "", "Cookie": "gate_token=" + "y" * 4000},
    ],
)
def test_bad_tokens_see_nothing(corpus: Corpus, headers: dict[str, str]) -> None:
    if headers.get("Authorization") == "":
        del headers["Authorization"]
        connection = http.client.HTTPConnection(corpus.board.host, corpus.board.port, timeout=30)
        connection.request("GET", "/evaluations", headers=headers)
        reply = connection.getresponse()
        status, html = reply.status, reply.read().decode()
        connection.close()
    else:
        status, html = _request(corpus.board, "GET", "/evaluations", headers=headers)
    assert status == 401
    assert corpus.evaluation_id not in html and "report-link" not in html


def test_an_unknown_token_is_told_it_is_not_valid(corpus: Corpus) -> None:
    status, html = _request(corpus.board, "GET", "/evaluations", headers={"Authorization": "Bearer wrong-token"})
    assert status == 401 and "the token is not valid here" in html


def test_two_authorization_headers_are_refused(corpus: Corpus) -> None:
    connection = http.client.HTTPConnection(corpus.board.host, corpus.board.port, timeout=30)
    connection.putrequest("GET", "/evaluations")
    connection.putheader("Authorization", f"Bearer {TOKEN}")
    connection.putheader("Authorization", "Bearer wrong-token")
    connection.endheaders()
    reply = connection.getresponse()
    assert reply.status == 401 and "report-link" not in reply.read().decode()
    connection.close()


def test_a_huge_form_is_refused_unread(corpus: Corpus) -> None:
    connection = http.client.HTTPConnection(corpus.board.host, corpus.board.port, timeout=30)
    connection.putrequest("POST", "/replay")
    connection.putheader("Authorization", f"Bearer {TOKEN}")
    connection.putheader("Content-Type", "application/x-www-form-urlencoded")
    connection.putheader("Content-Length", str(100 << 20))
    connection.endheaders()
    connection.send(b"policy=" + b"a" * 1000)  # far from all of it: the answer comes without the rest
    reply = connection.getresponse()
    html = reply.read().decode()
    connection.close()
    assert reply.status == 413 and "the form holds 104857600 bytes; the limit is 3145728" in html


def test_a_form_from_another_site_is_refused(corpus: Corpus) -> None:
    body = urllib.parse.urlencode({"token": TOKEN}).encode()
    headers = {
        "Origin": "http://attacker.example",
        "Content-Type": "application/x-www-form-urlencoded",
        "Content-Length": str(len(body)),
    }
    status, html = _request(corpus.board, "POST", "/login", headers=headers, body=body)
    assert status == 403 and "a form from another site may not be sent here" in html


# -- HTML in what the audit log holds ------------------------------------------------------------------


def _assert_inert(browser: Browser) -> None:
    """No smuggled element, no script ran, no request left the page."""
    assert browser.evaluate("document.title") != "owned"
    assert browser.evaluate("document.querySelectorAll('script, img[src=x], [onerror]').length") == 0
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0


def test_html_in_labels_is_shown_as_text(corpus: Corpus, chromium: Browser) -> None:
    chromium.set_headers({"Authorization": f"Bearer {TOKEN}"})
    chromium.open(f"{corpus.board.url}evaluations")
    _assert_inert(chromium)
    text = chromium.evaluate("document.querySelector('table.evaluations').textContent")
    assert f"git_sha={SCRIPT}" in text and f"pipeline_id={IMG}" in text and f"{IMG}={SCRIPT}" in text
    chromium.click(f'a.report-link[href="/evaluations/{corpus.evaluation_id}"]')
    _assert_inert(chromium)
    assert IMG in chromium.evaluate("document.body.textContent")


def test_html_in_names_is_shown_as_text(corpus: Corpus, chromium: Browser) -> None:
    chromium.set_headers({"Authorization": f"Bearer {TOKEN}"})
    chromium.open(f"{corpus.board.url}evaluations?policy={urllib.parse.quote(SCRIPT)}")
    _assert_inert(chromium)
    assert chromium.evaluate("document.querySelectorAll('a.report-link').length") == 1
    text = chromium.evaluate("document.querySelector('table.evaluations').textContent")
    assert SCRIPT in text and IMG in text
    for page in ("datasets", f"datasets/{urllib.parse.quote(IMG, safe='')}", f"evaluations/{corpus.forged_id}"):
        chromium.open(corpus.board.url + page)
        _assert_inert(chromium)
    # the dataset page: its name, and the class names in the chart and the table, as text
    chromium.open(f"{corpus.board.url}datasets/{urllib.parse.quote(IMG, safe='')}")
    assert chromium.evaluate("document.querySelector('h1').textContent") == f"Dataset {IMG}"
    names = chromium.evaluate("[...document.querySelectorAll('svg.chart g.series')].map(g => g.dataset.name)")
    assert sorted(names) == sorted(CLASS_NAMES)


# -- TLS ----------------------------------------------------------------------------------------------


def test_a_stalled_tls_handshake_holds_up_nobody(corpus: Corpus, pki: Pki) -> None:
    config = corpus.board.config.model_copy(update={"tls_cert": pki.server_cert, "tls_key": pki.server_key})
    with Dashboard(config, listen="127.0.0.1:0") as board:
        board.start()
        stalled = [socket.create_connection((board.host, board.port), timeout=30) for _ in range(4)]
        try:
            # they connected and said nothing; another client is served meanwhile
            context = ssl.create_default_context(cafile=str(pki.ca))
            connection = http.client.HTTPSConnection(board.host, board.port, timeout=30, context=context)
            connection.request("GET", "/evaluations", headers={"Authorization": f"Bearer {TOKEN}"})
            reply = connection.getresponse()
            assert reply.status == 200 and corpus.evaluation_id in reply.read().decode()
            connection.close()
        finally:
            for s in stalled:
                s.close()

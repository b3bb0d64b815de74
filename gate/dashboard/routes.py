"""The dashboard's requests: authentication, routing, bounds, and the response headers.

=====================================  ==========================================
``GET /evaluations``                   the list, filtered (dataset, policy, verdict, model, label)
``GET /evaluations/ID``                the evaluation's HTML report
``GET /evaluations/ID/verdict.json``   its verdict document, as recorded
``GET /datasets``                      the datasets evaluated
``GET /datasets/NAME``                 per-class recall over time, across models
``GET /waivers``                       the waivers on record
``GET|POST /replay``                   a pasted policy re-judging recorded evaluations
``GET|POST /login``, ``POST /logout``  the token cookie of a browser
=====================================  ==========================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from gate.dashboard import datasets, evaluations, sections
from gate.dashboard.access import COOKIE, Refusal, Visitor, cookie_safe
from gate.dashboard.layout import login_page, problem_page
from gate.dashboard.queries import FilterError, list_evaluations, parse_filters, recall_history
from gate.errors import GateError
from gate.store import EvaluationRecord

if TYPE_CHECKING:
    from gate.dashboard.server import Dashboard

log = logging.getLogger(__name__)

#: Query parameters a request may carry, all names together.
MAX_QUERY_FIELDS = 64
#: Everything a page may use: its own inline style and data: images; nothing to fetch, no script.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_LOG_CHARS = 200


class Problem(Exception):
    """A request answered with an error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Params = dict[str, list[str]]


class DashboardHandler(BaseHTTPRequestHandler):
    server_version = "gate"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def dashboard(self) -> Dashboard:
        found: Dashboard = getattr(self.server, "dashboard")  # noqa: B009  (set by the server)
        return found

    def setup(self) -> None:
        # how long the connection may stay silent, its TLS handshake included
        self.request.settimeout(self.dashboard.idle_timeout_s)
        if self.dashboard.tls is not None:
            # the handshake, here in the connection's own thread and bounded by the timeout
            self.request = self.dashboard.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.dashboard.tls is not None:
                # the TLS socket took the connection over from the server's plain one,
                # which the server closes: this one is closed here
                self.request.close()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("dashboard %s: %s", self.address_string(), (format % args)[:_LOG_CHARS])

    # -- responses ------------------------------------------------------------------------------

    def _send(
        self, status: int, body: str, *, content_type: str = "text/html", headers: dict[str, str] | None = None
    ) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        # same-origin, not no-referrer: a form posted here must carry its Origin (see _form)
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _problem(self, status: int, message: str, *, close: bool = False) -> None:
        headers = {"Connection": "close"} if close else {}
        if close:
            self.close_connection = True
        self._send(status, problem_page(status, HTTPStatus(status).phrase, message), headers=headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's refusals (a request line too long, a method no page
        takes, a malformed request) as this dashboard's pages, with its headers."""
        self.close_connection = True
        phrase = HTTPStatus(code).phrase
        page = problem_page(code, phrase, explain or message or phrase)
        self._send(code, page, headers={"Connection": "close"})

    def _redirect(self, where: str, *, cookie: str | None = None) -> None:
        headers = {"Location": where}
        if cookie is not None:
            headers["Set-Cookie"] = cookie
        self._send(303, "", headers=headers)

    # -- requests -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        try:
            parts = urlsplit(self.path)
            segments = [unquote(s, errors="strict") for s in parts.path.split("/")[1:]]
            params = parse_qs(parts.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
        except (UnicodeError, ValueError):
            self._problem(400, f"the URL is not valid here (at most {MAX_QUERY_FIELDS} query parameters)")
            return
        try:
            self._route(method, segments, params)
        except Problem as p:
            self._problem(p.status, p.message, close=p.status in (411, 413))
        except GateError as err:
            log.warning("dashboard: %s %s failed: %s", method, parts.path[:_LOG_CHARS], err.message)
            self._problem(500, err.message)

    def _form(self) -> Params:
        """The request's url-encoded form, read whole within :attr:`Dashboard.max_form_bytes`."""
        origin = self.headers.get("Origin")
        host = self.headers.get("Host")
        if origin is not None and (host is None or urlsplit(origin).netloc != host):
            raise Problem(403, "a form from another site may not be sent here")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise Problem(411, "a form must come with its Content-Length")
        if int(length) > self.dashboard.max_form_bytes:
            raise Problem(413, f"the form holds {length} bytes; the limit is {self.dashboard.max_form_bytes}")
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body = self.rfile.read(int(length))
        if kind != "application/x-www-form-urlencoded":
            raise Problem(415, "a form must be sent as application/x-www-form-urlencoded")
        try:
            return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
        except (UnicodeError, ValueError):
            raise Problem(400, "the form is not valid UTF-8 url-encoded text") from None

    def _visitor(self) -> Visitor | None:
        """Who asks; None when the request was refused (and answered)."""
        found = self.dashboard.access.check(self.headers.get_all("Authorization") or [], self.headers.get("Cookie"))
        if isinstance(found, Refusal):
            log.info("dashboard: %s refused (%d) from %s", self.path[:_LOG_CHARS], found.status, self.client_address[0])
            if found.status == 401:
                page = login_page(found.message)
                self._send(401, page, headers={"WWW-Authenticate": 'Bearer realm="gate dashboard"'})
            else:
                self._problem(found.status, found.message)
            return None
        return found

    def _route(self, method: str, segments: list[str], params: Params) -> None:
        if segments in (["login"], ["logout"]):
            self._session(method, segments[0])
            return
        visitor = self._visitor()
        if visitor is None:
            return
        name = visitor.token_name
        handler = self._handler(method, segments)
        if handler is None:
            raise Problem(404 if method == "GET" else 405, f"nothing to {method} at {'/' + '/'.join(segments)}")
        handler(segments, params, name)

    def _handler(self, method: str, segments: list[str]) -> Callable[[list[str], Params, str | None], None] | None:
        top, depth = (segments[0] if segments else ""), len(segments)
        if method == "POST":
            return self._replay if segments == ["replay"] else None
        routes: dict[tuple[str, int], Callable[[list[str], Params, str | None], None]] = {
            ("", 1): lambda *_: self._redirect("/evaluations"),
            ("evaluations", 1): self._list,
            ("evaluations", 2): self._report,
            ("evaluations", 3): self._verdict_json,
            ("datasets", 1): self._datasets,
            ("datasets", 2): self._dataset,
            ("waivers", 1): self._waivers,
            ("replay", 1): self._replay,
        }
        found = routes.get((top, depth))
        if found is not None and top == "evaluations" and depth == 3 and segments[2] != "verdict.json":
            return None
        return found

    # -- the pages ------------------------------------------------------------------------------

    @staticmethod
    def _single(params: Params) -> dict[str, str]:
        """Each query parameter once; a repeated one is a mistake."""
        for key, values in params.items():
            if len(values) != 1:
                raise Problem(400, f"query parameter {key!r} is given {len(values)} times")
        return {key: values[0] for key, values in params.items()}

    def _list(self, segments: list[str], params: Params, visitor: str | None) -> None:
        try:
            filters = parse_filters(self._single(params))
            found = list_evaluations(self.dashboard.store, filters)
        except FilterError as err:
            raise Problem(400, str(err)) from None
        except ValueError as err:  # an `after` never recorded
            raise Problem(400, str(err)) from None
        self._send(200, evaluations.list_page(filters, found, visitor=visitor))

    def _record(self, evaluation_id: str) -> EvaluationRecord:
        record = self.dashboard.store.get(evaluation_id)
        if record is None:
            raise Problem(404, f"no evaluation with id {evaluation_id[:200]!r}")
        return record

    def _report(self, segments: list[str], params: Params, visitor: str | None) -> None:
        record = self._record(segments[1])
        if record.verdict is None:
            self._send(200, evaluations.running_page(record, visitor=visitor))
            return
        try:
            self._send(200, self.dashboard.reports.report(record))
        except ValueError as err:
            raise Problem(500, str(err)) from None

    def _verdict_json(self, segments: list[str], params: Params, visitor: str | None) -> None:
        record = self._record(segments[1])
        if record.verdict is None:
            raise Problem(404, f"evaluation {segments[1][:200]!r} is still running: it has no verdict yet")
        self._send(200, json.dumps(record.verdict, indent=2, sort_keys=True) + "\n", content_type="application/json")

    def _datasets(self, segments: list[str], params: Params, visitor: str | None) -> None:
        from gate.dashboard.queries import datasets_evaluated

        self._send(200, datasets.index_page(datasets_evaluated(self.dashboard.store), visitor=visitor))

    def _dataset(self, segments: list[str], params: Params, visitor: str | None) -> None:
        unknown = sorted(set(params) - {"class"})
        if unknown:
            raise Problem(400, f"unknown query parameter {unknown[0][:200]!r}; this page takes class")
        points = recall_history(self.dashboard.store, segments[1])
        self._send(200, datasets.dataset_page(segments[1], points, params.get("class", []), visitor=visitor))

    def _waivers(self, segments: list[str], params: Params, visitor: str | None) -> None:
        try:
            self._send(*sections.waivers(self.dashboard, self._single(params), visitor=visitor))
        except sections.SectionError as err:
            raise Problem(400, str(err)) from None

    def _replay(self, segments: list[str], params: Params, visitor: str | None) -> None:
        form = self._form() if self.command == "POST" else None
        self._send(*sections.replay(self.dashboard, form, visitor=visitor))

    # -- the token cookie -----------------------------------------------------------------------

    def _session(self, method: str, action: str) -> None:
        secure = "; Secure" if self.dashboard.tls is not None else ""
        if action == "logout":
            if method != "POST":
                raise Problem(405, "log out with a POST (the Log out button)")
            self._redirect("/login", cookie=f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{secure}")
            return
        if method == "GET":
            self._send(200, login_page("Give a token this server accepts."))
            return
        token = (self._form().get("token") or [""])[0].strip()
        if not cookie_safe(token):
            raise Problem(400, "that token cannot be kept in a cookie; send it as 'Authorization: Bearer <token>'")
        found = self.dashboard.access.check([f"Bearer {token}"], None)
        if isinstance(found, Refusal):
            self._send(found.status, login_page(found.message))
            return
        cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
        self._redirect("/evaluations", cookie=cookie)

"""Who may look at the dashboard: the bearer tokens of the gRPC API (``tokens:``).

Every role includes ``read`` (:data:`gate.server.auth.GRANTS`), and ``read`` is all the
dashboard needs: it only shows what the audit log holds and re-judges nothing in a way
that is recorded. A request presents its token either as ``Authorization: Bearer
<token>`` (scripts, proxies) or in the ``gate_token`` cookie that the login form sets
(a browser); the token is checked exactly as the gRPC interceptor checks it (its SHA-256
compared with every configured one in constant time).

With no tokens configured every request is allowed, as on the gRPC API: only for a
server on loopback, or behind a proxy that authenticates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from gate.config import TokenEntry
from gate.server.auth import GRANTS, AuthInterceptor, bearer_token

#: The cookie the login form sets.
COOKIE = "gate_token"

#: What a token sent in a cookie may hold: the characters a cookie value carries as is.
_COOKIE_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")


@dataclass(frozen=True)
class Visitor:
    """Who is looking: the name of the token they presented, or None with authentication off."""

    token_name: str | None


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: 401 (no or unknown token) or 403 (no read role)."""

    status: int
    message: str


def cookie_token(cookie_header: str | None) -> str | None:
    """The token in the request's ``gate_token`` cookie, or None."""
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    if morsel is None or not _COOKIE_TOKEN.fullmatch(morsel.value):
        return None
    return morsel.value


def cookie_safe(token: str) -> bool:
    """Whether a token can travel in the login cookie as it is."""
    return _COOKIE_TOKEN.fullmatch(token) is not None


class Access:
    """The configured tokens, and the check of one request against them."""

    def __init__(self, tokens: Sequence[TokenEntry]) -> None:
        self._auth = AuthInterceptor(tokens)

    @property
    def enabled(self) -> bool:
        return self._auth.enabled

    def check(self, authorization: Sequence[str], cookie_header: str | None) -> Visitor | Refusal:
        """The visitor of a request with these ``Authorization`` headers and ``Cookie``
        header, or why it is refused."""
        if not self._auth.enabled:
            return Visitor(None)
        token: str | None
        if authorization:
            token = bearer_token([("authorization", value) for value in authorization])
            if token is None:
                return Refusal(401, "the Authorization header must be one 'Bearer <token>'")
        else:
            token = cookie_token(cookie_header)
            if token is None:
                return Refusal(401, "this dashboard requires a token: log in, or send 'Authorization: Bearer <token>'")
        entry = self._auth.identify(token)
        if entry is None:
            return Refusal(401, "the token is not valid here")
        granted = frozenset().union(*(GRANTS[role] for role in entry.roles))
        if "read" not in granted:
            return Refusal(403, f"token '{entry.name}' may not read the dashboard")
        return Visitor(entry.name)

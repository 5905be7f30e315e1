"""Who may use a circuit: the rule behind Envoy's ext_authz checks of HTTP requests.

A request is admitted with the circuit's permit cookie, or with the circuit's token in the
query parameter ``token``; a token admission hands out the cookie, so later requests (and the
app's own links, which drop the query) need no token. Anything else is refused: no
credentials at all is 401, wrong ones (another circuit's token or cookie, a stale cookie) 403.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl

from bai.appproxy.domain.model import Circuit, Protocol

__all__ = ["TOKEN_PARAM", "AccessDecision", "decide", "permit_cookie"]

TOKEN_PARAM = "token"
"""Query parameter that carries a circuit's token."""


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """The answer to one request."""

    allowed: bool
    """Whether the request goes on to the app."""
    status: int = 200
    """HTTP status of a refusal (401, 403 or 404)."""
    reason: str = ""
    """Why, for logs and the refusal body."""
    set_cookie: str = ""
    """A ``Set-Cookie`` value to add to the app's response, when not empty."""
    strip_token: bool = False
    """Remove the ``token`` query parameter before the request reaches the app."""


def permit_cookie(circuit: Circuit) -> str:
    """The ``Set-Cookie`` value that hands out ``circuit``'s permit (host-only, all paths)."""
    return f"{circuit.cookie_name}={circuit.permit}; Path=/; HttpOnly; SameSite=Lax"


def _query_tokens(path: str) -> list[str]:
    _, _, query = path.partition("?")
    query = query.partition("#")[0]
    return [v for k, v in parse_qsl(query, keep_blank_values=True) if k == TOKEN_PARAM]


def _cookie_value(cookie_header: str, name: str) -> str | None:
    if not cookie_header or name not in cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def _same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


def decide(circuit: Circuit | None, path: str, cookie_header: str) -> AccessDecision:
    """Decides one HTTP request for ``circuit`` (None: the route named no known circuit).

    ``path`` is the request target with its query; ``cookie_header`` the ``Cookie`` header.
    """
    if circuit is None or circuit.spec.protocol is not Protocol.HTTP:
        return AccessDecision(False, 404, "no such circuit")
    cookie = _cookie_value(cookie_header, circuit.cookie_name)
    tokens = _query_tokens(path)
    if cookie is not None and _same(cookie, circuit.permit):
        return AccessDecision(True, reason="permit cookie", strip_token=bool(tokens))
    if tokens:
        if all(_same(t, circuit.token) for t in tokens):
            return AccessDecision(
                True, reason="token", set_cookie=permit_cookie(circuit), strip_token=True
            )
        return AccessDecision(False, 403, "wrong token for this circuit")
    if cookie is not None:
        return AccessDecision(False, 403, "stale or wrong permit cookie")
    return AccessDecision(False, 401, "this app needs its token (query parameter 'token')")

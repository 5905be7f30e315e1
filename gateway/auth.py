"""What the gateway forwards of a client's signature, as gRPC metadata for the manager.

The gateway verifies nothing cryptographically: the manager holds the keys and decides. It does
reject, before any round trip, requests that cannot possibly verify (no or malformed
Authorization, no or unparsable Date, a Date outside the clock-skew window), using the same
:mod:`bai.common.auth` functions the manager uses.

What was signed is the client's HTTP request (wire doc §3): method, the raw path plus query
exactly as sent, the Date value, the Host header, the content type cut at ``;`` (or
``application/octet-stream`` without one: WebSocket and SSE requests send none) and the
X-BackendAI-Version value.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bai.common import auth, rpc
from starlette.requests import HTTPConnection

__all__ = ["ForwardedAuth", "extract", "extract_scope", "service_metadata"]

Metadata = tuple[tuple[str, str], ...]
Scope = MutableMapping[str, Any]


@dataclass(frozen=True, slots=True)
class ForwardedAuth:
    """A client's signature and everything it covers."""

    authorization: str
    """The Authorization header, verbatim."""
    date: str
    """X-BackendAI-Date, else Date, verbatim."""
    version: str
    """X-BackendAI-Version (may be empty; the manager then rejects the signature)."""
    host: str
    """Host header as sent."""
    method: str
    """HTTP method, upper case (``GET`` for a WebSocket handshake)."""
    path: str
    """Raw path plus ``?`` and the raw query string when there is one."""
    content_type: str
    """Content type without parameters, lowercased; ``application/octet-stream`` when absent."""

    def metadata(self, service_token: str) -> Metadata:
        """The gRPC metadata for the manager (bai.common.rpc keys)."""
        return (
            ("authorization", self.authorization),
            (rpc.SIGN_DATE_KEY, self.date),
            (rpc.SIGN_VERSION_KEY, self.version),
            (rpc.SIGN_HOST_KEY, self.host),
            (rpc.SIGN_METHOD_KEY, self.method),
            (rpc.SIGN_PATH_KEY, self.path),
            (rpc.SIGN_CONTENT_TYPE_KEY, self.content_type),
            (rpc.SERVICE_TOKEN_KEY, service_token),
        )


def _rel_url(scope: Scope) -> str:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    rel = raw_path + b"?" + query if query else raw_path
    # Clients percent-encode what they send; anything else cannot be what they signed, and gRPC
    # metadata values must be printable ASCII anyway.
    return rel.decode("latin-1")


def _printable(name: str, value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise auth.AuthError("MALFORMED_HEADER", f"{name} holds characters that cannot be signed")
    return value


_SIGNED_HEADERS = frozenset(
    (b"authorization", b"x-backendai-date", b"date", b"x-backendai-version", b"host",
     b"content-type")
)


def _signed_headers(scope: Scope) -> dict[bytes, str]:
    # One pass over the raw ASGI headers (names arrive lowercased), first occurrence wins as
    # with Starlette's ``Headers.get``: cheaper than one linear ``Headers`` scan per name.
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _SIGNED_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    return found


def extract_scope(scope: Scope, *, now: datetime | None = None) -> ForwardedAuth:
    """Reads the signature of the HTTP or WebSocket request ``scope`` (an ASGI scope).

    Raises:
        bai.common.auth.AuthError: nothing that could verify (missing or malformed
            Authorization, missing or unparsable Date, Date outside the skew window).
    """
    headers = _signed_headers(scope)
    authorization = headers.get(b"authorization")
    if not authorization:
        raise auth.AuthError("MISSING_AUTHORIZATION", "the request is not signed")
    auth.parse_authorization(authorization)
    date = headers.get(b"x-backendai-date") or headers.get(b"date")
    if not date:
        raise auth.AuthError("MISSING_DATE", "a signed request needs a Date header")
    auth.check_skew(date, now)
    return ForwardedAuth(
        authorization=_printable("Authorization", authorization),
        date=_printable("Date", date),
        version=_printable("X-BackendAI-Version", headers.get(b"x-backendai-version", "")),
        host=_printable("Host", headers.get(b"host", "")),
        method=str(scope.get("method", "GET")).upper(),
        path=_printable("the path", _rel_url(scope)),
        content_type=auth.normalize_content_type(headers.get(b"content-type")),
    )


def extract(conn: HTTPConnection, *, now: datetime | None = None) -> ForwardedAuth:
    """Reads the signature of ``conn`` (a Request or WebSocket): :func:`extract_scope`.

    Raises:
        bai.common.auth.AuthError: nothing that could verify (missing or malformed
            Authorization, missing or unparsable Date, Date outside the skew window).
    """
    return extract_scope(conn.scope, now=now)


def service_metadata(conn: HTTPConnection, service_token: str) -> Metadata:
    """:func:`extract` then :meth:`ForwardedAuth.metadata`: what every call to the manager sends."""
    return extract(conn).metadata(service_token)

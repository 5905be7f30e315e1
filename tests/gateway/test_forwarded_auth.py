"""What the gateway forwards of a client's signature: extraction, Date handling, metadata keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bai.common import auth, rpc
from bai.gateway.auth import extract, service_metadata
from starlette.requests import HTTPConnection, Request

AK, SK = "AKIATESTKEY", "test-secret"


def _conn(
    path: bytes = b"/session/x",
    query: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    method: str | None = "GET",
    websocket: bool = False,
) -> HTTPConnection:
    scope = {
        "type": "websocket" if websocket else "http",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()],
    }
    if method is not None and not websocket:
        scope["method"] = method
    return HTTPConnection(scope) if websocket else Request(scope)


def _signed_headers(
    method: str,
    rel_url: str,
    host: str = "127.0.0.1:8090",
    content_type: str | None = "text/plain",
    date: str | None = None,
) -> dict[str, str]:
    """Headers exactly as the official client sends them (wire doc §3)."""
    date = date or auth.now_date()
    signed = auth.SignedRequest(
        method,
        rel_url,
        date,
        host,
        auth.normalize_content_type(content_type),
        auth.API_VERSION,
    )
    headers = {
        "Host": host,
        "Date": date,
        "X-BackendAI-Version": auth.API_VERSION,
        "Authorization": auth.authorization_header(AK, auth.sign(signed, SK)),
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def _verify(forwarded: dict[str, str]) -> None:
    """What the manager does with the forwarded metadata."""
    _, signature = auth.parse_authorization(forwarded["authorization"])
    request = auth.SignedRequest(
        method=forwarded[rpc.SIGN_METHOD_KEY],
        rel_url=forwarded[rpc.SIGN_PATH_KEY],
        date=forwarded[rpc.SIGN_DATE_KEY],
        host=forwarded[rpc.SIGN_HOST_KEY],
        content_type=forwarded[rpc.SIGN_CONTENT_TYPE_KEY],
        api_version=forwarded[rpc.SIGN_VERSION_KEY],
    )
    auth.verify(request, signature, SK)


def test_forwarded_metadata_names_every_signed_part_and_verifies() -> None:
    rel = "/events/session?sessionName=x&scope=*"
    headers = _signed_headers("GET", rel)
    conn = _conn(b"/events/session", b"sessionName=x&scope=*", headers)
    metadata = dict(service_metadata(conn, "tok"))
    assert set(metadata) == {
        "authorization",
        rpc.SIGN_DATE_KEY,
        rpc.SIGN_VERSION_KEY,
        rpc.SIGN_HOST_KEY,
        rpc.SIGN_METHOD_KEY,
        rpc.SIGN_PATH_KEY,
        rpc.SIGN_CONTENT_TYPE_KEY,
        rpc.SERVICE_TOKEN_KEY,
    }
    assert metadata[rpc.SERVICE_TOKEN_KEY] == "tok"
    assert metadata[rpc.SIGN_PATH_KEY] == rel
    assert metadata[rpc.SIGN_CONTENT_TYPE_KEY] == "text/plain"
    _verify(metadata)


def test_raw_path_and_query_are_forwarded_undecoded() -> None:
    rel = "/session/a%20b/logs?kernel_id=%2Fx&y=1+2"
    headers = _signed_headers("GET", rel)
    conn = _conn(b"/session/a%20b/logs", b"kernel_id=%2Fx&y=1+2", headers)
    forwarded = extract(conn)
    assert forwarded.path == rel
    _verify(dict(forwarded.metadata("t")))


def test_content_type_is_cut_at_parameters_and_lowercased() -> None:
    headers = _signed_headers("POST", "/session/x/upload", content_type="Multipart/Form-Data; b=1")
    forwarded = extract(_conn(b"/session/x/upload", headers=headers, method="POST"))
    assert forwarded.content_type == "multipart/form-data"
    assert forwarded.method == "POST"
    _verify(dict(forwarded.metadata("t")))


def test_websocket_handshake_is_get_with_octet_stream() -> None:
    path = "/stream/session/x/execute"
    headers = _signed_headers("GET", path, content_type=None)
    forwarded = extract(_conn(path.encode(), headers=headers, websocket=True))
    assert forwarded.method == "GET"
    assert forwarded.content_type == "application/octet-stream"
    _verify(dict(forwarded.metadata("t")))


def test_x_backendai_date_wins_over_date() -> None:
    headers = _signed_headers("GET", "/session/x")
    signed_date = headers["Date"]
    headers["X-BackendAI-Date"] = signed_date
    headers["Date"] = "Wed, 26 Nov 2026 18:36:09 GMT"
    assert extract(_conn(headers=headers)).date == signed_date


def test_a_repeated_header_counts_once_as_its_first_value() -> None:
    """The one-pass header scan reads what Starlette's ``Headers.get`` would: the first."""
    headers = _signed_headers("GET", "/session/x")
    request = _conn(headers=headers)
    request.scope["headers"].append((b"host", b"evil.example:1"))
    request.scope["headers"].append((b"x-backendai-version", b"v0.bogus"))
    forwarded = extract(request)
    assert (forwarded.host, forwarded.version) == (headers["Host"], auth.API_VERSION)
    assert forwarded.host == request.headers.get("host")
    _verify(dict(forwarded.metadata("tok")))


@pytest.mark.parametrize(
    ("drop", "reason"),
    [("Authorization", "MISSING_AUTHORIZATION"), ("Date", "MISSING_DATE")],
)
def test_missing_parts_are_rejected_before_any_round_trip(drop: str, reason: str) -> None:
    headers = _signed_headers("GET", "/session/x")
    del headers[drop]
    with pytest.raises(auth.AuthError) as err:
        extract(_conn(headers=headers))
    assert err.value.reason == reason


def test_malformed_authorization_and_date_are_rejected() -> None:
    headers = _signed_headers("GET", "/session/x")
    with pytest.raises(auth.AuthError) as err:
        extract(_conn(headers={**headers, "Authorization": "Bearer abc"}))
    assert err.value.reason == "MALFORMED_AUTHORIZATION"
    with pytest.raises(auth.AuthError) as err:
        extract(_conn(headers={**headers, "Date": "yesterday"}))
    assert err.value.reason == "INVALID_DATE"


def test_clock_skew_window_is_five_minutes() -> None:
    now = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
    for offset, ok in (
        (timedelta(minutes=4, seconds=59), True),
        (timedelta(minutes=5, seconds=1), False),
    ):
        for sign in (1, -1):
            date = (now + sign * offset).isoformat()
            headers = _signed_headers("GET", "/session/x", date=date)
            if ok:
                assert extract(_conn(headers=headers), now=now).date == date
            else:
                with pytest.raises(auth.AuthError) as err:
                    extract(_conn(headers=headers), now=now)
                assert err.value.reason == "CLOCK_SKEW"


def test_naive_dates_are_utc() -> None:
    now = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
    headers = _signed_headers("GET", "/session/x", date="2026-11-26T18:01:00")
    assert extract(_conn(headers=headers), now=now).date == "2026-11-26T18:01:00"


def test_unsignable_characters_are_rejected() -> None:
    headers = _signed_headers("GET", "/session/x")
    with pytest.raises(auth.AuthError) as err:
        extract(_conn("/session/é".encode(), headers=headers))
    assert err.value.reason == "MALFORMED_HEADER"

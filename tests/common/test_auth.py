import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from bai.common import auth


def _request(date: str, **kw: str) -> auth.SignedRequest:
    fields = dict(
        method="GET",
        rel_url="/session/x?a=1",
        date=date,
        host="127.0.0.1:8090",
        content_type="text/plain",
        api_version=auth.API_VERSION,
    )
    fields.update(kw)
    return auth.SignedRequest(**fields)


def test_sign_then_verify_roundtrip() -> None:
    req = _request(auth.now_date())
    sig = auth.sign(req, "secret")
    auth.verify(req, sig, "secret")
    header = auth.authorization_header("AKIATEST", sig)
    assert auth.parse_authorization(header) == ("AKIATEST", sig)


def test_string_to_sign_is_backendai_layout() -> None:
    req = _request(
        "2026-11-26T18:36:09.249496+00:00", content_type="multipart/form-data; boundary=x"
    )
    lines = req.string_to_sign().split("\n")
    assert lines == [
        "GET",
        "/session/x?a=1",
        "2026-11-26T18:36:09.249496+00:00",
        "host:127.0.0.1:8090",
        "content-type:multipart/form-data",
        "x-backendai-version:v9.20250722",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"method": "POST"},
        {"rel_url": "/session/y"},
        {"host": "other:1"},
        {"content_type": "application/json"},
        {"api_version": "v8.20240101"},
    ],
)
def test_any_signed_part_changed_fails(change: dict[str, str]) -> None:
    req = _request(auth.now_date())
    sig = auth.sign(req, "secret")
    tampered = _request(req.date, **change)
    with pytest.raises(auth.AuthError) as err:
        auth.verify(tampered, sig, "secret")
    assert err.value.reason == "INVALID_SIGNATURE"


def test_wrong_secret_fails() -> None:
    req = _request(auth.now_date())
    with pytest.raises(auth.AuthError):
        auth.verify(req, auth.sign(req, "secret"), "other")


def test_clock_skew_over_five_minutes_rejected() -> None:
    old = (datetime.now(UTC) - timedelta(minutes=6)).isoformat()
    req = _request(old)
    with pytest.raises(auth.AuthError) as err:
        auth.verify(req, auth.sign(req, "secret"), "secret")
    assert err.value.reason == "CLOCK_SKEW"
    recent = _request((datetime.now(UTC) - timedelta(minutes=4)).isoformat())
    auth.verify(recent, auth.sign(recent, "secret"), "secret")


@pytest.mark.parametrize(
    "header", ["", "Bearer x", "BackendAI signMethod=HMAC-SHA256, credential=AK"]
)
def test_malformed_authorization(header: str) -> None:
    with pytest.raises(auth.AuthError):
        auth.parse_authorization(header)


def test_missing_content_type_signs_as_octet_stream() -> None:
    assert auth.normalize_content_type(None) == "application/octet-stream"
    assert auth.normalize_content_type(" Application/JSON ; charset=utf-8") == "application/json"


def _reference_signature(request: auth.SignedRequest, secret: str) -> str:
    """The official client's derivation, spelled out (wire doc §3): three HMACs, no cache."""
    day = auth.parse_date(request.date).astimezone(UTC).strftime("%Y%m%d")
    k1 = hmac.new(secret.encode(), day.encode(), hashlib.sha256).digest()
    k2 = hmac.new(k1, request.host.lower().encode(), hashlib.sha256).digest()
    return hmac.new(k2, request.string_to_sign().encode(), hashlib.sha256).hexdigest()


def test_cached_key_derivation_never_mixes_secrets_days_or_hosts() -> None:
    """sign() caches the (secret, day, host) key; interleaved inputs still sign as specified."""
    base = datetime(2026, 11, 27, 23, 59, 59, tzinfo=UTC)
    for round_ in range(2):  # the second round is served from the cache
        for secret in ("s1", "s2"):
            for date in (base, base + timedelta(seconds=2)):  # two UTC days
                for host in ("127.0.0.1:8090", "API.example:443"):
                    request = auth.SignedRequest("GET", f"/session/{round_}", date.isoformat(),
                                                 host, "application/json", auth.API_VERSION)
                    assert auth.sign(request, secret) == _reference_signature(request, secret)


def test_parsed_authorization_is_cached_but_failures_are_not() -> None:
    header = auth.authorization_header("AKIACACHE", "AB" * 32)
    assert auth.parse_authorization(header) == auth.parse_authorization(header)
    assert auth.parse_authorization(header) == ("AKIACACHE", "ab" * 32)
    for _ in range(2):
        with pytest.raises(auth.AuthError) as info:
            auth.parse_authorization("BackendAI nonsense")
        assert info.value.reason == "MALFORMED_AUTHORIZATION"

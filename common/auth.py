"""Backend.AI keypair request signing (HMAC-SHA256), shared by every signer and verifier.

The algorithm is exactly the official client's (see shared reference
``backendai-client-wire.md`` §3): the body is never hashed, the key is derived from the secret,
the UTC date and the host, and the date travels as an ISO 8601 string.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "API_VERSION",
    "EMPTY_BODY_DIGEST",
    "MAX_CLOCK_SKEW",
    "AuthError",
    "SignedRequest",
    "authorization_header",
    "check_skew",
    "generate_keypair",
    "normalize_content_type",
    "now_date",
    "parse_authorization",
    "parse_date",
    "sign",
    "verify",
]

API_VERSION = "v9.20250722"
"""The API version we advertise and sign with (the official client 26.9.6's own)."""

MAX_CLOCK_SKEW = timedelta(minutes=5)
EMPTY_BODY_DIGEST = hashlib.sha256(b"").hexdigest()
_AUTH_RE = re.compile(
    r"^BackendAI\s+signMethod=HMAC-(?P<hash>SHA256),\s*credential=(?P<ak>[^:\s]+):(?P<sig>[0-9a-fA-F]+)$"
)


class AuthError(Exception):
    """A request's credentials are missing, malformed, stale or wrong."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a signature covers."""

    method: str
    """HTTP method (upper case); ``POST`` for gRPC."""
    rel_url: str
    """Path plus ``?query`` exactly as sent; the full method name for gRPC."""
    date: str
    """The Date header value, verbatim."""
    host: str
    """Host header (``host[:port]``) as the client signed it."""
    content_type: str
    """Content type without parameters; ``application/octet-stream`` when absent."""
    api_version: str
    """X-BackendAI-Version value."""

    def string_to_sign(self) -> str:
        return "\n".join(
            (
                self.method.upper(),
                self.rel_url,
                self.date,
                f"host:{self.host.lower()}",
                f"content-type:{normalize_content_type(self.content_type)}",
                f"x-backendai-version:{self.api_version}",
                EMPTY_BODY_DIGEST,
            )
        )


def normalize_content_type(value: str | None) -> str:
    """Cut parameters, strip and lowercase, as aiohttp's ``request.content_type`` does."""
    if not value:
        return "application/octet-stream"
    return value.split(";", 1)[0].strip().lower() or "application/octet-stream"


def parse_date(value: str) -> datetime:
    """Parses an ISO 8601 Date value (naive values are UTC)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise AuthError("INVALID_DATE", f"Date header is not ISO 8601: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def sign(request: SignedRequest, secret_key: str) -> str:
    """Returns the hex signature of ``request`` with ``secret_key``."""
    day = parse_date(request.date).astimezone(UTC).strftime("%Y%m%d")
    key = _signing_key(secret_key, day, request.host.lower())
    return hmac.new(key, request.string_to_sign().encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=4096)
def _signing_key(secret_key: str, day: str, host: str) -> bytes:
    # The key derivation depends only on (secret, UTC day, host), which a client repeats on
    # every request of a day: caching it saves two of the three HMACs per signature (a
    # verifier's hot path). Bounded, and it holds nothing the caller did not hold already.
    k1 = hmac.new(secret_key.encode(), day.encode(), hashlib.sha256).digest()
    return hmac.new(k1, host.encode(), hashlib.sha256).digest()


def authorization_header(access_key: str, signature: str) -> str:
    return f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{signature}"


def parse_authorization(value: str) -> tuple[str, str]:
    """Returns ``(access_key, signature)`` from an Authorization header value."""
    return _parse_authorization(value)


@functools.lru_cache(maxsize=4096)
def _parse_authorization(value: str) -> tuple[str, str]:
    # The gateway parses each header twice (rate limiter, forwarding) and a client may repeat
    # one within its Date's validity; failures raise and are not cached.
    match = _AUTH_RE.match(value.strip())
    if match is None:
        raise AuthError("MALFORMED_AUTHORIZATION", "Authorization header is malformed")
    return match["ak"], match["sig"].lower()


def check_skew(date: str, now: datetime | None = None) -> None:
    """Rejects a Date further than MAX_CLOCK_SKEW from ``now``."""
    now = now or datetime.now(UTC)
    if abs(now - parse_date(date)) > MAX_CLOCK_SKEW:
        raise AuthError("CLOCK_SKEW", "request date is more than 5 minutes off the server clock")


def verify(request: SignedRequest, signature: str, secret_key: str) -> None:
    """Raises AuthError unless ``signature`` is valid for ``request`` and fresh."""
    check_skew(request.date)
    expected = sign(request, secret_key)
    if not hmac.compare_digest(expected, signature.lower()):
        raise AuthError("INVALID_SIGNATURE", "signature mismatch")


def now_date() -> str:
    """A Date value as the official client writes it."""
    return datetime.now(UTC).isoformat()


def generate_keypair() -> tuple[str, str]:
    """A new (access key, secret key) pair in Backend.AI's shapes."""
    # Alphanumeric only, like Backend.AI's keys: safe in argv, env files and URLs.
    alphabet = string.ascii_letters + string.digits
    access = "AKIA" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)
    )
    secret = "".join(secrets.choice(alphabet) for _ in range(40))
    return access, secret

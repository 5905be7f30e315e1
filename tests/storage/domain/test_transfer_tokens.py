"""Transfer tokens: HS256 JWTs bound to one operation on one file."""

from __future__ import annotations

import base64
import json

import pytest
from bai.common.errors import Unauthenticated
from bai.storage.domain import TransferClaims, TransferTokens

NOW = 1_800_000_000


def tokens(secret: str = "s") -> TransferTokens:
    return TransferTokens(secret, clock=lambda: NOW)


def claims(op: str = "upload", expires: int = NOW + 60) -> TransferClaims:
    return TransferClaims(op, "local", "f" * 32, "a/b.txt", 10, expires)


def test_round_trip() -> None:
    token = tokens().issue(claims())
    assert tokens().verify(token, "upload") == claims()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (tokens("other").issue(claims()), "TRANSFER_TOKEN_INVALID"),
        (tokens().issue(claims(op="download")), "TRANSFER_TOKEN_INVALID"),
        (tokens().issue(claims(expires=NOW)), "TRANSFER_TOKEN_EXPIRED"),
        ("a.b", "TRANSFER_TOKEN_INVALID"),
        ("", "TRANSFER_TOKEN_INVALID"),
    ],
)
def test_rejected(token: str, reason: str) -> None:
    with pytest.raises(Unauthenticated) as exc:
        tokens().verify(token, "upload")
    assert exc.value.reason == reason


def test_alg_none_is_rejected() -> None:
    _, payload, _ = tokens().issue(claims()).split(".")
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(Unauthenticated):
        tokens().verify(f"{header}.{payload}.", "upload")


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        TransferTokens("")

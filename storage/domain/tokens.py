"""Short-lived transfer tokens: JWTs (HS256) signed with the proxy's transfer secret.

The claims follow Backend.AI's storage proxy (``op``, ``volume``, ``vfid``, ``relpath``,
``size``, ``exp``), so a token names exactly one file of one folder and one operation.
Only HS256 is accepted (no ``alg: none``, no key confusion); stdlib only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bai.storage import errors

__all__ = ["OPERATIONS", "TransferClaims", "TransferTokens"]

OPERATIONS = ("upload", "download")
_HEADER = {"alg": "HS256", "typ": "JWT"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise errors.token_invalid("not base64url") from exc


@dataclass(frozen=True, slots=True)
class TransferClaims:
    """What a transfer token allows."""

    op: str
    """``upload`` or ``download``."""
    volume: str
    """Volume name."""
    folder: str
    """Folder id (UUID, dashed)."""
    path: str
    """File path relative to the folder root."""
    size: int
    """Uploads: the file's total size in bytes."""
    expires: int
    """Expiry, Unix seconds."""

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "volume": self.volume,
            "vfid": self.folder,
            "relpath": self.path,
            "size": self.size,
            "exp": self.expires,
        }


class TransferTokens:
    """Issues and verifies transfer tokens with one secret."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("the transfer secret must not be empty")
        self._key = secret.encode()
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    def _sign(self, signing_input: str) -> str:
        return _b64(hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest())

    def issue(self, claims: TransferClaims) -> str:
        header = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims.to_json(), separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}"
        return f"{signing_input}.{self._sign(signing_input)}"

    def verify(self, token: str, op: str) -> TransferClaims:
        """The claims of a genuine, unexpired token for ``op``; TRANSFER_TOKEN_INVALID or
        TRANSFER_TOKEN_EXPIRED otherwise."""
        pieces = token.split(".")
        if len(pieces) != 3:
            raise errors.token_invalid("malformed")
        header, payload, signature = pieces
        if not hmac.compare_digest(self._sign(f"{header}.{payload}"), signature):
            raise errors.token_invalid("bad signature")
        try:
            head = json.loads(_unb64(header))
            body = json.loads(_unb64(payload))
            if head.get("alg") != "HS256":
                raise errors.token_invalid("unsupported algorithm")
            claims = TransferClaims(
                op=str(body["op"]),
                volume=str(body["volume"]),
                folder=str(body["vfid"]),
                path=str(body["relpath"]),
                size=int(body.get("size", 0)),
                expires=int(body["exp"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.token_invalid("malformed claims") from exc
        if claims.op != op:
            raise errors.token_invalid(f"issued for {claims.op}, not {op}")
        if claims.expires <= self.now():
            raise errors.token_expired()
        return claims

"""Password hashing with scrypt (stdlib ``hashlib.scrypt``, memory-hard).

Stored form: ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``, so the cost can be raised later
and old hashes still verify. Verification is constant-time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

__all__ = ["MIN_PASSWORD_LENGTH", "hash_password", "hash_password_async", "verify_password",
           "verify_password_async"]

MIN_PASSWORD_LENGTH = 8
# n=2**14, r=8 takes ~16 MiB and ~50 ms: slow enough against offline guessing, cheap enough
# for a login endpoint that also locks out after a few failures.
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN,
                          maxmem=256 * 1024 * 1024)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for a malformed or foreign hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _derive(password, bytes.fromhex(salt), int(n), int(r), int(p))
        return hmac.compare_digest(actual, bytes.fromhex(digest))
    except ValueError:
        return False


async def hash_password_async(password: str) -> str:
    """:func:`hash_password` off the event loop (scrypt takes tens of milliseconds of CPU)."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password: str, stored: str) -> bool:
    """:func:`verify_password` off the event loop."""
    return await asyncio.to_thread(verify_password, password, stored)

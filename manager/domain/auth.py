"""Keypair authentication: Backend.AI HMAC signatures checked against the keypairs table.

Secrets are cached in memory for ``cache_ttl`` seconds, so a deactivated keypair or a changed
secret takes effect within that time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bai.common.auth import AuthError, SignedRequest, verify
from bai.manager.domain.errors import AuthFailed
from bai.manager.domain.model import KeypairInfo, Principal
from bai.manager.domain.ports import AccountRepository

__all__ = ["Authenticator", "SignedCall"]


@dataclass(frozen=True, slots=True)
class SignedCall:
    """A request as signed, with the credential it carries."""

    request: SignedRequest
    access_key: str
    signature: str


class Authenticator:
    def __init__(self, accounts: AccountRepository, *, cache_ttl: float = 10.0) -> None:
        self._accounts = accounts
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, KeypairInfo]] = {}

    async def authenticate(self, call: SignedCall) -> Principal:
        """Returns the caller; raises AuthFailed (UNAUTHENTICATED) with a precise reason."""
        keypair = await self._keypair(call.access_key)
        if keypair is None:
            raise AuthFailed("unknown access key", reason="UNKNOWN_ACCESS_KEY")
        if not keypair.is_active:
            raise AuthFailed(f"access key {call.access_key} is inactive",
                             reason="INACTIVE_KEYPAIR")
        try:
            verify(call.request, call.signature, keypair.secret_key)
        except AuthError as exc:
            raise AuthFailed(exc.message, reason=exc.reason) from exc
        return Principal(access_key=keypair.access_key, user_id=keypair.user_id,
                         email=keypair.email, role=keypair.role, domain=keypair.domain)

    async def _keypair(self, access_key: str) -> KeypairInfo | None:
        now = time.monotonic()
        cached = self._cache.get(access_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        keypair = await self._accounts.get_keypair(access_key)
        if keypair is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[access_key] = (now + self._ttl, keypair)
        return keypair

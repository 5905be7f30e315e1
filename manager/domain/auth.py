"""Keypair authentication: Backend.AI HMAC signatures checked against the keypairs table.

Secrets are cached in memory for ``cache_ttl`` seconds, so a deactivated keypair or a changed
secret takes effect within that time.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bai.common.auth import AuthError, SignedRequest, verify
from bai.common.errors import InvalidArgument, ResourceExhausted
from bai.manager.domain.admin import KeypairView, UserView
from bai.manager.domain.errors import AuthFailed
from bai.manager.domain.model import KeypairInfo, Principal, utcnow
from bai.manager.domain.passwords import hash_password, verify_password_async
from bai.manager.domain.ports import AccountRepository

__all__ = ["Authenticator", "LoginAccount", "LoginConfig", "LoginRepository", "PasswordLogin",
           "SignedCall"]


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
                         email=keypair.email, role=keypair.role, domain=keypair.domain,
                         projects=keypair.projects)

    def forget(self) -> None:
        """Drops every cached keypair (after an admin change to keypairs, users or members),
        so this replica applies the change at once; other replicas within ``cache_ttl``."""
        self._cache.clear()

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


@dataclass(frozen=True, slots=True)
class LoginConfig:
    lockout_threshold: int = 5
    """Consecutive failed passwords that lock a user."""
    lockout_seconds: float = 300.0
    """How long the lock lasts."""


@dataclass(frozen=True, slots=True)
class LoginAccount:
    user_id: uuid.UUID
    email: str
    domain: str
    status: str
    password_hash: str | None
    locked_until: datetime | None


class LoginRepository(Protocol):
    async def login_account(self, email: str) -> LoginAccount | None: ...

    async def record_login_failure(self, user_id: uuid.UUID, threshold: int,
                                   lock_until: datetime) -> bool:
        """Counts a failure; at ``threshold`` locks the user until ``lock_until`` and resets the
        count (returns True when this failure locked it). Atomic across replicas."""

    async def record_login_success(self, user_id: uuid.UUID, at: datetime) -> None: ...

    async def main_keypair(self, user_id: uuid.UUID) -> KeypairView | None:
        """The user's oldest active keypair (with its secret key)."""

    async def user_view(self, user_id: uuid.UUID) -> UserView | None: ...


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user is unknown, so that both answers take as long."""
    return hash_password("not-a-real-password")


class PasswordLogin:
    """Password → keypair (Backend.AI's ``POST /auth/authorize``), with a per-user lockout."""

    def __init__(self, repo: LoginRepository, config: LoginConfig | None = None) -> None:
        self._repo = repo
        self._config = config or LoginConfig()

    async def authorize(self, domain: str, email: str, password: str) -> tuple[
            KeypairView, UserView]:
        if not email.strip() or not password:
            raise InvalidArgument("username and password are required",
                                  reason="MISSING_CREDENTIALS")
        account = await self._repo.login_account(email.strip().lower())
        now = utcnow()
        if account is not None and account.locked_until is not None and \
                account.locked_until > now:
            wait = int((account.locked_until - now).total_seconds()) + 1
            raise ResourceExhausted(f"too many failed logins; try again in {wait} s",
                                    reason="LOGIN_LOCKED",
                                    metadata={"retry_after_seconds": str(wait)})
        stored = account.password_hash if account and account.password_hash else None
        matches = await verify_password_async(password, stored or _dummy_hash())
        if account is None or account.password_hash is None or not matches:
            if account is not None and account.password_hash is not None:
                lock_until = now + timedelta(seconds=self._config.lockout_seconds)
                await self._repo.record_login_failure(
                    account.user_id, self._config.lockout_threshold, lock_until)
            raise _bad_credentials()
        if account.status != "active" or (domain and domain != account.domain):
            raise _bad_credentials()
        keypair = await self._repo.main_keypair(account.user_id)
        user = await self._repo.user_view(account.user_id)
        if keypair is None or user is None:
            raise _bad_credentials()
        await self._repo.record_login_success(account.user_id, now)
        return keypair, user


def _bad_credentials() -> AuthFailed:
    return AuthFailed("invalid username or password", reason="INVALID_CREDENTIALS")

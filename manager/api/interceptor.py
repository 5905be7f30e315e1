"""One server interceptor for the manager: keypair authentication and domain-error mapping.

Calls to SessionService and ImageService must carry the Backend.AI signature metadata described
atop ``session_service.proto``; the principal is then available to the servicer through
:func:`principal`. For every manager service, a raised :class:`BaiError` becomes its gRPC status
with ``google.rpc.ErrorInfo(domain="bai.manager")``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeAlias

import grpc
from bai.common.auth import AuthError, SignedRequest, parse_authorization
from bai.common.rpc import (
    SERVICE_TOKEN_KEY,
    SIGN_CONTENT_TYPE_KEY,
    SIGN_DATE_KEY,
    SIGN_HOST_KEY,
    SIGN_METHOD_KEY,
    SIGN_PATH_KEY,
    SIGN_VERSION_KEY,
    map_domain_errors,
)
from bai.manager.domain.auth import Authenticator, SignedCall
from bai.manager.domain.errors import AuthFailed
from bai.manager.domain.model import Principal

__all__ = ["ERROR_DOMAIN", "KEYPAIR_SERVICES", "ManagerInterceptor", "principal"]

log = logging.getLogger(__name__)
ERROR_DOMAIN = "bai.manager"
KEYPAIR_SERVICES = (
    "/bai.manager.v1.SessionService/",
    "/bai.manager.v1.ImageService/",
    "/bai.manager.v1.AdminService/",
    "/bai.manager.v1.EventService/",
    "/bai.manager.v1.VFolderService/",
)
GRPC_CONTENT_TYPE = "application/grpc"
_PRINCIPAL: ContextVar[Principal] = ContextVar("bai_manager_principal")
_FORWARD_KEYS = (SIGN_METHOD_KEY, SIGN_PATH_KEY, SIGN_CONTENT_TYPE_KEY)

Context: TypeAlias = grpc.aio.ServicerContext


def principal() -> Principal:
    """The authenticated caller of the current keypair-authenticated call."""
    return _PRINCIPAL.get()


class ManagerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticator: Authenticator, service_token: str) -> None:
        self._authenticator = authenticator
        self._token = service_token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        check = self._authenticate if method.startswith(KEYPAIR_SERVICES) else None
        return map_domain_errors(handler, method, ERROR_DOMAIN, check)

    async def _authenticate(self, method: str, context: Context) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        _PRINCIPAL.set(await self._authenticator.authenticate(self._signed_call(method, metadata)))

    def _signed_call(self, method: str, md: dict[str, str]) -> SignedCall:
        authorization = md.get("authorization", "")
        if not authorization:
            raise AuthFailed("missing authorization metadata", reason="MISSING_CREDENTIALS")
        try:
            access_key, signature = parse_authorization(authorization)
        except AuthError as exc:
            raise AuthFailed(exc.message, reason=exc.reason) from exc
        missing = [k for k in (SIGN_DATE_KEY, SIGN_VERSION_KEY, SIGN_HOST_KEY) if not md.get(k)]
        if missing:
            raise AuthFailed(
                f"missing signature metadata: {', '.join(missing)}", reason="MISSING_CREDENTIALS"
            )
        date, version, host = md[SIGN_DATE_KEY], md[SIGN_VERSION_KEY], md[SIGN_HOST_KEY]
        if any(k in md for k in _FORWARD_KEYS):
            # Only a trusted gateway may say that the client signed something else.
            supplied = md.get(SERVICE_TOKEN_KEY, "").encode()
            if not supplied or not hmac.compare_digest(supplied, self._token):
                raise AuthFailed(
                    "forwarded signature metadata needs a valid service token",
                    reason="UNTRUSTED_FORWARD",
                )
            if not md.get(SIGN_METHOD_KEY) or not md.get(SIGN_PATH_KEY):
                raise AuthFailed(
                    "forwarded signature needs x-bai-sign-method and -path",
                    reason="MISSING_CREDENTIALS",
                )
            request = SignedRequest(
                method=md[SIGN_METHOD_KEY],
                rel_url=md[SIGN_PATH_KEY],
                date=date,
                host=host,
                content_type=md.get(SIGN_CONTENT_TYPE_KEY, ""),
                api_version=version,
            )
        else:
            request = SignedRequest(
                method="POST",
                rel_url=method,
                date=date,
                host=host,
                content_type=GRPC_CONTENT_TYPE,
                api_version=version,
            )
        return SignedCall(request=request, access_key=access_key, signature=signature)

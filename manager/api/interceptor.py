"""One server interceptor for the manager: keypair authentication, domain-error mapping, audit.

Calls to SessionService and ImageService must carry the Backend.AI signature metadata described
atop ``session_service.proto``; the principal is then available to the servicer through
:func:`principal`. For every manager service, a raised :class:`BaiError` becomes its gRPC status
with ``google.rpc.ErrorInfo(domain="bai.manager")``.

Every changing unary call (a method named Create*, Update*, Delete*, Add*, Remove*, Restart*,
Rename*, ... on the tenancy, session and folder services, and password logins) is written to the
audit log with its caller, target and outcome, here, so that no use case can forget it.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc
from bai.common.auth import AuthError, SignedRequest, parse_authorization
from bai.common.errors import BaiError
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
from bai.manager.domain.audit import AuditEntry, AuditLog
from bai.manager.domain.auth import Authenticator, SignedCall
from bai.manager.domain.errors import AuthFailed
from bai.manager.domain.model import Principal, utcnow

__all__ = ["ERROR_DOMAIN", "KEYPAIR_SERVICES", "ManagerInterceptor", "principal"]

log = logging.getLogger(__name__)
ERROR_DOMAIN = "bai.manager"
KEYPAIR_SERVICES = (
    "/bai.manager.v1.SessionService/",
    "/bai.manager.v1.ImageService/",
    "/bai.manager.v1.AdminService/",
    "/bai.manager.v1.EventService/",
    "/bai.manager.v1.VFolderService/",
    "/bai.manager.v1.TenancyService/",
    "/bai.manager.v1.ResourceGroupService/",
)
AUDITED_SERVICES = (
    "/bai.manager.v1.TenancyService/",
    "/bai.manager.v1.ResourceGroupService/",
    "/bai.manager.v1.SessionService/",
    "/bai.manager.v1.VFolderService/",
)
LOGIN_METHOD = "/bai.manager.v1.AuthService/Authorize"
_CHANGING = re.compile(r"^(Create|Update|Delete|Add|Remove|Restart|Rename|Purge|Restore|Clone|"
                       r"Move|Invite|Share|Unshare|Leave|Accept|Reject|Set|Start|Make|"
                       r"Interrupt)([A-Za-z]+)$")
# Request fields naming the target, in order of preference.
_TARGET_FIELDS = ("session_ref", "vfolder_ref", "ref", "access_key", "id", "project_id",
                  "user_ref", "email", "name", "username", "subject")
GRPC_CONTENT_TYPE = "application/grpc"
_PRINCIPAL: ContextVar[Principal] = ContextVar("bai_manager_principal")
_FORWARD_KEYS = (SIGN_METHOD_KEY, SIGN_PATH_KEY, SIGN_CONTENT_TYPE_KEY)

Context: TypeAlias = grpc.aio.ServicerContext


def principal() -> Principal:
    """The authenticated caller of the current keypair-authenticated call."""
    return _PRINCIPAL.get()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.replace("VFolder", "Vfolder")).lower()


@functools.lru_cache(maxsize=512)  # per call on every RPC; methods are a fixed set
def audit_action(method: str) -> tuple[str, str] | None:
    """(action, target type) of an audited method, e.g. ("user.create", "user"); else None."""
    if method == LOGIN_METHOD:
        return "auth.login", "user"
    if not method.startswith(AUDITED_SERVICES):
        return None
    match = _CHANGING.match(method.rsplit("/", 1)[-1])
    if match is None:
        return None
    noun = _snake(match[2])
    target_type = {"project_members": "project", "upload_token": "vfolder",
                   "download_token": "vfolder", "files": "vfolder", "file": "vfolder",
                   "directory": "vfolder", "service": "session"}.get(noun, noun)
    return f"{noun}.{match[1].lower()}", target_type


def _target_id(request: Any) -> str:
    fields = request.DESCRIPTOR.fields_by_name
    policy = fields.get("resource_policy")
    if policy is not None and policy.message_type is not None:
        return str(request.resource_policy.name)
    for name in _TARGET_FIELDS:
        value = getattr(request, name, "") if name in fields else ""
        if isinstance(value, str) and value:
            return value
    return ""


def _detail(response: Any) -> dict[str, Any]:
    """What the response adds to the record (never a secret): created ids and access keys."""
    detail: dict[str, Any] = {}
    for name in ("keypair", "user", "project", "session", "vfolder"):
        field = response.DESCRIPTOR.fields_by_name.get(name)
        if field is not None and field.message_type is not None and response.HasField(name):
            item = getattr(response, name)
            for key in ("access_key", "id"):
                if key in item.DESCRIPTOR.fields_by_name and getattr(item, key):
                    detail[f"{name}_{key}"] = getattr(item, key)
    return detail


class ManagerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticator: Authenticator, service_token: str,
                 audit: AuditLog | None = None) -> None:
        self._authenticator = authenticator
        self._token = service_token.encode()
        self._audit = audit
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        """Per method: the servicer's handler and its wrapped twin. The wrapping depends only
        on the method, so it is built once instead of on every call (P7's hot path)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        check = self._authenticate if method.startswith(KEYPAIR_SERVICES) else None
        audited = audit_action(method) if self._audit is not None else None
        if audited is not None and handler.unary_unary:
            handler = self._audited(handler, *audited)
        return map_domain_errors(handler, method, ERROR_DOMAIN, check)

    def _audited(self, handler: grpc.RpcMethodHandler, action: str,
                 target_type: str) -> grpc.RpcMethodHandler:
        inner = handler.unary_unary

        async def behavior(request: Any, context: Context) -> Any:
            try:
                response = await inner(request, context)
            except BaiError as exc:
                await self._record(action, target_type, request, False, exc.reason, {})
                raise
            await self._record(action, target_type, request, True, "", _detail(response))
            return response

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    async def _record(self, action: str, target_type: str, request: Any, success: bool,
                      reason: str, detail: dict[str, Any]) -> None:
        who = _PRINCIPAL.get(None)
        entry = AuditEntry(
            at=utcnow(), actor_user_id=who.user_id if who else None,
            actor_access_key=who.access_key if who else None,
            actor_role=who.role.value if who else "anonymous", action=action,
            target_type=target_type, target_id=_target_id(request), success=success,
            error_reason=reason, detail=detail)
        try:
            assert self._audit is not None
            await self._audit.record(entry)
        except Exception:  # an audit store hiccup must not fail the call it records
            log.exception("could not write the audit entry for %s on %s", action,
                          entry.target_id)

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

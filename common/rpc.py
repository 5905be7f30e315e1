"""gRPC plumbing every bai server and internal client shares.

- one table from domain errors to gRPC status codes, sent with ``google.rpc.ErrorInfo`` details;
- the internal service-token check (an interceptor) and the metadata keys of keypair auth;
- health and reflection on every server.
"""

from __future__ import annotations

import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeAlias

import grpc
from bai.common import errors
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

__all__ = [
    "SERVICE_TOKEN_KEY",
    "SIGN_CONTENT_TYPE_KEY",
    "SIGN_DATE_KEY",
    "SIGN_HOST_KEY",
    "SIGN_METHOD_KEY",
    "SIGN_PATH_KEY",
    "SIGN_VERSION_KEY",
    "Check",
    "DomainErrorInterceptor",
    "ServiceTokenInterceptor",
    "abort_with",
    "add_health_and_reflection",
    "error_from_rpc",
    "map_domain_errors",
    "status_for",
]

log = logging.getLogger(__name__)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Check: TypeAlias = Callable[[str, Any], Awaitable[None]]
"""A pre-call check (e.g. authentication) given the method name and context; raises BaiError."""

SERVICE_TOKEN_KEY = "x-bai-service-token"
SIGN_DATE_KEY = "x-bai-date"
SIGN_VERSION_KEY = "x-bai-version"
SIGN_HOST_KEY = "x-bai-sign-host"
SIGN_METHOD_KEY = "x-bai-sign-method"
SIGN_PATH_KEY = "x-bai-sign-path"
SIGN_CONTENT_TYPE_KEY = "x-bai-sign-content-type"
ERROR_DOMAIN_SUFFIX = ".bai"

_CODES: dict[type[errors.BaiError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.InternalError: grpc.StatusCode.INTERNAL,
}
_ERRORS_BY_CODE = {code: cls for cls, code in _CODES.items()}


def status_for(exc: errors.BaiError, domain: str) -> status_pb2.Status:
    """A google.rpc.Status for a domain error, with ErrorInfo(reason, domain, metadata)."""
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), grpc.StatusCode.INTERNAL)
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=domain, metadata=exc.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=code.value[0], message=exc.message, details=[detail])


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], exc: errors.BaiError, domain: str
) -> None:
    """Aborts the call with the status of ``exc`` (never returns)."""
    await context.abort_with_status(rpc_status.to_status(status_for(exc, domain)))


def error_from_rpc(err: grpc.aio.AioRpcError) -> errors.BaiError:
    """Turns a failed call back into the domain error it carried (for gRPC clients)."""
    cls = _ERRORS_BY_CODE.get(err.code(), errors.InternalError)
    if err.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,):
        cls = errors.Unavailable
    reason: str | None = None
    metadata: dict[str, str] = {}
    status = rpc_status.from_call(err)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
    if err.code() == grpc.StatusCode.UNAVAILABLE and reason is None:
        reason = "UPSTREAM_UNAVAILABLE"
    return cls(err.details() or err.code().name, reason=reason, metadata=metadata)


_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class ServiceTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Rejects calls without the internal service token, except open and exempt services.

    ``exempt`` names service prefixes (e.g. ``/bai.manager.v1.SessionService/``) that
    authenticate callers by other means (keypair signatures).
    """

    def __init__(self, token: str, exempt: Iterable[str] = ()) -> None:
        self._token = token.encode()
        self._open = (*_OPEN_PREFIXES, *exempt)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        if method.startswith(self._open):
            return await continuation(details)
        supplied = dict(details.invocation_metadata or ()).get(SERVICE_TOKEN_KEY, "")
        if isinstance(supplied, str) and hmac.compare_digest(supplied.encode(), self._token):
            return await continuation(details)
        return _deny_handler(await continuation(details))


def _deny_handler(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid service token")

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid service token")
        yield  # pragma: no cover - makes this an async generator

    if handler is None:
        return None
    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(deny, **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny_stream, **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(deny, **kw)
    return grpc.stream_stream_rpc_method_handler(deny_stream, **kw)


def add_health_and_reflection(
    server: grpc.aio.Server, service_names: Iterable[str]
) -> health.aio.HealthServicer:
    """Adds the standard health service (all SERVING) and reflection; returns the health servicer.

    On shutdown, flip it to NOT_SERVING before ``server.stop(grace)``.
    """
    names = list(service_names)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return servicer


async def mark_serving(servicer: health.aio.HealthServicer, service_names: Iterable[str]) -> None:
    for name in ("", *service_names):
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


async def mark_not_serving(
    servicer: health.aio.HealthServicer, service_names: Iterable[str]
) -> None:
    for name in ("", *service_names):
        await servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


def map_domain_errors(
    handler: grpc.RpcMethodHandler, method: str, domain: str, check: Check | None = None
) -> grpc.RpcMethodHandler:
    """The same handler, with ``check`` run first and a raised BaiError turned into its status
    (with ``ErrorInfo(domain)``): the one place a servicer's domain errors become statuses."""
    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary, method, domain, check), **kw
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _unary(handler.stream_unary, method, domain, check), **kw
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _streaming(handler.unary_stream, method, domain, check), **kw
        )
    return grpc.stream_stream_rpc_method_handler(
        _streaming(handler.stream_stream, method, domain, check), **kw
    )


def _unary(inner: Any, method: str, domain: str, check: Check | None) -> Any:
    async def behavior(request: Any, context: Any) -> Any:
        try:
            if check is not None:
                await check(method, context)
            return await inner(request, context)
        except errors.BaiError as exc:
            await _abort(context, method, domain, exc)

    return behavior


def _streaming(inner: Any, method: str, domain: str, check: Check | None) -> Any:
    if not inspect.isasyncgenfunction(inner):  # the servicer writes with context.write()
        return _unary(inner, method, domain, check)

    async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            if check is not None:
                await check(method, context)
            async for response in inner(request, context):
                yield response
        except errors.BaiError as exc:
            await _abort(context, method, domain, exc)

    return behavior


async def _abort(context: Any, method: str, domain: str, exc: errors.BaiError) -> None:
    log.info("%s failed: %s: %s", method, exc.reason, exc.message)
    await abort_with(context, exc, domain)


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps every handler's domain errors to statuses with ``ErrorInfo(domain)``."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        return map_domain_errors(handler, details.method, self._domain)

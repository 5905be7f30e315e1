"""Maps every :class:`~bai.common.errors.BaiError` a servicer raises to its gRPC status with
``google.rpc.ErrorInfo(domain="bai.storage")`` — the one place errors become statuses."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from bai.common.errors import BaiError
from bai.common.rpc import abort_with
from bai.storage.errors import DOMAIN

__all__ = ["ErrorInterceptor"]

log = logging.getLogger(__name__)
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps each handler so that domain errors abort the call with their status."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, method), **kw)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, method), **kw)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, method), **kw
            )
        return grpc.stream_stream_rpc_method_handler(
            _streaming(handler.stream_stream, method), **kw
        )


def _unary(inner: Any, method: str) -> Any:
    async def behavior(request: Any, context: Context) -> Any:
        try:
            return await inner(request, context)
        except BaiError as exc:
            await _abort(context, method, exc)

    return behavior


def _streaming(inner: Any, method: str) -> Any:
    if not inspect.isasyncgenfunction(inner):
        return _unary(inner, method)

    async def behavior(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            async for response in inner(request, context):
                yield response
        except BaiError as exc:
            await _abort(context, method, exc)

    return behavior


async def _abort(context: Context, method: str, exc: BaiError) -> None:
    log.info("%s failed: %s: %s", method, exc.reason, exc.message)
    await abort_with(context, exc, DOMAIN)

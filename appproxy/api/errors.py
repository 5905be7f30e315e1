"""Turns domain errors raised by unary servicer methods into gRPC statuses, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from bai.common.errors import BaiError
from bai.common.rpc import abort_with

__all__ = ["DomainErrorInterceptor"]


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Aborts a unary call that raised a BaiError with its status and ErrorInfo(domain)."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        domain = self._domain

        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await inner(request, context)
            except BaiError as exc:
                await abort_with(context, exc, domain)

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

"""Keypair signing of gRPC calls to the manager, as a grpc.aio client interceptor.

The string to sign is Backend.AI's (bai.common.auth) with method ``POST``, path = the full gRPC
method name, content type ``application/grpc`` and host = the address the channel dials (see the
comment atop proto/bai/manager/v1/session_service.proto). Every call is signed afresh, with the
current date.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from bai.common import auth, rpc

__all__ = [
    "GRPC_CONTENT_TYPE",
    "SigningInterceptor",
    "StreamSigningInterceptor",
    "signature_metadata",
    "signing_interceptors",
]

GRPC_CONTENT_TYPE = "application/grpc"


def signature_metadata(
    method: str, host: str, access_key: str, secret_key: str, date: str | None = None
) -> list[tuple[str, str]]:
    """The metadata that authenticates a call of ``method`` dialled at ``host``."""
    date = date or auth.now_date()
    signed = auth.SignedRequest(
        method="POST",
        rel_url=method,
        date=date,
        host=host,
        content_type=GRPC_CONTENT_TYPE,
        api_version=auth.API_VERSION,
    )
    return [
        ("authorization", auth.authorization_header(access_key, auth.sign(signed, secret_key))),
        (rpc.SIGN_DATE_KEY, date),
        (rpc.SIGN_VERSION_KEY, auth.API_VERSION),
        (rpc.SIGN_HOST_KEY, host),
    ]


class _Signer:
    def __init__(
        self,
        access_key: str,
        secret_key: str,
        host: str,
        clock: Callable[[], str] = auth.now_date,
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._host = host
        self._clock = clock

    def _signed(self, details: Any) -> Any:
        method = details.method
        if isinstance(method, bytes):
            method = method.decode()
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in signature_metadata(
            method, self._host, self._access_key, self._secret_key, self._clock()
        ):
            metadata[key] = value
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
        )


class SigningInterceptor(_Signer, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Signs unary calls.

    grpc.aio files an interceptor under the first call kind it implements only, so each kind
    needs its own class: use :func:`signing_interceptors` for a channel.
    """

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._signed(client_call_details), request)


class StreamSigningInterceptor(_Signer, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Signs server-streaming calls."""

    async def intercept_unary_stream(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._signed(client_call_details), request)


def signing_interceptors(
    access_key: str, secret_key: str, host: str, clock: Callable[[], str] = auth.now_date
) -> list[Any]:
    """The interceptors that sign every unary and server-streaming call of a channel."""
    return [
        SigningInterceptor(access_key, secret_key, host, clock),
        StreamSigningInterceptor(access_key, secret_key, host, clock),
    ]

"""The gateway's one long-lived channel to the manager, and typed callables on it.

The generated ``*_pb2_grpc`` stubs are untyped, so calls go through two small generic wrappers
built from the service descriptors: :class:`Unary` and :class:`ServerStream`. Every unary call
carries a deadline; server streams may run without one (the client's disconnect cancels them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar, cast

import grpc
from bai.gateway import auth
from bai.gateway.config import GatewayConfig
from bai.pb.manager.v1 import image_service_pb2 as images_pb
from bai.pb.manager.v1 import resource_group_service_pb2 as resource_groups_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from bai.pb.manager.v1 import tenancy_service_pb2 as tenancy_pb
from bai.pb.manager.v1 import vfolder_service_pb2 as vfolders_pb
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from starlette.requests import HTTPConnection

__all__ = ["SERVICES", "RawUnary", "ServerStream", "StreamCall", "Unary", "Upstream", "method_path"]

SERVICES: tuple[ServiceDescriptor, ...] = (
    sessions_pb.DESCRIPTOR.services_by_name["SessionService"],
    images_pb.DESCRIPTOR.services_by_name["ImageService"],
    vfolders_pb.DESCRIPTOR.services_by_name["VFolderService"],
    tenancy_pb.DESCRIPTOR.services_by_name["TenancyService"],
    resource_groups_pb.DESCRIPTOR.services_by_name["ResourceGroupService"],
)
"""The user-facing manager services the gateway exposes."""

Resp = TypeVar("Resp", bound=Message)

_CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def method_path(method: MethodDescriptor) -> str:
    """The gRPC path of a method, e.g. ``/bai.manager.v1.SessionService/GetSession``."""
    return f"/{method.containing_service.full_name}/{method.name}"


def _serialize(message: Message) -> bytes:
    data: bytes = message.SerializeToString()
    return data


class Unary(Generic[Resp]):
    """A unary method of the manager, returning ``Resp``."""

    def __init__(self, channel: grpc.aio.Channel, path: str, response_type: type[Resp]) -> None:
        self._callable = channel.unary_unary(
            path, request_serializer=_serialize, response_deserializer=response_type.FromString,
            _registered_method=True,  # as generated stubs do: gRPC core resolves the path once
        )

    async def __call__(self, request: Message, *, metadata: auth.Metadata, deadline: float) -> Resp:
        """Calls the method; ``deadline`` is in seconds from now."""
        return cast(Resp, await self._callable(request, metadata=metadata, timeout=deadline))


class RawUnary:
    """A unary method of the manager whose reply is returned serialized (``bytes``), for
    callers that memoize what they derive from identical replies."""

    def __init__(self, channel: grpc.aio.Channel, path: str) -> None:
        self._callable = channel.unary_unary(
            path, request_serializer=_serialize, response_deserializer=None,
            _registered_method=True,
        )

    async def __call__(self, request: Message, *, metadata: auth.Metadata,
                       deadline: float) -> bytes:
        """Calls the method; ``deadline`` is in seconds from now."""
        return cast(bytes, await self._callable(request, metadata=metadata, timeout=deadline))


class StreamCall(Generic[Resp]):
    """A started server-streaming call: iterate it once; ``cancel`` ends it early."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._iterator: AsyncIterator[Resp] = call.__aiter__()

    def __aiter__(self) -> AsyncIterator[Resp]:
        return self._iterator

    def cancel(self) -> None:
        """Cancels the call (a no-op once it has ended)."""
        self._call.cancel()


class ServerStream(Generic[Resp]):
    """A server-streaming method of the manager, yielding ``Resp`` messages."""

    def __init__(self, channel: grpc.aio.Channel, path: str, response_type: type[Resp]) -> None:
        self._callable = channel.unary_stream(
            path, request_serializer=_serialize, response_deserializer=response_type.FromString,
            _registered_method=True,
        )

    def start(
        self, request: Message, *, metadata: auth.Metadata, deadline: float | None
    ) -> StreamCall[Resp]:
        """Starts the call (``deadline`` in seconds, None for none); iterate it or cancel it."""
        return StreamCall(self._callable(request, metadata=metadata, timeout=deadline))

    @asynccontextmanager
    async def open(
        self, request: Message, *, metadata: auth.Metadata, deadline: float | None
    ) -> AsyncIterator[StreamCall[Resp]]:
        """Starts the call; leaving the block cancels it if it is still running."""
        call = self.start(request, metadata=metadata, deadline=deadline)
        try:
            yield call
        finally:
            call.cancel()


def _method(service: ServiceDescriptor, name: str) -> str:
    return method_path(service.methods_by_name[name])


class Upstream:
    """The channel plus the calls the Backend.AI-compatible routes make."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.channel: grpc.aio.Channel = grpc.aio.insecure_channel(
            config.manager_addr, options=_CHANNEL_OPTIONS
        )
        sessions = SERVICES[0]
        ch = self.channel
        self.create_session = Unary(
            ch, _method(sessions, "CreateSession"), sessions_pb.CreateSessionResponse
        )
        self.get_session = Unary(
            ch, _method(sessions, "GetSession"), sessions_pb.GetSessionResponse
        )
        self.get_session_raw = RawUnary(ch, _method(sessions, "GetSession"))
        """GetSession, the reply left serialized (``GET /session/{ref}``'s fast path)."""
        self.delete_session = Unary(
            ch, _method(sessions, "DeleteSession"), sessions_pb.DeleteSessionResponse
        )
        self.restart_session = Unary(
            ch, _method(sessions, "RestartSession"), sessions_pb.RestartSessionResponse
        )
        self.interrupt_session = Unary(
            ch, _method(sessions, "InterruptSession"), sessions_pb.InterruptSessionResponse
        )
        self.execute = ServerStream(
            ch, _method(sessions, "ExecuteSession"), sessions_pb.ExecuteSessionResponse
        )
        self.logs = ServerStream(
            ch, _method(sessions, "StreamSessionLogs"), sessions_pb.StreamSessionLogsResponse
        )
        self.unary: dict[str, Unary[Message]] = {}
        """Every unary method of SERVICES by full name (for the native REST routes)."""
        self.streams: dict[str, ServerStream[Message]] = {}
        """Every server-streaming method of SERVICES by full name."""
        for service in SERVICES:
            for method in service.methods:
                output = message_factory.GetMessageClass(method.output_type)
                if method.server_streaming:
                    self.streams[method.full_name] = ServerStream(ch, method_path(method), output)
                else:
                    self.unary[method.full_name] = Unary(ch, method_path(method), output)

    def metadata(self, conn: HTTPConnection) -> auth.Metadata:
        """The forwarded signature of ``conn`` plus the service token (raises AuthError)."""
        return auth.service_metadata(conn, self.config.service_token)

    def scope_metadata(self, scope: auth.Scope) -> auth.Metadata:
        """:meth:`metadata` of an ASGI scope (for routes served without a Request object)."""
        return auth.extract_scope(scope).metadata(self.config.service_token)

    async def close(self) -> None:
        await self.channel.close(grace=None)

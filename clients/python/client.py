"""An asyncio client of the manager's user-facing gRPC services (SessionService, ImageService).

Failed calls raise the domain error they carried (:class:`bai.common.errors.BaiError`, with the
``google.rpc.ErrorInfo`` reason), never ``grpc.aio.AioRpcError``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from bai.client.auth import signing_interceptors
from bai.common import errors, rpc
from bai.pb.manager.v1 import image_service_pb2 as images_pb
from bai.pb.manager.v1 import session_pb2 as session_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from google.protobuf.message import Message

__all__ = ["DEFAULT_MANAGER_ADDR", "ClientConfig", "ManagerClient"]

DEFAULT_MANAGER_ADDR = "127.0.0.1:8091"
_SESSIONS = "/bai.manager.v1.SessionService/"
_IMAGES = "/bai.manager.v1.ImageService/"
_PAGE_SIZE = 200

Resp = TypeVar("Resp", bound=Message)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where the manager is and who the caller is."""

    manager_addr: str = DEFAULT_MANAGER_ADDR
    """``host:port`` of the manager; also the host the signatures name."""
    access_key: str = ""
    """Keypair access key (``BACKEND_ACCESS_KEY``)."""
    secret_key: str = ""
    """Keypair secret key (``BACKEND_SECRET_KEY``)."""
    timeout: float = 30.0
    """Deadline, in seconds, of ordinary unary calls."""
    create_timeout: float = 600.0
    """Deadline of a CreateSession that waits for RUNNING without its own limit."""

    @classmethod
    def from_env(
        cls, manager_addr: str | None = None, timeout: float | None = None
    ) -> ClientConfig:
        """From ``BAI_MANAGER_ADDR``, ``BACKEND_ACCESS_KEY`` and ``BACKEND_SECRET_KEY``."""
        return cls(
            manager_addr=manager_addr or os.environ.get("BAI_MANAGER_ADDR") or DEFAULT_MANAGER_ADDR,
            access_key=os.environ.get("BACKEND_ACCESS_KEY", ""),
            secret_key=os.environ.get("BACKEND_SECRET_KEY", ""),
            timeout=timeout or 30.0,
        )


class ManagerClient:
    """One signed channel to the manager. Use as ``async with ManagerClient(config) as c``."""

    def __init__(self, config: ClientConfig) -> None:
        if not config.access_key or not config.secret_key:
            raise errors.Unauthenticated(
                "set BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY", reason="MISSING_CREDENTIALS"
            )
        self.config = config
        interceptors = signing_interceptors(
            config.access_key, config.secret_key, config.manager_addr
        )
        self._channel: Any = grpc.aio.insecure_channel(
            config.manager_addr, interceptors=interceptors
        )

    async def __aenter__(self) -> ManagerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def _unary(
        self, path: str, request: Message, response_type: type[Resp], deadline: float | None = None
    ) -> Resp:
        call = self._channel.unary_unary(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            return cast(Resp, await call(request, timeout=deadline or self.config.timeout))
        except grpc.aio.AioRpcError as exc:
            raise rpc.error_from_rpc(exc) from None

    async def call(
        self, path: str, request: Message, response_type: type[Resp], deadline: float | None = None
    ) -> Resp:
        """A unary call by full method path (for services without typed helpers here)."""
        return await self._unary(path, request, response_type, deadline)

    async def _stream(
        self, path: str, request: Message, response_type: type[Resp]
    ) -> AsyncGenerator[Resp, None]:
        method = self._channel.unary_stream(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        call = method(request)
        try:
            async for message in call:
                yield cast(Resp, message)
        except grpc.aio.AioRpcError as exc:
            raise rpc.error_from_rpc(exc) from None
        finally:
            call.cancel()

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(
        self, request: sessions_pb.CreateSessionRequest
    ) -> sessions_pb.CreateSessionResponse:
        """Creates (or reuses) a session; unless enqueue-only, returns once it runs or fails."""
        deadline = self.config.timeout
        if not request.enqueue_only:
            wait = request.max_wait.ToTimedelta().total_seconds() or self.config.create_timeout
            deadline += wait
        return await self._unary(
            _SESSIONS + "CreateSession", request, sessions_pb.CreateSessionResponse, deadline
        )

    async def start_service(self, ref: str, service: str) -> sessions_pb.StartServiceResponse:
        """Starts an app in the session and returns where to reach it (waits for the app)."""
        request = sessions_pb.StartServiceRequest(session_ref=ref, service=service)
        return await self._unary(
            _SESSIONS + "StartService", request, sessions_pb.StartServiceResponse,
            self.config.timeout + 60.0,
        )

    async def get_session(self, ref: str) -> session_pb.Session:
        request = sessions_pb.GetSessionRequest(session_ref=ref)
        response = await self._unary(
            _SESSIONS + "GetSession", request, sessions_pb.GetSessionResponse
        )
        return response.session

    async def list_sessions(
        self, states: Iterable[session_pb.Session.State] = ()
    ) -> list[session_pb.Session]:
        """Every session of the caller in ``states`` (default: the live ones), newest first."""
        sessions: list[session_pb.Session] = []
        token = ""
        while True:
            request = sessions_pb.ListSessionsRequest(
                page_size=_PAGE_SIZE, page_token=token, states=list(states)
            )
            page = await self._unary(
                _SESSIONS + "ListSessions", request, sessions_pb.ListSessionsResponse
            )
            sessions.extend(page.sessions)
            token = page.next_page_token
            if not token:
                return sessions

    async def delete_session(self, ref: str, *, forced: bool = False) -> session_pb.Session:
        request = sessions_pb.DeleteSessionRequest(session_ref=ref, forced=forced)
        response = await self._unary(
            _SESSIONS + "DeleteSession", request, sessions_pb.DeleteSessionResponse
        )
        return response.session

    async def interrupt(self, ref: str) -> None:
        request = sessions_pb.InterruptSessionRequest(session_ref=ref)
        await self._unary(
            _SESSIONS + "InterruptSession", request, sessions_pb.InterruptSessionResponse
        )

    def execute(
        self, request: sessions_pb.ExecuteSessionRequest
    ) -> AsyncGenerator[sessions_pb.ExecuteSessionResponse, None]:
        """Streams one ExecuteSession call (close the iterator to cancel it)."""
        return self._stream(
            _SESSIONS + "ExecuteSession", request, sessions_pb.ExecuteSessionResponse
        )

    def logs(self, ref: str, *, follow: bool = False) -> AsyncGenerator[str, None]:
        """The main kernel's container log, chunk by chunk."""
        request = sessions_pb.StreamSessionLogsRequest(session_ref=ref, follow=follow)
        return self._log_data(request)

    async def _log_data(
        self, request: sessions_pb.StreamSessionLogsRequest
    ) -> AsyncGenerator[str, None]:
        async for chunk in self._stream(
            _SESSIONS + "StreamSessionLogs", request, sessions_pb.StreamSessionLogsResponse
        ):
            yield chunk.data

    # -- images -----------------------------------------------------------------------------

    async def list_images(self) -> list[images_pb.Image]:
        images: list[images_pb.Image] = []
        token = ""
        while True:
            request = images_pb.ListImagesRequest(page_token=token)
            page = await self._unary(_IMAGES + "ListImages", request, images_pb.ListImagesResponse)
            images.extend(page.images)
            token = page.next_page_token
            if not token:
                return images

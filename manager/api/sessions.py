"""SessionService servicer: convert, call one domain method, convert back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from bai.common.errors import FailedPrecondition
from bai.manager.api.convert import (
    create_request,
    exec_input,
    exec_output,
    session_to_proto,
    state_from_proto,
)
from bai.manager.api.interceptor import principal
from bai.manager.domain.apps import AppService
from bai.manager.domain.errors import InvalidSessionRequest
from bai.manager.domain.model import SessionRecord, SessionState
from bai.manager.domain.sessions import SessionService
from bai.pb.manager.v1 import session_service_pb2 as pb
from bai.pb.manager.v1 import session_service_pb2_grpc as pb_grpc

__all__ = ["SessionServicer"]

Context: TypeAlias = grpc.aio.ServicerContext


def _states(values: list[int]) -> frozenset[SessionState]:
    try:
        return frozenset(state_from_proto(v) for v in values)
    except ValueError as exc:
        raise InvalidSessionRequest("states holds an unknown or unspecified state") from exc


class _ResponseMemo:
    """The GetSession response last built for each cached :class:`SessionRecord` object.

    The session read cache hands out the very same immutable record until it changes, so the
    response built from it can be reused: conversion was the servicer's largest cost on the
    hot ``GET /session`` path (P7). Entries are keyed by the record's identity and checked with
    ``is`` (the memo holds the record, so its id cannot be reused while the entry lives); a
    changed session is a new record object and misses. Responses are never mutated after they
    are built: gRPC only serializes them.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self._entries: dict[int, tuple[SessionRecord, pb.GetSessionResponse]] = {}
        self._max = max_entries

    def response(self, record: SessionRecord) -> pb.GetSessionResponse:
        hit = self._entries.get(id(record))
        if hit is not None and hit[0] is record:
            return hit[1]
        response = pb.GetSessionResponse(session=session_to_proto(record))
        if len(self._entries) >= self._max:  # bounded; stale entries go with the rest
            self._entries.clear()
        self._entries[id(record)] = (record, response)
        return response


class SessionServicer(pb_grpc.SessionServiceServicer):
    def __init__(self, sessions: SessionService, apps: AppService | None = None) -> None:
        self._sessions = sessions
        self._apps = apps
        self._get_responses = _ResponseMemo()

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: Context
    ) -> pb.CreateSessionResponse:
        result = await self._sessions.create(principal(), create_request(request))
        return pb.CreateSessionResponse(session=session_to_proto(result.session),
                                        created=result.created)

    async def GetSession(
        self, request: pb.GetSessionRequest, context: Context
    ) -> pb.GetSessionResponse:
        session = await self._sessions.get(principal(), request.session_ref)
        return self._get_responses.response(session)

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.ListSessionsResponse:
        records, token = await self._sessions.list_sessions(
            principal(), _states(list(request.states)), request.page_size, request.page_token)
        return pb.ListSessionsResponse(sessions=[session_to_proto(s) for s in records],
                                       next_page_token=token)

    async def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: Context
    ) -> pb.DeleteSessionResponse:
        session = await self._sessions.delete(principal(), request.session_ref,
                                              forced=request.forced)
        return pb.DeleteSessionResponse(session=session_to_proto(session))

    async def RestartSession(
        self, request: pb.RestartSessionRequest, context: Context
    ) -> pb.RestartSessionResponse:
        session = await self._sessions.restart(principal(), request.session_ref)
        return pb.RestartSessionResponse(session=session_to_proto(session))

    async def ExecuteSession(
        self, request: pb.ExecuteSessionRequest, context: Context
    ) -> AsyncIterator[pb.ExecuteSessionResponse]:
        outputs = self._sessions.execute(principal(), request.session_ref, exec_input(request))
        async for output in outputs:
            yield exec_output(output)

    async def InterruptSession(
        self, request: pb.InterruptSessionRequest, context: Context
    ) -> pb.InterruptSessionResponse:
        await self._sessions.interrupt(principal(), request.session_ref)
        return pb.InterruptSessionResponse()

    async def StreamSessionLogs(
        self, request: pb.StreamSessionLogsRequest, context: Context
    ) -> AsyncIterator[pb.StreamSessionLogsResponse]:
        chunks = self._sessions.logs(principal(), request.session_ref, follow=request.follow,
                                     tail_lines=request.tail_lines)
        async for chunk in chunks:
            yield pb.StreamSessionLogsResponse(data=chunk.data, stream=chunk.stream)

    async def StartService(
        self, request: pb.StartServiceRequest, context: Context
    ) -> pb.StartServiceResponse:
        if self._apps is None:
            raise FailedPrecondition("apps need the app proxy (--appproxy)", reason="NO_APP_PROXY")
        app = await self._apps.start(principal(), request.session_ref, request.service,
                                     dict(request.environ), list(request.arguments),
                                     raw_tcp=request.raw_tcp)
        return pb.StartServiceResponse(
            url=app.url, host=app.host, port=app.port, token=app.token, protocol=app.protocol,
            circuit_id=app.circuit_id, ssh_private_key=app.ssh_private_key,
            ssh_user=app.ssh_user)

"""AdminService and EventService servicers: convert, call one domain method, convert back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TypeAlias

import grpc
from bai.manager.api.convert import session_to_proto, state_from_proto
from bai.manager.api.interceptor import principal
from bai.manager.domain import slots
from bai.manager.domain.admin import AdminQueries, KeypairView, UserView, page_of
from bai.manager.domain.errors import InvalidSessionRequest
from bai.manager.domain.model import AgentRecord, SessionState
from bai.manager.domain.session_events import SessionEvent, SessionEventWatcher
from bai.pb.manager.v1 import admin_service_pb2 as pb
from bai.pb.manager.v1 import admin_service_pb2_grpc as pb_grpc
from bai.pb.manager.v1 import event_service_pb2 as ev_pb
from bai.pb.manager.v1 import event_service_pb2_grpc as ev_grpc
from bai.pb.manager.v1 import session_pb2
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["AdminServicer", "EventServicer"]

Context: TypeAlias = grpc.aio.ServicerContext


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _page(request: pb.PageRequest) -> tuple[int, int]:
    return request.offset, request.limit


def user_to_proto(u: UserView) -> pb.User:
    return pb.User(id=str(u.id), email=u.email, username=u.username, role=u.role.value,
                   domain=u.domain, status=u.status, create_time=_ts(u.created_at),
                   projects=[pb.ProjectRef(id=str(p.id), name=p.name) for p in u.projects],
                   main_access_key=u.main_access_key, full_name=u.full_name,
                   description=u.description, need_password_change=u.need_password_change,
                   resource_policy=u.resource_policy, has_password=u.has_password)


def keypair_to_proto(k: KeypairView) -> pb.Keypair:
    return pb.Keypair(access_key=k.access_key, secret_key=k.secret_key, user_id=str(k.user_id),
                      user_email=k.user_email, is_active=k.is_active, is_admin=k.is_admin,
                      create_time=_ts(k.created_at), projects=list(k.projects),
                      concurrency_used=k.concurrency_used, role=k.role.value,
                      resource_policy=k.resource_policy, rate_limit=k.rate_limit,
                      last_used_time=_ts(k.last_used) if k.last_used else None,
                      user_full_name=k.user_full_name, user_domain=k.domain)


def agent_to_proto(a: AgentRecord) -> pb.Agent:
    return pb.Agent(id=a.id, status=a.status.value, architecture=a.architecture,
                    resource_group=a.resource_group, capacity=slots.to_strings(a.capacity),
                    occupied=slots.to_strings(a.occupied), first_contact=_ts(a.first_contact),
                    last_heartbeat=_ts(a.last_heartbeat), version=a.version)


def _states(values: list[int]) -> frozenset[SessionState]:
    try:
        return frozenset(state_from_proto(v) for v in values)
    except ValueError as exc:
        raise InvalidSessionRequest("states holds an unknown or unspecified state") from exc


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, queries: AdminQueries) -> None:
        self._queries = queries

    async def GetKeypair(
        self, request: pb.GetKeypairRequest, context: Context
    ) -> pb.GetKeypairResponse:
        keypair = await self._queries.own_keypair(principal())
        return pb.GetKeypairResponse(keypair=keypair_to_proto(keypair))

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: Context
    ) -> pb.ListUsersResponse:
        users, total = await self._queries.users(
            principal(), request.status, page_of(*_page(request.page)), request.filter,
            request.order, request.project_id)
        return pb.ListUsersResponse(users=[user_to_proto(u) for u in users], total_count=total)

    async def ListKeypairs(
        self, request: pb.ListKeypairsRequest, context: Context
    ) -> pb.ListKeypairsResponse:
        is_active = request.is_active if request.HasField("is_active") else None
        keypairs, total = await self._queries.keypairs(
            principal(), is_active, request.domain, page_of(*_page(request.page)),
            request.filter, request.order)
        return pb.ListKeypairsResponse(keypairs=[keypair_to_proto(k) for k in keypairs],
                                       total_count=total)

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: Context
    ) -> pb.ListAgentsResponse:
        agents, total = await self._queries.agents(principal(), request.status,
                                                   request.resource_group,
                                                   page_of(*_page(request.page)))
        return pb.ListAgentsResponse(agents=[agent_to_proto(a) for a in agents],
                                     total_count=total)

    async def QuerySessions(
        self, request: pb.QuerySessionsRequest, context: Context
    ) -> pb.QuerySessionsResponse:
        sessions, total = await self._queries.sessions(
            principal(), _states(list(request.states)), request.access_key,
            page_of(*_page(request.page)))
        return pb.QuerySessionsResponse(sessions=[session_to_proto(s) for s in sessions],
                                        total_count=total)


def _event(e: SessionEvent) -> ev_pb.SessionEvent:
    return ev_pb.SessionEvent(
        name=e.name, session_id=str(e.session.id), session_name=e.session.name,
        kernel_id=str(e.kernel_id) if e.kernel_id else "",
        state=session_pb2.Session.State.Value(f"STATE_{e.state.value}"),
        reason=e.reason, exit_code=e.session.exit_code or 0, time=_ts(e.at),
        access_key=e.session.access_key)


class EventServicer(ev_grpc.EventServiceServicer):
    def __init__(self, watcher: SessionEventWatcher) -> None:
        self._watcher = watcher

    async def WatchSessionEvents(
        self, request: ev_pb.WatchSessionEventsRequest, context: Context
    ) -> AsyncIterator[ev_pb.WatchSessionEventsResponse]:
        async for item in self._watcher.watch(principal(), request.session_ref):
            if isinstance(item, SessionEvent):
                yield ev_pb.WatchSessionEventsResponse(event=_event(item))
            else:
                yield ev_pb.WatchSessionEventsResponse(subscribed=session_to_proto(item))

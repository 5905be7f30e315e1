"""Typed callables for the manager's AdminService and EventService on the gateway's channel, and
the one mapping of a failed call to a GraphQL error that every admin GraphQL module uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from bai.common import rpc
from bai.gateway.auth import Metadata
from bai.gateway.upstream import ServerStream, Unary, Upstream, method_path
from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
from bai.pb.manager.v1 import auth_service_pb2 as auth_pb
from bai.pb.manager.v1 import event_service_pb2 as events_pb
from bai.pb.manager.v1 import tenancy_service_pb2 as tenancy_pb
from google.protobuf.message import Message
from graphql import GraphQLError
from starlette.requests import HTTPConnection

__all__ = ["AdminCalls", "TenancyCalls", "admin_calls", "graphql_error"]

_ADMIN = admin_pb.DESCRIPTOR.services_by_name["AdminService"]
_EVENTS = events_pb.DESCRIPTOR.services_by_name["EventService"]


def graphql_error(exc: grpc.aio.AioRpcError) -> GraphQLError:
    """A failed manager call as a GraphQL error: the manager's message, with the gRPC code and
    the manager's UPPER_SNAKE reason in ``extensions`` (the route maps auth codes to HTTP)."""
    err = rpc.error_from_rpc(exc)
    return GraphQLError(err.message or exc.code().name,
                        extensions={"code": exc.code().name, "reason": err.reason})


_TENANCY = tenancy_pb.DESCRIPTOR.services_by_name["TenancyService"]
_AUTH = auth_pb.DESCRIPTOR.services_by_name["AuthService"]


@dataclass(slots=True)
class TenancyCalls:
    """TenancyService and AuthService methods by name, each built once on first use."""

    up: Upstream
    _calls: dict[str, Unary[Any]] = field(default_factory=dict)

    async def __call__(self, method: str, request: Message, metadata: Metadata) -> Any:
        call = self._calls.get(method)
        if call is None:
            service, module = (_AUTH, auth_pb) if method == "Authorize" else (_TENANCY,
                                                                             tenancy_pb)
            descriptor = service.methods_by_name[method]
            response_type = getattr(module, descriptor.output_type.name)
            call = self._calls[method] = Unary(self.up.channel, method_path(descriptor),
                                               response_type)
        return await call(request, metadata=metadata, deadline=self.up.config.call_timeout)


@dataclass(frozen=True, slots=True)
class AdminCalls:
    get_keypair: Unary[admin_pb.GetKeypairResponse]
    list_users: Unary[admin_pb.ListUsersResponse]
    list_keypairs: Unary[admin_pb.ListKeypairsResponse]
    list_agents: Unary[admin_pb.ListAgentsResponse]
    query_sessions: Unary[admin_pb.QuerySessionsResponse]
    watch_session: ServerStream[events_pb.WatchSessionEventsResponse]
    tenancy: TenancyCalls


def _build(up: Upstream) -> AdminCalls:
    ch = up.channel
    m = _ADMIN.methods_by_name
    return AdminCalls(
        get_keypair=Unary(ch, method_path(m["GetKeypair"]), admin_pb.GetKeypairResponse),
        list_users=Unary(ch, method_path(m["ListUsers"]), admin_pb.ListUsersResponse),
        list_keypairs=Unary(ch, method_path(m["ListKeypairs"]), admin_pb.ListKeypairsResponse),
        list_agents=Unary(ch, method_path(m["ListAgents"]), admin_pb.ListAgentsResponse),
        query_sessions=Unary(ch, method_path(m["QuerySessions"]),
                             admin_pb.QuerySessionsResponse),
        watch_session=ServerStream(ch, method_path(_EVENTS.methods_by_name["WatchSessionEvents"]),
                                   events_pb.WatchSessionEventsResponse),
        tenancy=TenancyCalls(up),
    )


def admin_calls(conn: HTTPConnection) -> tuple[Upstream, AdminCalls]:
    """The app's upstream and its admin callables (built once per upstream)."""
    up: Upstream = conn.app.state.upstream
    calls: AdminCalls | None = getattr(conn.app.state, "admin_calls", None)
    if calls is None or getattr(conn.app.state, "admin_calls_for", None) is not up:
        calls = _build(up)
        conn.app.state.admin_calls = calls
        conn.app.state.admin_calls_for = up
    return up, calls

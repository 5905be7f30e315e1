"""GraphQL subscriptions over WebSocket (``graphql-transport-ws``) at ``/admin/gql``.

``subscription { session_events(session_name: "x") { name session_id ... } }`` streams one
session's lifecycle events (the same ones ``GET /events/session`` sends) from the manager's
``EventService.WatchSessionEvents``; the subscription completes after the events of a terminal
state. The handshake is signed like any request (the official client signs WebSocket
handshakes as ``GET``); ``connection_init`` is acknowledged only after the manager accepted
that signature, otherwise the socket closes with 4403. Every subscription of the connection is
made with the handshake's signature, so the manager re-checks it (including the 5-minute clock
skew window: start subscriptions soon after connecting, as clients do).

Only the WebSocket side of Strawberry's router is used: queries and mutations stay on the
``POST /admin/gql`` route.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import strawberry
from bai.common import auth, rpc
from bai.gateway.admin.calls import AdminCalls, admin_calls, graphql_error
from bai.gateway.auth import Metadata
from bai.gateway.upstream import Upstream
from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
from bai.pb.manager.v1 import event_service_pb2 as events_pb
from bai.pb.manager.v1 import session_pb2
from graphql import GraphQLError
from starlette.requests import HTTPConnection
from starlette.routing import WebSocketRoute
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.schema.base import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

__all__ = ["SessionLifecycleEvent", "Subscription", "SubscriptionContext", "subscription_router"]

log = logging.getLogger(__name__)
_SCOPES = frozenset({"*", "session", "kernel"})


@strawberry.type(description="A session or kernel lifecycle event, named as Backend.AI names "
                 "them (session_started, kernel_terminated, ...).")
class SessionLifecycleEvent:
    name: str
    session_id: str
    session_name: str
    kernel_id: str | None
    status: str = strawberry.field(description="The state the session entered.")
    reason: str
    exit_code: int | None = strawberry.field(
        description="Main kernel's exit code (session_success/failure/terminated only).")
    owner_access_key: str
    created_at: datetime

    @classmethod
    def of(cls, event: events_pb.SessionEvent) -> SessionLifecycleEvent:
        final = event.name in ("session_success", "session_failure", "session_terminated")
        return cls(
            name=event.name, session_id=event.session_id, session_name=event.session_name,
            kernel_id=event.kernel_id or None,
            status=session_pb2.Session.State.Name(event.state).removeprefix("STATE_"),
            reason=event.reason, exit_code=event.exit_code if final else None,
            owner_access_key=event.access_key,
            created_at=event.time.ToDatetime(tzinfo=UTC))


class SubscriptionContext(BaseContext):
    """What a subscription resolver needs: the manager calls and the handshake's signature."""

    def __init__(self, up: Upstream, calls: AdminCalls, metadata: Metadata | None,
                 auth_error: auth.AuthError | None) -> None:
        super().__init__()
        self.up = up
        self.calls = calls
        self.metadata = metadata
        self.auth_error = auth_error


def _scopes(scope: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in scope.split(",") if s.strip()) or frozenset({"*"})
    if scopes - _SCOPES:
        raise GraphQLError(f"unknown event scope(s): {', '.join(sorted(scopes - _SCOPES))}",
                           extensions={"code": "INVALID_ARGUMENT", "reason": "INVALID_EVENT_SCOPE"})
    return scopes


@strawberry.type
class Subscription:
    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="One session's lifecycle events until it ends.")
    async def session_events(
        self, info: strawberry.Info, session_name: str, scope: str = "*"
    ) -> AsyncGenerator[SessionLifecycleEvent, None]:
        ctx: SubscriptionContext = info.context
        if ctx.metadata is None:
            raise GraphQLError("the connection is not signed",
                               extensions={"code": "UNAUTHENTICATED"})
        scopes = _scopes(scope)
        call = ctx.calls.watch_session.start(
            events_pb.WatchSessionEventsRequest(session_ref=session_name),
            metadata=ctx.metadata, deadline=None)
        try:
            async for message in call:
                if not message.HasField("event"):
                    continue  # the first message (the session as found)
                name = message.event.name
                if "*" in scopes or name.split("_", 1)[0] in scopes:
                    yield SessionLifecycleEvent.of(message.event)
        except grpc.aio.AioRpcError as exc:
            raise graphql_error(exc) from None
        finally:
            call.cancel()


@dataclass(frozen=True, slots=True)
class _Rejection:
    reason: str
    message: str

    def error(self) -> ConnectionRejectionError:
        return ConnectionRejectionError({"reason": self.reason, "message": self.message})


class _SubscriptionRouter(GraphQLRouter[SubscriptionContext, None]):
    async def on_ws_connect(self, context: SubscriptionContext) -> Any:
        """Acknowledges ``connection_init`` only when the manager accepts the signature."""
        if context.metadata is None:
            error = context.auth_error
            raise _Rejection(error.reason if error else "MISSING_AUTHORIZATION",
                             error.message if error else "the request is not signed").error()
        try:
            await context.calls.get_keypair(admin_pb.GetKeypairRequest(),
                                            metadata=context.metadata,
                                            deadline=context.up.config.call_timeout)
        except grpc.aio.AioRpcError as exc:
            err = rpc.error_from_rpc(exc)
            raise _Rejection(err.reason or exc.code().name, err.message).error() from None
        return None


async def _context(conn: HTTPConnection) -> SubscriptionContext:
    up, calls = admin_calls(conn)
    try:
        return SubscriptionContext(up, calls, up.metadata(conn), None)
    except auth.AuthError as exc:
        return SubscriptionContext(up, calls, None, exc)


def subscription_router(schema: BaseSchema, path: str = "/admin/gql") -> GraphQLRouter[Any, Any]:
    """A router holding only the WebSocket route of Strawberry's GraphQL view for ``schema``."""
    router = _SubscriptionRouter(
        schema, path=path, graphql_ide=None, allow_queries_via_get=False,
        context_getter=_context, subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        include_in_schema=False)
    router.routes[:] = [r for r in router.routes if isinstance(r, WebSocketRoute)]
    return router

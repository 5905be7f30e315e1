"""``POST /admin/gql``: the GraphQL queries the official client sends (wire doc §10), Strawberry.

Every resolver is one gRPC call to the manager's AdminService or SessionService carrying the
client's forwarded signature; the manager authenticates and decides what the caller may see.
Responses contain exactly the selected fields in selection order (a real GraphQL executor).
JSON-ish fields are ``JSONString`` scalars: JSON-encoded strings. Oversized queries are refused
with a GraphQL error (depth, token and alias limits), never a 500.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NewType, TypeVar
from uuid import UUID

import grpc
import strawberry
from bai.gateway.admin.calls import AdminCalls, admin_calls, graphql_error
from bai.gateway.admin.policies_gql import PolicyMutation, PolicyQuery
from bai.gateway.admin.resource_groups_gql import ResourceGroupMutation, ResourceGroupQuery
from bai.gateway.admin.subscriptions import Subscription
from bai.gateway.admin.tenancy_gql import TenancyMutation, TenancyQuery
from bai.gateway.admin.vfolders_gql import BigInt as VFolderBigInt
from bai.gateway.admin.vfolders_gql import VFolderQuery
from bai.gateway.auth import Metadata
from bai.gateway.errors import problem_for_code
from bai.gateway.upstream import Upstream
from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
from bai.pb.manager.v1 import session_pb2 as session_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from bai.pb.manager.v1 import tenancy_service_pb2 as tenancy_pb
from fastapi import APIRouter
from google.protobuf.timestamp_pb2 import Timestamp
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types.scalar import ScalarDefinition

__all__ = ["MAX_DEPTH", "MAX_QUERY_BYTES", "router", "schema"]

log = logging.getLogger(__name__)

MAX_DEPTH = 6
"""Deepest selection nesting accepted (the client's deepest query is 3)."""
MAX_TOKENS = 2000
MAX_ALIASES = 30
MAX_QUERY_BYTES = 20_000
MAX_LIMIT = 1000

JSONString = NewType("JSONString", object)
"""A JSON value, sent as its JSON encoding (Backend.AI's JSONString)."""
BigInt = NewType("BigInt", int)
"""An integer that may exceed 32 bits."""

_SCALARS: dict[object, ScalarDefinition] = {
    JSONString: strawberry.scalar(
        name="JSONString",
        serialize=lambda value: json.dumps(value),
        parse_value=lambda value: json.loads(value) if isinstance(value, str) else value,
        description="A JSON value, encoded as a string.",
    ),
    BigInt: strawberry.scalar(
        name="BigInt",
        serialize=lambda value: int(value),
        parse_value=lambda value: int(value),
        description="An integer that may exceed 32 bits.",
    ),
}

_SCALARS[VFolderBigInt] = _SCALARS[BigInt]  # vfolders_gql's BigInt is the same scalar

# Backend.AI statuses bai has no counterpart for: accepted in filters, matching nothing.
_FOREIGN_STATUSES = frozenset({"RUNNING_DEGRADED"})


@dataclass(frozen=True, slots=True)
class Context:
    up: Upstream
    calls: AdminCalls
    metadata: Metadata


R = TypeVar("R")


async def _call(ctx: Context, call: Awaitable[R]) -> R:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise graphql_error(exc) from None


def _ctx(info: strawberry.Info[Context, None]) -> Context:
    return info.context


def _time(ts: Timestamp) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    when: datetime = ts.ToDatetime(tzinfo=UTC)
    return when


def _page(limit: int, offset: int) -> admin_pb.PageRequest:
    if not 1 <= limit <= MAX_LIMIT:
        raise GraphQLError(f"limit must be between 1 and {MAX_LIMIT}",
                           extensions={"code": "INVALID_ARGUMENT"})
    if offset < 0:
        raise GraphQLError("offset must not be negative", extensions={"code": "INVALID_ARGUMENT"})
    return admin_pb.PageRequest(limit=limit, offset=offset)


def _unsupported(**args: Any) -> None:
    for name, value in args.items():
        if value is not None:
            raise GraphQLError(f"argument {name!r} is not supported by this server",
                               extensions={"code": "INVALID_ARGUMENT"})


def _slots(values: Any) -> dict[str, str]:
    return dict(values)


def _sum_slots(kernels: Any) -> dict[str, str]:
    totals: dict[str, Decimal] = {}
    for kernel in kernels:
        for slot, value in kernel.occupied_slots.items():
            try:
                totals[slot] = totals.get(slot, Decimal(0)) + Decimal(value)
            except InvalidOperation:
                continue
    return {slot: str(total) for slot, total in totals.items()}


def _state(value: int) -> str:
    name: str = session_pb.Session.State.Name(value)
    return name.removeprefix("STATE_")


def _states(status: str | None) -> tuple[list[Any], bool]:
    """Proto states for a comma-separated status filter, and whether it can match anything."""
    if status is None or not status.strip():
        return [], True
    states: list[Any] = []
    for raw in status.split(","):
        name = raw.strip().upper()
        if not name or name in _FOREIGN_STATUSES:
            continue
        try:
            states.append(session_pb.Session.State.Value(f"STATE_{name}"))
        except ValueError:
            raise GraphQLError(f"unknown session status {raw.strip()!r}",
                               extensions={"code": "INVALID_ARGUMENT"}) from None
    return states, bool(states)


# ---- types ---------------------------------------------------------------------------------


@strawberry.type
class UserInfo:
    full_name: str | None
    email: str | None


@strawberry.type
class KeyPair:
    user_id: str
    """The owner's e-mail (Backend.AI's naming)."""
    user: UUID
    access_key: str
    secret_key: str | None
    is_active: bool
    is_admin: bool
    created_at: datetime | None
    last_used: datetime | None
    modified_at: datetime | None
    resource_policy: str
    rate_limit: int
    num_queries: int
    concurrency_used: int
    projects: list[str]
    user_info: UserInfo
    role: str

    @classmethod
    def of(cls, k: admin_pb.Keypair) -> KeyPair:
        return cls(
            user_id=k.user_email, user=UUID(k.user_id), access_key=k.access_key,
            secret_key=k.secret_key or None, is_active=k.is_active, is_admin=k.is_admin,
            created_at=_time(k.create_time), last_used=_time(k.last_used_time),
            modified_at=None, resource_policy=k.resource_policy or "default",
            rate_limit=k.rate_limit, num_queries=0,
            concurrency_used=k.concurrency_used, projects=list(k.projects),
            user_info=UserInfo(full_name=k.user_full_name, email=k.user_email), role=k.role,
        )


@strawberry.type
class KeyPairList:
    items: list[KeyPair]
    total_count: int


@strawberry.type(name="UserGroup")
class Group:
    id: UUID
    name: str


@strawberry.type
class User:
    uuid: UUID
    id: UUID
    username: str
    email: str
    role: str
    full_name: str
    description: str
    need_password_change: bool
    status: str
    status_info: str | None
    is_active: bool
    created_at: datetime | None
    modified_at: datetime | None
    domain_name: str
    groups: list[Group]
    allowed_client_ip: list[str] | None
    sudo_session_enabled: bool
    main_access_key: str | None
    totp_activated: bool
    resource_policy: str

    @classmethod
    def of(cls, u: admin_pb.User) -> User:
        ident = UUID(u.id)
        return cls(
            uuid=ident, id=ident, username=u.username, email=u.email, role=u.role,
            full_name=u.full_name, description=u.description,
            need_password_change=u.need_password_change, status=u.status,
            status_info=None, is_active=u.status == "active", created_at=_time(u.create_time),
            modified_at=None, domain_name=u.domain,
            groups=[Group(id=UUID(p.id), name=p.name) for p in u.projects],
            allowed_client_ip=None, sudo_session_enabled=False,
            main_access_key=u.main_access_key or None, totp_activated=False,
            resource_policy=u.resource_policy or "default",
        )


@strawberry.type
class UserList:
    items: list[User]
    total_count: int


@strawberry.type
class Agent:
    id: str
    status: str
    status_changed: datetime | None
    region: str | None
    scaling_group: str
    schedulable: bool
    architecture: str
    version: str
    first_contact: datetime | None
    lost_at: datetime | None
    cpu_cur_pct: float
    mem_cur_bytes: BigInt
    available_slots: JSONString
    occupied_slots: JSONString
    live_stat: JSONString

    @classmethod
    def of(cls, a: admin_pb.Agent) -> Agent:
        return cls(
            id=a.id, status=a.status, status_changed=_time(a.last_heartbeat), region=None,
            scaling_group=a.resource_group, schedulable=a.status == "ALIVE",
            architecture=a.architecture, version=a.version,
            first_contact=_time(a.first_contact), lost_at=None, cpu_cur_pct=0.0,
            mem_cur_bytes=BigInt(0), available_slots=JSONString(_slots(a.capacity)),
            occupied_slots=JSONString(_slots(a.occupied)), live_stat=JSONString({}),
        )


@strawberry.type
class AgentList:
    items: list[Agent]
    total_count: int


@strawberry.type
class ComputeContainer:
    id: UUID
    session_id: UUID
    role: str
    cluster_role: str
    cluster_idx: int
    cluster_hostname: str
    image: str
    registry: str
    status: str
    status_info: str | None
    status_data: JSONString
    status_changed: datetime | None
    agent: str | None
    container_id: str | None
    resource_opts: JSONString
    occupied_slots: JSONString
    preopen_ports: list[int]
    live_stat: JSONString
    last_stat: JSONString


@strawberry.type
class SessionDependency:
    id: UUID
    name: str


@strawberry.type
class ComputeSession:
    id: UUID
    session_id: UUID
    main_kernel_id: UUID | None
    name: str
    type: str
    session_type: str
    priority: int
    image: str
    tag: str | None
    domain_name: str
    group_name: str
    access_key: str
    scaling_group: str
    cluster_size: int
    status: str
    status_info: str | None
    status_data: JSONString
    status_changed: datetime | None
    created_at: datetime | None
    terminated_at: datetime | None
    starts_at: datetime | None
    startup_command: str | None
    result: str
    occupying_slots: JSONString
    occupied_slots: JSONString
    requested_slots: JSONString
    resource_opts: JSONString
    idle_checks: JSONString
    containers: list[ComputeContainer]
    dependencies: list[SessionDependency]

    @classmethod
    def of(cls, s: session_pb.Session) -> ComputeSession:
        ident = UUID(s.id)
        spec, status = s.spec, s.status
        state = _state(status.state)
        mains = [k for k in s.kernels if k.cluster_role == "main"] or list(s.kernels)
        registry = spec.image.split("/", 1)[0] if "/" in spec.image else ""
        result = "UNDEFINED"
        if state == "TERMINATED" and spec.session_type == "batch":
            result = "SUCCESS" if status.exit_code == 0 else "FAILURE"
        elif state == "ERROR":
            result = "FAILURE"
        containers = [
            ComputeContainer(
                id=UUID(k.id), session_id=ident, role=k.cluster_role,
                cluster_role=k.cluster_role, cluster_idx=k.cluster_idx,
                cluster_hostname=f"{k.cluster_role}{k.cluster_idx}", image=spec.image,
                registry=registry, status=_state(k.state), status_info=status.reason or None,
                status_data=JSONString({}), status_changed=_time(status.state_change_time),
                agent=k.agent_id or None, container_id=k.container_id or None,
                resource_opts=JSONString({}),
                occupied_slots=JSONString(_slots(k.occupied_slots)), preopen_ports=[],
                live_stat=JSONString({}), last_stat=JSONString({}),
            )
            for k in s.kernels
        ]
        return cls(
            id=ident, session_id=ident,
            main_kernel_id=UUID(mains[0].id) if mains else None, name=s.name,
            type=spec.session_type.upper(), session_type=spec.session_type.upper(), priority=0,
            image=spec.image, tag=spec.tag or None, domain_name=s.domain, group_name=s.project,
            access_key=s.access_key, scaling_group=spec.resource_group,
            cluster_size=spec.cluster_size, status=state, status_info=status.reason or None,
            status_data=JSONString({}), status_changed=_time(status.state_change_time),
            created_at=_time(s.create_time), terminated_at=_time(s.terminate_time),
            starts_at=None, startup_command=spec.startup_command or None, result=result,
            occupying_slots=JSONString(_sum_slots(s.kernels)),
            occupied_slots=JSONString(_sum_slots(s.kernels)),
            requested_slots=JSONString(dict(spec.resources)), resource_opts=JSONString({}),
            idle_checks=JSONString({}),
            containers=containers, dependencies=[],
        )


@strawberry.type
class ComputeSessionList:
    items: list[ComputeSession]
    total_count: int


# ---- queries -------------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field(  # type: ignore[untyped-decorator]
        description="A keypair: the caller's own, or (admins) the one named by access_key.")
    async def keypair(self, info: strawberry.Info[Context, None],
                      domain_name: str | None = None,
                      access_key: str | None = None) -> KeyPair | None:
        ctx = _ctx(info)
        if access_key:
            try:
                found = await ctx.calls.tenancy(
                    "LookupKeypair", tenancy_pb.LookupKeypairRequest(access_key=access_key),
                    ctx.metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise graphql_error(exc) from None
            keypair = KeyPair.of(found.keypair)
            if domain_name is not None and domain_name != found.keypair.user_domain:
                return None
            return keypair
        response = await _call(ctx, ctx.calls.get_keypair(
            admin_pb.GetKeypairRequest(), metadata=ctx.metadata,
            deadline=ctx.up.config.call_timeout))
        return KeyPair.of(response.keypair)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Keypairs visible to the caller, oldest first.")
    async def keypair_list(
        self, info: strawberry.Info[Context, None], limit: int, offset: int,
        is_active: bool | None = None, domain_name: str | None = None,
        filter: str | None = None, order: str | None = None,
    ) -> KeyPairList:
        ctx = _ctx(info)
        request = admin_pb.ListKeypairsRequest(page=_page(limit, offset),
                                               domain=domain_name or "", filter=filter or "",
                                               order=order or "")
        if is_active is not None:
            request.is_active = is_active
        response = await _call(ctx, ctx.calls.list_keypairs(
            request, metadata=ctx.metadata, deadline=ctx.up.config.call_timeout))
        return KeyPairList(items=[KeyPair.of(k) for k in response.keypairs],
                           total_count=response.total_count)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Users visible to the caller, oldest first.")
    async def user_list(
        self, info: strawberry.Info[Context, None], limit: int, offset: int,
        status: str | None = None, group_id: UUID | None = None,
        filter: str | None = None, order: str | None = None,
    ) -> UserList:
        ctx = _ctx(info)
        response = await _call(ctx, ctx.calls.list_users(
            admin_pb.ListUsersRequest(page=_page(limit, offset), status=status or "",
                                      filter=filter or "", order=order or "",
                                      project_id=str(group_id) if group_id else ""),
            metadata=ctx.metadata, deadline=ctx.up.config.call_timeout))
        return UserList(items=[User.of(u) for u in response.users],
                        total_count=response.total_count)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Agents (superadmins and monitors only), by id.")
    async def agent_list(
        self, info: strawberry.Info[Context, None], limit: int, offset: int,
        status: str | None = None, scaling_group: str | None = None,
        filter: str | None = None, order: str | None = None,
    ) -> AgentList:
        _unsupported(filter=filter, order=order)
        ctx = _ctx(info)
        response = await _call(ctx, ctx.calls.list_agents(
            admin_pb.ListAgentsRequest(page=_page(limit, offset), status=status or "",
                                       resource_group=scaling_group or ""),
            metadata=ctx.metadata, deadline=ctx.up.config.call_timeout))
        return AgentList(items=[Agent.of(a) for a in response.agents],
                         total_count=response.total_count)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Sessions visible to the caller, newest first.")
    async def compute_session_list(
        self, info: strawberry.Info[Context, None], limit: int, offset: int,
        status: str | None = None, access_key: str | None = None,
        filter: str | None = None, order: str | None = None,
    ) -> ComputeSessionList:
        _unsupported(filter=filter, order=order)
        page = _page(limit, offset)
        states, matchable = _states(status)
        if not matchable:
            return ComputeSessionList(items=[], total_count=0)
        ctx = _ctx(info)
        response = await _call(ctx, ctx.calls.query_sessions(
            admin_pb.QuerySessionsRequest(page=page, states=states, access_key=access_key or ""),
            metadata=ctx.metadata, deadline=ctx.up.config.call_timeout))
        return ComputeSessionList(items=[ComputeSession.of(s) for s in response.sessions],
                                  total_count=response.total_count)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="One session by id; null when there is no such session.")
    async def compute_session(
        self, info: strawberry.Info[Context, None], id: UUID
    ) -> ComputeSession | None:
        ctx = _ctx(info)
        try:
            response = await ctx.up.get_session(
                sessions_pb.GetSessionRequest(session_ref=str(id)), metadata=ctx.metadata,
                deadline=ctx.up.config.call_timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise graphql_error(exc) from None
        return ComputeSession.of(response.session)


schema = strawberry.Schema(
    # vfolders_gql.py, tenancy_gql.py (admin CRUD), policies_gql.py (user/project policies)
    query=merge_types("Query", (Query, VFolderQuery, TenancyQuery, PolicyQuery,
                                ResourceGroupQuery)),  # resource_groups_gql.py
    mutation=merge_types("Mutation", (TenancyMutation, PolicyMutation,
                                      ResourceGroupMutation)),  # resource_groups_gql.py
    subscription=Subscription,  # over WebSocket only: gateway/admin/subscriptions.py
    config=StrawberryConfig(auto_camel_case=False, scalar_map=_SCALARS),
    extensions=[
        functools.partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
        functools.partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        functools.partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
    ],
)

# ---- route ---------------------------------------------------------------------------------

router = APIRouter(tags=["backend.ai"])


def _errors(status: int, *messages: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": m} for m in messages]}, status_code=status)


@router.post("/admin/gql", summary="GraphQL (the queries the official client sends)")
async def graphql(request: Request) -> JSONResponse:
    up, calls = admin_calls(request)
    metadata = up.metadata(request)  # AuthError -> 401 before anything runs
    raw = await request.body()
    if len(raw) > MAX_QUERY_BYTES:
        return _errors(413, f"the request body exceeds {MAX_QUERY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        return _errors(400, "the body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return _errors(400, "the body must be an object with a string 'query'")
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return _errors(400, "'variables' must be an object")
    operation = body.get("operationName")
    if operation is not None and not isinstance(operation, str):
        return _errors(400, "'operationName' must be a string")
    result = await schema.execute(
        body["query"], variable_values=variables, operation_name=operation,
        context_value=Context(up=up, calls=calls, metadata=metadata))
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
        # The manager authenticates each call; a refused credential (unknown or deactivated
        # keypair, bad signature) fails the whole request with Backend.AI's 401, as its
        # auth middleware would, rather than a field error under HTTP 200.
        for error in result.errors:
            extensions = error.extensions or {}
            if extensions.get("code") == "UNAUTHENTICATED":
                return problem_for_code(grpc.StatusCode.UNAUTHENTICATED,
                                        str(extensions.get("reason", "UNAUTHENTICATED")),
                                        error.message).response()
    return JSONResponse(payload)

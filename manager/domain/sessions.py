"""Session use cases: create (and wait), get, list, delete, restart, execute, interrupt, logs.

Visibility: users (and monitors) see their own sessions, domain admins their domain's,
superadmins everyone's; monitors cannot change or run anything. A session invisible to the
caller is NOT_FOUND, never PERMISSION_DENIED (no existence leak).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime

from bai.common.errors import BaiError, NotFound
from bai.manager.domain import rbac
from bai.manager.domain.errors import (
    AgentUnavailable,
    DuplicateRequest,
    InvalidSessionRequest,
    NotAllowed,
    SessionNameTaken,
    SessionNotFound,
    SessionNotRunning,
)
from bai.manager.domain.events import SessionChanged
from bai.manager.domain.images import ImageCatalog
from bai.manager.domain.lifecycle.expiry import ActivityTracker
from bai.manager.domain.lifecycle.inflight import InFlight
from bai.manager.domain.lifecycle.terminate import TerminateHandler
from bai.manager.domain.model import (
    LIVE_STATES,
    TERMINAL_STATES,
    AgentRecord,
    AgentStatus,
    ExecInput,
    ExecMode,
    ExecOutput,
    ExecTarget,
    KernelRecord,
    LogChunk,
    Mount,
    NewSession,
    Principal,
    Role,
    SessionRecord,
    SessionState,
    utcnow,
)
from bai.manager.domain.ports import (
    AccountRepository,
    AgentClient,
    AgentRepository,
    EventBus,
    PageCursor,
    SessionRepository,
    Subscription,
)
from bai.manager.domain.requests import (
    CreateRequest,
    ValidRequest,
    apply_image_minimums,
    build_spec,
    validate,
)
from bai.manager.domain.scheduling.queue import QueueView
from bai.manager.domain.transitions import Transitions
from bai.manager.domain.vfolders import StorageNotConfigured, VFolderService

__all__ = ["Created", "SessionService", "SessionsConfig"]

log = logging.getLogger(__name__)
S = SessionState
_WAIT_DONE = frozenset({S.RUNNING}) | TERMINAL_STATES
_PAGE_DEFAULT, _PAGE_MAX = 50, 1000


@dataclass(frozen=True, slots=True)
class SessionsConfig:
    create_wait_cap: float = 60.0
    """Seconds CreateSession waits when the caller gave no max_wait."""
    poll_interval: float = 1.0
    """Seconds between database re-reads while waiting (events usually come first)."""


@dataclass(frozen=True, slots=True)
class Created:
    session: SessionRecord
    created: bool


class SessionService:
    def __init__(
        self,
        sessions: SessionRepository,
        accounts: AccountRepository,
        agents: AgentRepository,
        catalog: ImageCatalog,
        client: AgentClient,
        moves: Transitions,
        terminator: TerminateHandler,
        bus: EventBus,
        inflight: InFlight,
        config: SessionsConfig = SessionsConfig(),
        vfolders: VFolderService | None = None,
        activity: ActivityTracker | None = None,
        queue: QueueView | None = None,
    ) -> None:
        self._sessions = sessions
        self._accounts = accounts
        self._agents = agents
        self._catalog = catalog
        self._client = client
        self._moves = moves
        self._terminator = terminator
        self._bus = bus
        self._inflight = inflight
        self._config = config
        self._vfolders = vfolders
        self._activity = activity
        """Executions and interrupts count as activity (idle timeout)."""
        self._queue = queue
        """Fills a PENDING session's queue position in :meth:`get`."""

    # ---- create ------------------------------------------------------------------------

    async def create(self, who: Principal, req: CreateRequest) -> Created:
        _require_writer(who)
        valid = validate(req)
        if req.request_id:
            existing = await self._sessions.find_by_request_id(who.access_key, req.request_id)
            if existing is not None:
                return Created(existing, False)
        if req.reuse_if_exists:
            existing = await self._sessions.find_by_name(valid.name, who.access_key)
            if existing is not None and existing.is_live:
                return Created(existing, False)
        if self._queue is not None:
            await self._queue.admit(who.access_key)
        new = await self._new_session(who, req, valid)
        async with self._bus.subscribe() as events:
            try:
                record = await self._sessions.create(new)
            except (DuplicateRequest, SessionNameTaken) as exc:
                existing_id = exc.metadata.get("existing_session_id")
                reusable = isinstance(exc, DuplicateRequest) or req.reuse_if_exists
                existing = await self._sessions.get(uuid.UUID(existing_id)) if existing_id else None
                if reusable and existing is not None:
                    return Created(existing, False)
                raise
            log.info("session %s (%s) created by %s: %s %s, state %s", record.name, record.id,
                     who.access_key, record.spec.session_type, record.spec.image, record.state)
            await self._bus.publish(SessionChanged(record.id, record.state, record.reason))
            if req.enqueue_only or not record.is_live:
                return Created(record, True)
            wait = req.max_wait_seconds or self._config.create_wait_cap
            return Created(await self._wait(events, record, wait), True)

    async def _new_session(
        self, who: Principal, req: CreateRequest, valid: ValidRequest
    ) -> NewSession:
        domain = req.domain.strip() or who.domain
        if domain != who.domain and not who.is_superadmin:
            raise NotAllowed(f"cannot create sessions in domain {domain!r}")
        project = req.project.strip() or "default"
        if not await self._accounts.project_exists(domain, project):
            raise InvalidSessionRequest(f"project {project!r} does not exist in domain "
                                        f"{domain!r}", reason="PROJECT_NOT_FOUND")
        if not rbac.allows(who, rbac.Action.CREATE, rbac.Target(
                rbac.Kind.SESSION, domain=domain, project_name=project)):
            raise NotAllowed(f"{who.email} is not a member of project {project!r}",
                             reason="NOT_A_PROJECT_MEMBER")
        mounts = await self._resolve_mounts(who, req)
        image = await self._catalog.resolve(req.image)
        failure = None
        if image is None:
            spec = build_spec(req, valid, req.image.strip(), valid.requested, mounts)
            failure = ("ImageNotFound", await self._image_not_found(req.image))
        else:
            spec = build_spec(req, valid, image.ref,
                              apply_image_minimums(valid.requested, image), mounts)
        if req.dependencies:
            spec = replace(spec, dependencies=await self._resolve_dependencies(who, req))
        return NewSession(id=uuid.uuid4(), name=valid.name, access_key=who.access_key,
                          domain=domain, project=project, spec=spec,
                          request_id=req.request_id or None, created_at=utcnow(),
                          kernel_ids=tuple(uuid.uuid4() for _ in range(spec.cluster_size)),
                          failure=failure)

    async def _resolve_dependencies(
        self, who: Principal, req: CreateRequest
    ) -> tuple[uuid.UUID, ...]:
        found: list[uuid.UUID] = []
        for ref in req.dependencies:
            try:
                found.append((await self._lookup(who, ref.strip())).id)
            except SessionNotFound as exc:
                raise SessionNotFound(f"dependency {ref!r}: no such session",
                                      reason="DEPENDENCY_NOT_FOUND") from exc
        return tuple(dict.fromkeys(found))

    async def _resolve_mounts(self, who: Principal, req: CreateRequest) -> tuple[Mount, ...]:
        if not req.mounts:
            return ()
        if self._vfolders is None:
            raise StorageNotConfigured("vfolder mounts need a storage proxy (manager --storage)")
        return tuple(await self._vfolders.resolve_mounts(who, req.mounts))

    async def _image_not_found(self, requested: str) -> str:
        held = [i for i in await self._catalog.list_images() if i.agent_ids]
        known = ", ".join(
            i.ref + (f" ({', '.join(i.aliases)})" if i.aliases else "") for i in held[:10]
        )
        return (f"no agent holds image {requested!r}; "
                + (f"known images: {known}" if known else "no agent has reported any image"))

    async def _wait(
        self, events: Subscription, record: SessionRecord, wait: float
    ) -> SessionRecord:
        """Waits until RUNNING or terminal, or ``wait`` seconds; returns the state then."""
        deadline = time.monotonic() + wait
        last_read = time.monotonic()
        while record.state not in _WAIT_DONE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return await self._sessions.get(record.id) or record
            event = await events.next(min(remaining, self._config.poll_interval))
            relevant = isinstance(event, SessionChanged) and event.session_id == record.id
            if relevant or time.monotonic() - last_read >= self._config.poll_interval:
                record = await self._sessions.get(record.id) or record
                last_read = time.monotonic()
        return record

    # ---- read --------------------------------------------------------------------------

    async def get(self, who: Principal, ref: str) -> SessionRecord:
        record = await self._lookup(who, ref)
        if record.state is S.PENDING and self._queue is not None:
            position = await self._queue.position(record.id, record.spec.resource_group)
            record = replace(record, queue_position=position)
        return record

    async def list_sessions(
        self, who: Principal, states: frozenset[SessionState], page_size: int, page_token: str
    ) -> tuple[list[SessionRecord], str]:
        if page_size < 0:
            raise InvalidSessionRequest("page_size must not be negative")
        limit = min(page_size or _PAGE_DEFAULT, _PAGE_MAX)
        owner = None if who.is_superadmin else who.access_key
        records = await self._sessions.list_sessions(owner, states or LIVE_STATES, limit + 1,
                                            _decode_token(page_token))
        if len(records) <= limit:
            return records, ""
        last = records[limit - 1]
        return records[:limit], _encode_token(PageCursor(last.created_at, last.id))

    # ---- change ------------------------------------------------------------------------

    async def delete(self, who: Principal, ref: str, *, forced: bool) -> SessionRecord:
        session = await self._lookup(who, ref, write=True)
        with self._inflight.hold(session.id):
            return await self._terminator.terminate(
                session.id, forced=forced, reason="UserRequested",
                message=f"terminated by {who.email}" + (" (forced)" if forced else ""),
                loaded=session)

    async def restart(self, who: Principal, ref: str) -> SessionRecord:
        session = await self._lookup(who, ref, write=True)
        if len(session.kernels) > 1:  # the subs live in the main kernel's network namespace
            raise SessionNotRunning(
                f"session {session.name} has {len(session.kernels)} kernels; restarting a "
                "cluster session is not supported (delete and create it again)",
                reason="CLUSTER_RESTART_UNSUPPORTED")
        kernel, agent = await self._running_kernel(session)
        with self._inflight.hold(session.id):
            await self._moves.move(session.id, S.RUNNING, S.RESTARTING, "UserRequested",
                                   f"restart requested by {who.email}")
            try:
                created = await self._client.restart_kernel(agent.address, str(kernel.id))
            except NotFound as exc:
                await self._moves.move(session.id, S.RESTARTING, S.ERROR, "KernelLost",
                                       f"agent {agent.id}: {exc.message}")
                raise
            except BaiError as exc:
                await self._moves.move(session.id, S.RESTARTING, S.RUNNING, "RestartFailed",
                                       f"agent {agent.id}: {exc.message}")
                raise
            return await self._moves.move(
                session.id, S.RESTARTING, S.RUNNING, "Restarted",
                f"kernel {kernel.id} restarted on agent {agent.id}",
                container_ids={kernel.id: created.container_id} if created.container_id else None)

    async def execute(self, who: Principal, ref: str, inp: ExecInput) -> AsyncIterator[ExecOutput]:
        if inp.mode in (ExecMode.CONTINUE, ExecMode.INPUT) and not inp.run_id:
            raise InvalidSessionRequest(f"mode {inp.mode.name} needs the run_id of the run")
        address, kernel_id = await self._exec_target(who, ref)
        async for output in self._client.execute(address, kernel_id, inp):
            yield output

    async def interrupt(self, who: Principal, ref: str) -> None:
        address, kernel_id = await self._exec_target(who, ref)
        await self._client.interrupt_kernel(address, kernel_id)

    async def logs(
        self, who: Principal, ref: str, *, follow: bool, tail_lines: int
    ) -> AsyncIterator[LogChunk]:
        session = await self._lookup(who, ref)
        kernel = session.main_kernel
        if kernel is None or not kernel.container_id or not kernel.agent_id:
            raise SessionNotRunning(f"session {session.name} has no container yet "
                                    f"(state {session.state})", reason="NO_CONTAINER")
        agent = await self._agent(kernel)
        async for chunk in self._client.stream_logs(agent.address, str(kernel.id), follow,
                                                    max(tail_lines, 0)):
            yield chunk

    # ---- helpers -----------------------------------------------------------------------

    async def _lookup(self, who: Principal, ref: str, *, write: bool = False) -> SessionRecord:
        if write:
            _require_writer(who)
        record: SessionRecord | None = None
        try:
            record = await self._sessions.get(uuid.UUID(ref))
        except ValueError:
            pass
        if record is not None and not _visible(who, record):
            record = None
        if record is None:
            record = await self._sessions.find_by_name(ref, who.access_key)
        if record is None and who.is_superadmin:
            record = await self._sessions.find_by_name(ref, None)
        if record is None:
            raise SessionNotFound(f"session {ref!r} not found")
        return record

    async def _exec_target(self, who: Principal, ref: str) -> tuple[str, str]:
        """(agent address, kernel id) of a RUNNING session, in as few reads as possible.

        Execute is the hot path (P2: a round trip of a few ms), so this resolves the session,
        its main kernel and its agent in one statement instead of loading the whole record;
        visibility rules are the same as ``_lookup``'s.
        """
        _require_writer(who)
        target: ExecTarget | None = None
        try:
            target = await self._sessions.exec_target(uuid.UUID(ref), None, None)
        except ValueError:
            pass
        if target is not None and not _visible(who, target):
            target = None
        if target is None:
            target = await self._sessions.exec_target(None, ref, who.access_key)
        if target is None and who.is_superadmin:
            target = await self._sessions.exec_target(None, ref, None)
        if target is None:
            raise SessionNotFound(f"session {ref!r} not found")
        if target.state is not S.RUNNING or target.kernel_id is None or not target.agent_id:
            raise SessionNotRunning(f"session {target.name} is {target.state}, not RUNNING",
                                    metadata={"state": target.state.value})
        if target.agent_status is not AgentStatus.ALIVE or not target.agent_address:
            state = target.agent_status or "unknown"
            raise AgentUnavailable(
                f"agent {target.agent_id} of kernel {target.kernel_id} is {state}"
            )
        if self._activity is not None:
            self._activity.touch(target.session_id)
        return target.agent_address, str(target.kernel_id)

    def note_activity(self, session_id: uuid.UUID) -> None:
        """Counts as use of the session for its idle timeout (e.g. an app was opened)."""
        if self._activity is not None:
            self._activity.touch(session_id)

    async def _running_kernel(self, session: SessionRecord) -> tuple[KernelRecord, AgentRecord]:
        kernel = session.main_kernel
        if session.state is not S.RUNNING or kernel is None or not kernel.agent_id:
            raise SessionNotRunning(f"session {session.name} is {session.state}, not RUNNING",
                                    metadata={"state": session.state.value})
        return kernel, await self._agent(kernel)

    async def _agent(self, kernel: KernelRecord) -> AgentRecord:
        agent = await self._agents.get(kernel.agent_id or "")
        if agent is None or agent.status is not AgentStatus.ALIVE:
            state = agent.status if agent else "unknown"
            raise AgentUnavailable(f"agent {kernel.agent_id} of kernel {kernel.id} is {state}")
        return agent


def _require_writer(who: Principal) -> None:
    if who.role is Role.MONITOR:
        raise NotAllowed("monitors have read-only access")


def _visible(who: Principal, record: SessionRecord | ExecTarget) -> bool:
    """The RBAC decision (owner, project admin, domain admin, superadmin; monitors read)."""
    return rbac.allows(who, rbac.Action.READ, rbac.Target(
        rbac.Kind.SESSION, domain=record.domain, owner_access_key=record.access_key,
        project_name=getattr(record, "project", None)))


def _encode_token(cursor: PageCursor) -> str:
    raw = f"{cursor.created_at.isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> PageCursor | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created, ident = raw.split("|", 1)
        return PageCursor(datetime.fromisoformat(created), uuid.UUID(ident))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidSessionRequest("page_token is not one this server issued",
                                    reason="INVALID_PAGE_TOKEN") from exc



"""SQL session repository: creation, state-checked transitions, placement, slot release.

Every write is one transaction that checks the state it starts from. Locks are always taken
session row first, then agent rows (ordered by id), so concurrent transitions and placements on
PostgreSQL cannot deadlock; on SQLite, ``BEGIN IMMEDIATE`` serializes writers.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from bai.common.errors import BaiError
from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.placement import place_batch
from bai.manager.adapters.db.records import kernel_record, session_record, spec_to_json
from bai.manager.adapters.db.tables import (
    AgentRow,
    KernelRow,
    KeypairResourcePolicyRow,
    KeypairRow,
    SessionDependencyRow,
    SessionRow,
    StatusHistoryRow,
)
from bai.manager.domain import slots
from bai.manager.domain.errors import (
    DuplicateRequest,
    IllegalTransition,
    SessionNameTaken,
    SessionNotFound,
)
from bai.manager.domain.lifecycle.expiry import ExpiryCandidate
from bai.manager.domain.model import (
    LIVE_STATES,
    TERMINAL_STATES,
    AgentStatus,
    ExecTarget,
    KernelRecord,
    NewSession,
    SessionRecord,
    SessionState,
    Slots,
    check_edges,
)
from bai.manager.domain.placement import Placement
from bai.manager.domain.ports import PageCursor, PlaceOutcome
from sqlalchemy import Select, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SqlSessionRepository"]

S = SessionState


def _values(states: Iterable[SessionState]) -> list[str]:
    return sorted(s.value for s in states)


def _exec_query() -> Select[SessionRow, uuid.UUID, str | None, str, str]:
    return select(
        SessionRow, KernelRow.id, KernelRow.agent_id, AgentRow.address, AgentRow.status
    ).outerjoin(
        KernelRow, and_(KernelRow.session_id == SessionRow.id, KernelRow.cluster_role == "main")
    ).outerjoin(AgentRow, AgentRow.id == KernelRow.agent_id)


# Built once: execute runs these on every call, and constructing a Select costs more than
# running it (SQLAlchemy then reuses the compiled form from its cache).
_NEWEST_LIVE_FIRST = (
    SessionRow.live_name.is_(None), SessionRow.created_at.desc(), SessionRow.id.desc()
)
_EXEC_BY_ID = _exec_query().where(SessionRow.id == bindparam("session_id")).limit(1)
_EXEC_BY_NAME = (
    _exec_query().where(SessionRow.name == bindparam("name")).order_by(*_NEWEST_LIVE_FIRST).limit(1)
)
_EXEC_BY_OWNED_NAME = (
    _exec_query()
    .where(SessionRow.name == bindparam("name"), SessionRow.access_key == bindparam("access_key"))
    .order_by(*_NEWEST_LIVE_FIRST)
    .limit(1)
)


class SqlSessionRepository:
    """Implements :class:`bai.manager.domain.ports.SessionRepository`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- reads -------------------------------------------------------------------------

    async def _records(
        self, s: AsyncSession, rows: Sequence[SessionRow], *, history: bool = True
    ) -> list[SessionRecord]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        kernels: dict[uuid.UUID, list[KernelRow]] = defaultdict(list)
        for k in await s.scalars(select(KernelRow).where(KernelRow.session_id.in_(ids))):
            kernels[k.session_id].append(k)
        hist: dict[uuid.UUID, list[StatusHistoryRow]] = defaultdict(list)
        if history:
            query = (
                select(StatusHistoryRow)
                .where(StatusHistoryRow.session_id.in_(ids))
                .order_by(StatusHistoryRow.id)
            )
            for h in await s.scalars(query):
                hist[h.session_id].append(h)
        return [session_record(r, kernels[r.id], hist[r.id]) for r in rows]

    async def _one(
        self, s: AsyncSession, session_id: uuid.UUID, *, history: bool = True
    ) -> SessionRecord | None:
        row = await s.get(SessionRow, session_id, populate_existing=True)
        if row is None:
            return None
        return (await self._records(s, [row], history=history))[0]

    async def get(self, session_id: uuid.UUID) -> SessionRecord | None:
        async with self._db.read() as s:
            return await self._one(s, session_id)

    async def find_by_request_id(self, access_key: str, request_id: str) -> SessionRecord | None:
        async with self._db.read() as s:
            row = await s.scalar(
                select(SessionRow).where(
                    SessionRow.access_key == access_key, SessionRow.request_id == request_id
                )
            )
            return (await self._records(s, [row]))[0] if row is not None else None

    async def exec_target(
        self, session_id: uuid.UUID | None, name: str | None, access_key: str | None
    ) -> ExecTarget | None:
        params: dict[str, Any]
        if session_id is not None:
            query, params = _EXEC_BY_ID, {"session_id": session_id}
        elif access_key is not None:
            query, params = _EXEC_BY_OWNED_NAME, {"name": name, "access_key": access_key}
        else:
            query, params = _EXEC_BY_NAME, {"name": name}
        async with self._db.read() as s:
            row = (await s.execute(query, params)).first()
        if row is None:
            return None
        session, kernel_id, agent_id, address, status = row
        return ExecTarget(
            session_id=session.id, name=session.name, access_key=session.access_key,
            domain=session.domain_name, state=SessionState(session.state), kernel_id=kernel_id,
            agent_id=agent_id, agent_address=address,
            agent_status=AgentStatus(status) if status is not None else None,
        )

    async def find_by_name(self, name: str, access_key: str | None) -> SessionRecord | None:
        query = select(SessionRow).where(SessionRow.name == name)
        if access_key is not None:
            query = query.where(SessionRow.access_key == access_key)
        query = query.order_by(
            SessionRow.live_name.is_(None), SessionRow.created_at.desc(), SessionRow.id.desc()
        ).limit(1)
        async with self._db.read() as s:
            row = await s.scalar(query)
            return (await self._records(s, [row]))[0] if row is not None else None

    async def list_sessions(
        self,
        access_key: str | None,
        states: frozenset[SessionState],
        limit: int,
        after: PageCursor | None,
    ) -> list[SessionRecord]:
        query = select(SessionRow).where(SessionRow.state.in_(_values(states)))
        if access_key is not None:
            query = query.where(SessionRow.access_key == access_key)
        if after is not None:
            query = query.where(
                or_(
                    SessionRow.created_at < after.created_at,
                    and_(SessionRow.created_at == after.created_at, SessionRow.id < after.id),
                )
            )
        query = query.order_by(SessionRow.created_at.desc(), SessionRow.id.desc()).limit(limit)
        async with self._db.read() as s:
            return await self._records(s, (await s.scalars(query)).all())

    async def list_in_states(
        self, states: frozenset[SessionState], limit: int
    ) -> list[SessionRecord]:
        query = (
            select(SessionRow)
            .where(SessionRow.state.in_(_values(states)))
            .order_by(SessionRow.created_at, SessionRow.id)
            .limit(limit)
        )
        async with self._db.read() as s:
            return await self._records(s, (await s.scalars(query)).all(), history=False)

    async def kernels_on_agent(self, agent_id: str) -> list[tuple[KernelRecord, SessionRecord]]:
        placed_here = select(KernelRow.session_id).where(KernelRow.agent_id == agent_id)
        query = select(SessionRow).where(
            SessionRow.id.in_(placed_here), SessionRow.state.in_(_values(LIVE_STATES))
        )
        async with self._db.read() as s:
            records = await self._records(s, (await s.scalars(query)).all(), history=False)
        return [(k, r) for r in records for k in r.kernels if k.agent_id == agent_id]

    async def find_kernel(self, kernel_id: uuid.UUID) -> tuple[KernelRecord, SessionRecord] | None:
        async with self._db.read() as s:
            kernel = await s.get(KernelRow, kernel_id)
            if kernel is None:
                return None
            record = await self._one(s, kernel.session_id)
        return (kernel_record(kernel), record) if record is not None else None

    # ---- writes ------------------------------------------------------------------------

    async def create(self, new: NewSession) -> SessionRecord:
        try:
            async with self._db.write() as s:
                await self._add_new(s, new)
                record = await self._one(s, new.id)
        except IntegrityError as exc:
            raise await self._conflict(new) from exc
        assert record is not None
        return record

    async def _add_new(self, s: AsyncSession, new: NewSession) -> None:
        at = new.created_at
        enqueued = (S.PENDING, "SessionEnqueued", "waiting to be scheduled")
        # An unqueueable session is recorded like any other failure: PENDING, then ERROR.
        history = [enqueued] if new.failure is None else [enqueued, (S.ERROR, *new.failure)]
        state, reason, message = history[-1]
        failed = new.failure is not None
        s.add(
            SessionRow(
                id=new.id,
                name=new.name,
                live_name=None if failed else new.name,
                access_key=new.access_key,
                domain_name=new.domain,
                project_name=new.project,
                session_type=new.spec.session_type.value,
                spec=spec_to_json(new.spec),
                state=state.value,
                reason=reason,
                message=message,
                state_changed_at=at,
                created_at=at,
                terminated_at=at if failed else None,
                exit_code=None,
                request_id=new.request_id,
                priority=new.spec.priority,
                starts_at=new.spec.starts_at,
            )
        )
        await s.flush()  # rows without relationships are not ordered by their foreign keys
        for depends_on in dict.fromkeys(new.spec.dependencies):
            s.add(SessionDependencyRow(session_id=new.id, depends_on=depends_on))
        for idx, kernel_id in enumerate(new.kernel_ids):
            s.add(
                KernelRow(
                    id=kernel_id,
                    session_id=new.id,
                    agent_id=None,
                    container_id=None,
                    state=state.value,
                    cluster_role="main" if idx == 0 else "sub",
                    cluster_idx=1 if idx == 0 else idx,
                    occupied_slots={},
                    created_at=at,
                )
            )
        for h_state, h_reason, h_message in history:
            s.add(StatusHistoryRow(session_id=new.id, state=h_state.value, reason=h_reason,
                                   message=h_message, at=at))
        await s.flush()

    async def _conflict(self, new: NewSession) -> Exception:
        if new.request_id:
            existing = await self.find_by_request_id(new.access_key, new.request_id)
            if existing is not None:
                return DuplicateRequest(
                    f"request {new.request_id!r} already created session {existing.id}",
                    metadata={"existing_session_id": str(existing.id)},
                )
        existing = await self.find_by_name(new.name, new.access_key)
        if existing is not None and existing.is_live:
            return SessionNameTaken(
                f"a live session named {new.name!r} already exists ({existing.id})",
                metadata={"existing_session_id": str(existing.id)},
            )
        return SessionNameTaken(f"session {new.name!r} conflicts with an existing one")

    async def transition(
        self,
        session_id: uuid.UUID,
        sources: frozenset[SessionState],
        target: SessionState,
        reason: str,
        message: str,
        *,
        at: datetime,
        exit_code: int | None = None,
        container_ids: Mapping[uuid.UUID, str] | None = None,
    ) -> SessionRecord:
        check_edges(sources, target)
        terminal = target in TERMINAL_STATES
        values: dict[str, object] = {
            "state": target.value, "reason": reason, "message": message, "state_changed_at": at,
        }
        if terminal:
            values.update(live_name=None, terminated_at=at)
        if target is S.RUNNING:  # the lifetime counts from the first start
            values["started_at"] = func.coalesce(SessionRow.started_at, at)
        if exit_code is not None:
            values["exit_code"] = exit_code
        async with self._db.write() as s:
            result = await s.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.state.in_(_values(sources)))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                current = await s.scalar(
                    select(SessionRow.state).where(SessionRow.id == session_id)
                )
                if current is None:
                    raise SessionNotFound(f"session {session_id} not found")
                raise IllegalTransition(
                    f"session {session_id} is {current}, not {' or '.join(_values(sources))}; "
                    f"it cannot move to {target}",
                    metadata={"state": current},
                )
            kernels = (
                await s.scalars(select(KernelRow).where(KernelRow.session_id == session_id))
            ).all()
            if terminal:
                await self._release(s, [k for k in kernels if k.state not in _TERMINAL])
            for kernel in kernels:
                if kernel.state not in _TERMINAL:
                    kernel.state = target.value
                if container_ids and kernel.id in container_ids:
                    kernel.container_id = container_ids[kernel.id]
            s.add(StatusHistoryRow(session_id=session_id, state=target.value, reason=reason,
                                   message=message, at=at))
            await s.flush()
            # Handlers moving through a passing state read no history (one query less, on the
            # path of every start and termination); records users get back carry it.
            record = await self._one(s, session_id, history=target not in _PASSING)
        assert record is not None
        return record

    async def transition_many(
        self,
        moves: Sequence[tuple[uuid.UUID, str, str]],
        sources: frozenset[SessionState],
        target: SessionState,
        *,
        at: datetime,
    ) -> dict[uuid.UUID, SessionRecord | BaiError]:
        """Many ``(session id, reason, message)`` moves from ``sources`` to ``target`` in one
        transaction, with the effects of :meth:`transition` for each. Sessions not in
        ``sources`` (or unknown) are left unchanged and get their error instead of a record.

        Lock order is the repository's: session rows (by id), then agent rows (by id).
        """
        check_edges(sources, target)
        terminal = target in TERMINAL_STATES
        wanted = {sid: (reason, message) for sid, reason, message in moves}
        out: dict[uuid.UUID, SessionRecord | BaiError] = {}
        async with self._db.write() as s:
            current = dict((await s.execute(
                select(SessionRow.id, SessionRow.state).where(SessionRow.id.in_(list(wanted)))
                .order_by(SessionRow.id).with_for_update())).all())
            accepted = [sid for sid in wanted if current.get(sid) in _values(sources)]
            for sid in wanted:
                if sid not in current:
                    out[sid] = SessionNotFound(f"session {sid} not found")
                elif sid not in accepted:
                    out[sid] = IllegalTransition(
                        f"session {sid} is {current[sid]}, not {' or '.join(_values(sources))}; "
                        f"it cannot move to {target}", metadata={"state": current[sid]})
            if not accepted:
                return out
            values: dict[str, Any] = {"state": target.value, "state_changed_at": at,
                                      "reason": bindparam("b_reason"),
                                      "message": bindparam("b_message")}
            if terminal:
                values.update(live_name=None, terminated_at=at)
            await s.execute(
                update(_SESSIONS).where(_SESSIONS.c.id == bindparam("b_id")).values(**values),
                [{"b_id": sid, "b_reason": wanted[sid][0], "b_message": wanted[sid][1]}
                 for sid in accepted])
            kernels = (await s.scalars(
                select(KernelRow).where(KernelRow.session_id.in_(accepted)))).all()
            if terminal:
                await self._release(s, [k for k in kernels if k.state not in _TERMINAL])
            for kernel in kernels:
                if kernel.state not in _TERMINAL:
                    kernel.state = target.value
            s.add_all([StatusHistoryRow(session_id=sid, state=target.value,
                                        reason=wanted[sid][0], message=wanted[sid][1], at=at)
                       for sid in accepted])
            await s.flush()
            rows = (await s.scalars(select(SessionRow).where(SessionRow.id.in_(accepted))
                                    .execution_options(populate_existing=True))).all()
            records = await self._records(s, rows, history=target not in _PASSING)
        out.update({r.id: r for r in records})
        return out

    async def _release(self, s: AsyncSession, kernels: Sequence[KernelRow]) -> None:
        """Gives the kernels' slots back to their agents (agent rows locked in id order)."""
        by_agent: dict[str, Slots] = defaultdict(dict)
        for kernel in kernels:
            if kernel.agent_id and kernel.occupied_slots:
                by_agent[kernel.agent_id] = slots.add(
                    by_agent[kernel.agent_id], slots.from_strings(kernel.occupied_slots)
                )
        for agent_id in sorted(by_agent):
            agent = await s.scalar(
                select(AgentRow).where(AgentRow.id == agent_id).with_for_update()
            )
            if agent is not None:
                occupied = slots.sub(slots.from_strings(agent.occupied), by_agent[agent_id])
                agent.occupied = slots.to_strings(occupied)

    async def set_pending_reason(self, session_id: uuid.UUID, reason: str, message: str) -> None:
        async with self._db.write() as s:
            await s.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.state == S.PENDING.value)
                .values(reason=reason, message=message)
                .execution_options(synchronize_session=False)
            )

    async def place(
        self, session_id: uuid.UUID, agent_id: str, request: Slots, at: datetime,
    ) -> PlaceOutcome:
        async with self._db.write() as s:
            row = await s.scalar(
                select(SessionRow)
                .where(SessionRow.id == session_id)
                .with_for_update(skip_locked=True)
            )
            if row is None or row.state != S.PENDING.value:
                return PlaceOutcome.SESSION_GONE
            agent = await s.scalar(
                select(AgentRow).where(AgentRow.id == agent_id).with_for_update()
            )
            if agent is None or agent.status != AgentStatus.ALIVE.value:
                return PlaceOutcome.AGENT_CHANGED
            occupied = slots.from_strings(agent.occupied)
            free = slots.sub(slots.from_strings(agent.capacity), occupied)
            if slots.missing(free, request):
                return PlaceOutcome.AGENT_CHANGED
            agent.occupied = slots.to_strings(slots.add(occupied, request))
            message = f"placed on agent {agent_id}"
            row.state, row.reason, row.message = S.SCHEDULED.value, "Scheduled", message
            row.state_changed_at = at
            for kernel in await s.scalars(
                select(KernelRow).where(KernelRow.session_id == session_id)
            ):
                kernel.agent_id = agent_id
                kernel.state = S.SCHEDULED.value
                kernel.occupied_slots = slots.to_strings(request)
            s.add(StatusHistoryRow(session_id=session_id, state=S.SCHEDULED.value,
                                   reason="Scheduled", message=message, at=at))
        return PlaceOutcome.PLACED

    async def place_many(
        self, placements: Sequence[Placement], at: datetime
    ) -> dict[uuid.UUID, PlaceOutcome]:
        return await place_batch(self._db, placements, at)

    # ---- lifecycle timers (bai.manager.domain.lifecycle.expiry.ExpiryRepository) --------

    async def record_activity(self, seen: Mapping[uuid.UUID, datetime]) -> None:
        if not seen:
            return
        table = _SESSIONS
        stmt = update(table).where(
            table.c.id == bindparam("b_id"),
            or_(table.c.last_activity_at.is_(None), table.c.last_activity_at < bindparam("b_at")),
        ).values(last_activity_at=bindparam("b_at"))
        async with self._db.write() as s:
            await s.execute(stmt, [{"b_id": sid, "b_at": at} for sid, at in seen.items()])

    async def expiry_candidates(self, limit: int) -> list[ExpiryCandidate]:
        policy = KeypairResourcePolicyRow
        query = (
            select(SessionRow.id, SessionRow.name, SessionRow.spec, SessionRow.started_at,
                   SessionRow.last_activity_at, policy.idle_timeout, policy.max_session_lifetime)
            .outerjoin(KeypairRow, KeypairRow.access_key == SessionRow.access_key)
            .outerjoin(policy, policy.name == KeypairRow.resource_policy)
            .where(SessionRow.state == S.RUNNING.value)
            .order_by(SessionRow.started_at)
            .limit(limit)
        )
        async with self._db.read() as s:
            rows = (await s.execute(query)).all()
        found = []
        for sid, name, spec, started, active, p_idle, p_lifetime in rows:
            candidate = ExpiryCandidate(
                session_id=sid, name=name, started_at=started, last_activity_at=active,
                idle_timeout_seconds=float(spec.get("idle_timeout_seconds") or 0),
                max_lifetime_seconds=float(spec.get("max_lifetime_seconds") or 0),
                policy_idle_timeout_seconds=float(p_idle or 0),
                policy_max_lifetime_seconds=float(p_lifetime or 0))
            if (candidate.idle_timeout_seconds or candidate.max_lifetime_seconds
                    or candidate.policy_idle_timeout_seconds
                    or candidate.policy_max_lifetime_seconds):
                found.append(candidate)
        return found


_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)
_PASSING = frozenset({S.SCHEDULED, S.PREPARING, S.PULLING, S.PREPARED, S.CREATING,
                      S.TERMINATING})
_SESSIONS = cast(Table, SessionRow.__table__)

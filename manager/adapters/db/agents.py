"""SQL agent and image repository: registration upserts, liveness, image holdings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.records import agent_record, insert_for
from bai.manager.adapters.db.tables import AgentImageRow, AgentRow, ImageRow, KernelRow, SessionRow
from bai.manager.domain import slots
from bai.manager.domain.images import aliases_of
from bai.manager.domain.liveness import LiveKernel
from bai.manager.domain.model import (
    LIVE_STATES,
    AgentRecord,
    AgentRegistration,
    AgentStatus,
    ImageRecord,
    SessionState,
    Slots,
)
from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SqlAgentRepository"]

_ALIVE, _LOST = AgentStatus.ALIVE.value, AgentStatus.LOST.value
_TERMINATED = AgentStatus.TERMINATED.value
_AGENTS = cast(Table, AgentRow.__table__)
# The rows are locked in id order first (the CTE), as placement and termination lock them:
# an UPDATE … FROM join locks in whatever order the join visits rows, and two transactions
# locking the same agents in different orders deadlock.
_TOUCH_MANY_PG = text(
    "WITH locked AS MATERIALIZED ("
    " SELECT id FROM agents WHERE id = ANY(CAST(:ids AS varchar[])) AND status != :terminated"
    " ORDER BY id FOR NO KEY UPDATE) "
    "UPDATE agents AS a SET last_heartbeat = u.at, status = :alive "
    "FROM unnest(CAST(:ids AS varchar[]), CAST(:ats AS timestamptz[])) AS u(id, at), locked "
    "WHERE a.id = u.id AND a.id = locked.id"
)


def _pg_array(items: list[str]) -> str:
    """A PostgreSQL array literal of strings, sent as one text parameter and cast by the
    statement: psycopg dumps a Python list element by element (~5 us per agent per flush,
    most of a flush's CPU), a joined string costs a fraction of that."""
    return "{" + ",".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for i in items) + "}"


class SqlAgentRepository:
    """Implements AgentRepository and ImageRepository of :mod:`bai.manager.domain.ports`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(self, reg: AgentRegistration, at: datetime) -> AgentRecord:
        insert = insert_for(self._db.is_sqlite, AgentRow)
        fields = {
            "address": reg.address,
            "status": _ALIVE,
            "capacity": slots.to_strings(reg.capacity),
            "architecture": reg.architecture,
            "resource_group": reg.resource_group or "default",
            "version": reg.version,
            "last_heartbeat": at,
        }
        async with self._db.write() as s:
            await s.execute(
                insert.values(id=reg.agent_id, occupied={}, first_contact=at, **fields)
                .on_conflict_do_update(index_elements=[AgentRow.id], set_=fields)
            )
            agent = await s.scalar(
                select(AgentRow).where(AgentRow.id == reg.agent_id).with_for_update()
            )
            assert agent is not None
            # Occupancy is derived from the live kernels placed here: heals any drift.
            agent.occupied = slots.to_strings(await self._placed_slots(s, reg.agent_id))
            await self._replace_images(s, reg, at)
            record = agent_record(agent)
        return record

    async def _placed_slots(self, s: AsyncSession, agent_id: str) -> Slots:
        total: Slots = {}
        rows = await s.scalars(
            select(KernelRow.occupied_slots)
            .join(SessionRow, SessionRow.id == KernelRow.session_id)
            .where(
                KernelRow.agent_id == agent_id,
                SessionRow.state.in_(sorted(x.value for x in LIVE_STATES)),
            )
        )
        for occupied in rows:
            total = slots.add(total, slots.from_strings(occupied))
        return total

    async def _replace_images(self, s: AsyncSession, reg: AgentRegistration, at: datetime) -> None:
        insert = insert_for(self._db.is_sqlite, ImageRow)
        for image in reg.images:
            fields = {
                "digest": image.digest,
                "labels": dict(image.labels),
                "size_bytes": image.size_bytes,
                "architecture": image.architecture,
                "aliases": list(aliases_of(image.labels)),
                "updated_at": at,
            }
            await s.execute(
                insert.values(ref=image.ref, **fields).on_conflict_do_update(
                    index_elements=[ImageRow.ref], set_=fields
                )
            )
        await s.execute(delete(AgentImageRow).where(AgentImageRow.agent_id == reg.agent_id))
        for ref in sorted({i.ref for i in reg.images}):
            s.add(AgentImageRow(agent_id=reg.agent_id, image_ref=ref))

    async def touch(self, agent_id: str, at: datetime) -> AgentStatus | None:
        async with self._db.write() as s:
            result = await s.execute(
                update(AgentRow)
                .where(AgentRow.id == agent_id, AgentRow.status == _ALIVE)
                .values(last_heartbeat=at)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return AgentStatus.ALIVE
            result = await s.execute(
                update(AgentRow)
                .where(AgentRow.id == agent_id, AgentRow.status == _LOST)
                .values(last_heartbeat=at, status=_ALIVE)
            )
            return AgentStatus.LOST if result.rowcount == 1 else None  # type: ignore[attr-defined]

    async def touch_many(self, seen: Mapping[str, datetime]) -> list[str]:
        """Records the last message of many agents in one transaction (LOST → ALIVE);
        returns the ids of those that were LOST.

        On PostgreSQL this is one UPDATE joined with ``unnest`` of two arrays (ids, times):
        5,000 agents every flush cost one statement, not 5,000 executemany rows each bound
        through SQLAlchemy. The LOST ones are found among the (few) LOST rows, not by an IN
        list of every id."""
        if not seen:
            return []
        ids = sorted(seen)
        async with self._db.write() as s:
            was_lost = set(await s.scalars(select(AgentRow.id).where(AgentRow.status == _LOST)))
            if self._db.is_sqlite:
                await s.execute(
                    update(_AGENTS)
                    .where(_AGENTS.c.id == bindparam("b_id"), _AGENTS.c.status != _TERMINATED)
                    .values(last_heartbeat=bindparam("b_at"), status=_ALIVE),
                    [{"b_id": agent_id, "b_at": seen[agent_id]} for agent_id in ids],
                )
            else:
                await s.execute(_TOUCH_MANY_PG, {
                    "ids": _pg_array(ids),
                    "ats": _pg_array([seen[agent_id].isoformat() for agent_id in ids]),
                    "alive": _ALIVE, "terminated": _TERMINATED})
        return sorted(was_lost.intersection(ids))

    async def live_kernels(self, agent_ids: Sequence[str]) -> list[LiveKernel]:
        """Kernels on any of ``agent_ids`` whose sessions are live: one join selecting five
        columns, instead of full session records (kernels, history) loaded per agent."""
        if not agent_ids:
            return []
        query = (
            select(KernelRow.agent_id, KernelRow.id, SessionRow.id, SessionRow.state,
                   SessionRow.state_changed_at)
            .join(SessionRow, SessionRow.id == KernelRow.session_id)
            .where(KernelRow.agent_id.in_(sorted(set(agent_ids))),
                   SessionRow.state.in_(sorted(x.value for x in LIVE_STATES)))
        )
        async with self._db.read() as s:
            rows = (await s.execute(query)).all()
        return [LiveKernel(agent_id=str(agent_id), kernel_id=str(kernel_id),
                           session_id=session_id, session_state=SessionState(state),
                           session_state_changed_at=changed_at)
                for agent_id, kernel_id, session_id, state, changed_at in rows]

    async def mark_lost(self, silent_since: datetime) -> list[str]:
        async with self._db.write() as s:
            result = await s.execute(
                update(AgentRow)
                .where(AgentRow.status == _ALIVE, AgentRow.last_heartbeat < silent_since)
                .values(status=_LOST)
                .returning(AgentRow.id)
            )
            return sorted(result.scalars().all())

    async def get(self, agent_id: str) -> AgentRecord | None:
        async with self._db.read() as s:
            row = await s.get(AgentRow, agent_id)
            return agent_record(row) if row is not None else None

    async def list_alive(self) -> list[tuple[AgentRecord, frozenset[str]]]:
        async with self._db.read() as s:
            agents = (
                await s.scalars(
                    select(AgentRow).where(AgentRow.status == _ALIVE).order_by(AgentRow.id)
                )
            ).all()
            held: dict[str, set[str]] = defaultdict(set)
            rows = await s.execute(
                select(AgentImageRow.agent_id, AgentImageRow.image_ref)
                .join(AgentRow, AgentRow.id == AgentImageRow.agent_id)
                .where(AgentRow.status == _ALIVE)
            )
            for agent_id, ref in rows:
                held[agent_id].add(ref)
        return [(agent_record(a), frozenset(held[a.id])) for a in agents]

    async def list_images(self) -> list[ImageRecord]:
        async with self._db.read() as s:
            images = (await s.scalars(select(ImageRow).order_by(ImageRow.ref))).all()
            holders: dict[str, list[str]] = defaultdict(list)
            rows = await s.execute(
                select(AgentImageRow.image_ref, AgentImageRow.agent_id).order_by(
                    AgentImageRow.agent_id
                )
            )
            for ref, agent_id in rows:
                holders[ref].append(agent_id)
        return [
            ImageRecord(
                ref=i.ref,
                digest=i.digest,
                labels={str(k): str(v) for k, v in i.labels.items()},
                size_bytes=i.size_bytes,
                architecture=i.architecture,
                aliases=tuple(str(a) for a in i.aliases),
                agent_ids=tuple(holders[i.ref]),
            )
            for i in images
        ]

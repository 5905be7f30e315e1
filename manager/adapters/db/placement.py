"""Batched placement: many PENDING → SCHEDULED moves committed in one transaction.

Lock order is the repository's (session rows first, then agent rows by id): the session rows are
taken with ``FOR UPDATE SKIP LOCKED`` (a session another scheduler holds is reported
SESSION_GONE, never waited for), then the agents with ``FOR UPDATE`` in id order. Each agent's
capacity is re-checked against its committed occupancy plus every placement of the batch on it,
in order, so two schedulers on one PostgreSQL never over-allocate; a placement that no longer
fits is reported AGENT_CHANGED and nothing of it is written. On SQLite ``BEGIN IMMEDIATE``
serializes the writers.

Statements are set-based on PostgreSQL: the locks are one ``SELECT … FOR UPDATE`` per table,
the writes one ``UPDATE … FROM json_to_recordset(:rows)`` per table (agents, sessions, kernels)
and one ``INSERT … SELECT`` for the history, whatever the batch size. The whole batch travels
as ONE JSON text parameter per statement: the per-statement round trips of ``executemany``,
and then the per-element escaping of bound arrays and the compiling of thousand-item ``IN``
lists, were most of a placement's cost (cProfile). SQLite (one local writer) keeps
``executemany``. Rows are read as columns (JSON as its text, parsed once per distinct text:
thousands of agents share a handful of capacity and occupancy shapes), not as ORM objects.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import AgentRow, KernelRow, SessionRow, StatusHistoryRow
from bai.manager.domain import slots
from bai.manager.domain.model import AgentStatus, SessionState, Slots
from bai.manager.domain.placement import Placement
from bai.manager.domain.ports import PlaceOutcome
from sqlalchemy import Table, Text, bindparam, insert, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SlotsParser", "place_batch"]

_PENDING, _SCHEDULED = SessionState.PENDING.value, SessionState.SCHEDULED.value
_ALIVE = AgentStatus.ALIVE.value
_REASON = "Scheduled"
_sessions = cast(Table, SessionRow.__table__)
_kernels = cast(Table, KernelRow.__table__)
_agents = cast(Table, AgentRow.__table__)


class SlotsParser:
    """Parses slot maps stored as JSON text, once per distinct text. The returned maps are
    shared between callers: treat them as read-only (every :mod:`slots` function returns a new
    map)."""

    def __init__(self) -> None:
        self._seen: dict[str, Slots] = {}

    def __call__(self, raw: str | None) -> Slots:
        key = raw or "{}"
        parsed = self._seen.get(key)
        if parsed is None:
            parsed = slots.from_strings(json.loads(key) or {})
            if len(self._seen) < 4096:  # a cache of shapes, not of every agent
                self._seen[key] = parsed
        return parsed


# PostgreSQL: one statement per table for the whole batch, the batch bound as one JSON text.
# Every statement JOINs the batch (never ``= ANY(array)``): on a table whose statistics are not
# yet analyzed the planner may scan it with ``= ANY``, comparing every row with every batch
# item (measured: 0.5 ms of PostgreSQL CPU per placement); a join is a hash join at worst.
_PG_LOCK_SESSIONS = text(
    "SELECT s.id FROM sessions AS s "
    "JOIN json_array_elements_text(CAST(:ids AS json)) AS v(id) ON s.id = CAST(v.id AS uuid) "
    "WHERE s.state = :state ORDER BY s.id FOR UPDATE OF s SKIP LOCKED")
_PG_LOCK_AGENTS = text(
    "SELECT a.id, a.status, CAST(a.capacity AS text), CAST(a.occupied AS text) FROM agents AS a "
    "JOIN json_array_elements_text(CAST(:ids AS json)) AS v(id) ON a.id = v.id "
    "ORDER BY a.id FOR UPDATE OF a")
_PG_AGENTS = text(
    "UPDATE agents AS a SET occupied = v.occupied "
    "FROM json_to_recordset(CAST(:rows AS json)) AS v(id varchar, occupied json) "
    "WHERE a.id = v.id")
_PG_SESSIONS = text(
    "UPDATE sessions AS s SET state = :state, reason = :reason, message = v.message, "
    "state_changed_at = :at "
    "FROM json_to_recordset(CAST(:rows AS json)) AS v(id uuid, message text) "
    "WHERE s.id = v.id")
_PG_KERNELS = text(
    "UPDATE kernels AS k SET agent_id = v.agent_id, state = :state, occupied_slots = v.slots "
    "FROM json_to_recordset(CAST(:rows AS json)) AS v(id uuid, agent_id varchar, slots json) "
    "WHERE k.session_id = v.id")
_PG_HISTORY = text(
    "INSERT INTO session_status_history (session_id, state, reason, message, at) "
    "SELECT v.id, :state, :reason, v.message, :at "
    "FROM json_to_recordset(CAST(:rows AS json)) AS v(id uuid, message text)")


async def place_batch(
    db: Database, placements: Sequence[Placement], at: datetime
) -> dict[uuid.UUID, PlaceOutcome]:
    outcome = {p.session_id: PlaceOutcome.SESSION_GONE for p in placements}
    if not placements:
        return outcome
    async with db.write() as s:
        owned = await _lock_sessions(s, db.is_sqlite, list(outcome))
        by_agent: dict[str, list[Placement]] = defaultdict(list)
        for p in placements:
            if p.session_id in owned:
                by_agent[p.agent_id].append(p)
        if not by_agent:
            return outcome
        locked = await _lock_agents(s, db.is_sqlite, sorted(by_agent))
        parse, text_of = SlotsParser(), _SlotsText()
        accepted: list[Placement] = []
        occupancy: dict[str, dict[str, str]] = {}
        for agent_id, status, capacity, occupied_raw in locked:
            wanted = by_agent.pop(agent_id)
            if status != _ALIVE:
                for p in wanted:
                    outcome[p.session_id] = PlaceOutcome.AGENT_CHANGED
                continue
            occupied = parse(occupied_raw)
            free = slots.sub(parse(capacity), occupied)
            taken: Slots = {}
            for p in wanted:
                if slots.missing(slots.sub(free, taken), p.slots):
                    outcome[p.session_id] = PlaceOutcome.AGENT_CHANGED
                    continue
                taken = slots.add(taken, p.slots)
                accepted.append(p)
                outcome[p.session_id] = PlaceOutcome.PLACED
            if taken:
                occupancy[agent_id] = text_of(slots.add(occupied, taken))
        for missing_agent in by_agent.values():  # agents that no longer exist
            for p in missing_agent:
                outcome[p.session_id] = PlaceOutcome.AGENT_CHANGED
        if accepted:
            write = _write_sqlite if db.is_sqlite else _write_postgresql
            await write(s, accepted, occupancy, at, text_of)
    return outcome


async def _lock_sessions(s: AsyncSession, is_sqlite: bool,
                         ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The ids still PENDING, locked (those another writer holds are skipped)."""
    if not is_sqlite:
        rows = await s.execute(_PG_LOCK_SESSIONS, {"ids": json.dumps([str(i) for i in ids]),
                                                   "state": _PENDING})
        return {r[0] for r in rows}
    return set(await s.scalars(
        select(SessionRow.id).where(SessionRow.id.in_(ids), SessionRow.state == _PENDING)))


async def _lock_agents(s: AsyncSession, is_sqlite: bool,
                       ids: list[str]) -> list[tuple[str, str, str, str]]:
    """(id, status, capacity JSON, occupancy JSON) of the agents, locked in id order."""
    if not is_sqlite:
        rows = await s.execute(_PG_LOCK_AGENTS, {"ids": json.dumps(ids)})
    else:
        rows = await s.execute(
            select(AgentRow.id, AgentRow.status, sql_cast(AgentRow.capacity, Text),
                   sql_cast(AgentRow.occupied, Text))
            .where(AgentRow.id.in_(ids)).order_by(AgentRow.id))
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def _message(p: Placement) -> str:
    return f"placed on agent {p.agent_id}"


class _SlotsText:
    """``slots.to_strings`` once per distinct slot map of a batch (formatting decimals was the
    largest Python cost of a commit; a batch holds a handful of distinct maps)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[tuple[str, Any], ...], dict[str, str]] = {}

    def __call__(self, value: Slots) -> dict[str, str]:
        key = tuple(value.items())
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = slots.to_strings(value)
        return found


async def _write_postgresql(s: AsyncSession, accepted: list[Placement],
                            occupancy: dict[str, dict[str, str]], at: datetime,
                            text_of: _SlotsText) -> None:
    agents = [{"id": agent_id, "occupied": o} for agent_id, o in occupancy.items()]
    moved = json.dumps([{"id": str(p.session_id), "message": _message(p)} for p in accepted])
    kernels = [{"id": str(p.session_id), "agent_id": p.agent_id,
                "slots": text_of(p.kernel_slots or p.slots)} for p in accepted]
    await s.execute(_PG_AGENTS, {"rows": json.dumps(agents)})
    await s.execute(_PG_SESSIONS, {"rows": moved, "state": _SCHEDULED, "reason": _REASON,
                                   "at": at})
    await s.execute(_PG_KERNELS, {"rows": json.dumps(kernels), "state": _SCHEDULED})
    await s.execute(_PG_HISTORY, {"rows": moved, "state": _SCHEDULED, "reason": _REASON,
                                  "at": at})


async def _write_sqlite(s: AsyncSession, accepted: list[Placement],
                        occupancy: dict[str, dict[str, str]], at: datetime,
                        text_of: _SlotsText) -> None:
    rows: list[dict[str, Any]] = [{"b_id": agent_id, "b_occupied": occupied}
                                  for agent_id, occupied in occupancy.items()]
    await s.execute(update(_agents).where(_agents.c.id == bindparam("b_id"))
                    .values(occupied=bindparam("b_occupied")), rows)
    await s.execute(
        update(_sessions).where(_sessions.c.id == bindparam("b_id")).values(
            state=_SCHEDULED, reason=_REASON, message=bindparam("b_message"),
            state_changed_at=at),
        [{"b_id": p.session_id, "b_message": _message(p)} for p in accepted],
    )
    await s.execute(
        update(_kernels).where(_kernels.c.session_id == bindparam("b_session")).values(
            agent_id=bindparam("b_agent"), state=_SCHEDULED,
            occupied_slots=bindparam("b_slots")),
        [{"b_session": p.session_id, "b_agent": p.agent_id,
          "b_slots": text_of(p.kernel_slots or p.slots)} for p in accepted],
    )
    await s.execute(insert(StatusHistoryRow), [
        {"session_id": p.session_id, "state": _SCHEDULED, "reason": _REASON,
         "message": _message(p), "at": at} for p in accepted
    ])

"""Batched placement: many PENDING → SCHEDULED moves committed in one transaction.

Lock order is the repository's (session rows first, then agent rows by id): the session rows are
taken with ``FOR UPDATE SKIP LOCKED`` (a session another scheduler holds is reported
SESSION_GONE, never waited for), then the agents with ``FOR UPDATE`` in id order. Each agent's
capacity is re-checked against its committed occupancy plus every placement of the batch on it,
in order, so two schedulers on one PostgreSQL never over-allocate; a placement that no longer
fits is reported AGENT_CHANGED and nothing of it is written. On SQLite ``BEGIN IMMEDIATE``
serializes the writers.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.tables import AgentRow, KernelRow, SessionRow, StatusHistoryRow
from bai.manager.domain import slots
from bai.manager.domain.model import AgentStatus, SessionState, Slots
from bai.manager.domain.placement import Placement
from bai.manager.domain.ports import PlaceOutcome
from sqlalchemy import Table, bindparam, insert, select, update

__all__ = ["place_batch"]

_PENDING, _SCHEDULED = SessionState.PENDING.value, SessionState.SCHEDULED.value
_sessions = cast(Table, SessionRow.__table__)
_kernels = cast(Table, KernelRow.__table__)


async def place_batch(
    db: Database, placements: Sequence[Placement], at: datetime
) -> dict[uuid.UUID, PlaceOutcome]:
    outcome = {p.session_id: PlaceOutcome.SESSION_GONE for p in placements}
    if not placements:
        return outcome
    async with db.write() as s:
        owned = set(await s.scalars(
            select(SessionRow.id)
            .where(SessionRow.id.in_(list(outcome)), SessionRow.state == _PENDING)
            .order_by(SessionRow.id)
            .with_for_update(skip_locked=True)
        ))
        by_agent: dict[str, list[Placement]] = defaultdict(list)
        for p in placements:
            if p.session_id in owned:
                by_agent[p.agent_id].append(p)
        if not by_agent:
            return outcome
        agents = (await s.scalars(
            select(AgentRow).where(AgentRow.id.in_(sorted(by_agent)))
            .order_by(AgentRow.id).with_for_update()
        )).all()
        accepted: list[Placement] = []
        for agent in agents:
            wanted = by_agent.pop(agent.id)
            if agent.status != AgentStatus.ALIVE.value:
                for p in wanted:
                    outcome[p.session_id] = PlaceOutcome.AGENT_CHANGED
                continue
            occupied = slots.from_strings(agent.occupied)
            free = slots.sub(slots.from_strings(agent.capacity), occupied)
            taken: Slots = {}
            for p in wanted:
                if slots.missing(slots.sub(free, taken), p.slots):
                    outcome[p.session_id] = PlaceOutcome.AGENT_CHANGED
                    continue
                taken = slots.add(taken, p.slots)
                accepted.append(p)
                outcome[p.session_id] = PlaceOutcome.PLACED
            if taken:
                agent.occupied = slots.to_strings(slots.add(occupied, taken))
        for missing_agent in by_agent.values():  # agents that no longer exist
            for p in missing_agent:
                outcome[p.session_id] = PlaceOutcome.AGENT_CHANGED
        if not accepted:
            return outcome
        await s.flush()
        messages = {p.session_id: f"placed on agent {p.agent_id}" for p in accepted}
        await s.execute(
            update(_sessions).where(_sessions.c.id == bindparam("b_id")).values(
                state=_SCHEDULED, reason="Scheduled", message=bindparam("b_message"),
                state_changed_at=at),
            [{"b_id": p.session_id, "b_message": messages[p.session_id]} for p in accepted],
        )
        await s.execute(
            update(_kernels).where(_kernels.c.session_id == bindparam("b_session")).values(
                agent_id=bindparam("b_agent"), state=_SCHEDULED,
                occupied_slots=bindparam("b_slots")),
            [{"b_session": p.session_id, "b_agent": p.agent_id,
              "b_slots": slots.to_strings(p.kernel_slots or p.slots)} for p in accepted],
        )
        await s.execute(insert(StatusHistoryRow), [
            {"session_id": p.session_id, "state": _SCHEDULED, "reason": "Scheduled",
             "message": messages[p.session_id], "at": at} for p in accepted
        ])
    return outcome

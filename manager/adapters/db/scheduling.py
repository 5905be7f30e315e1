"""SQL side of the scheduler: the pending queue, resource groups, policies, usage, pending notes.

Implements :class:`bai.manager.domain.scheduling.ports.SchedulingRepository`. Reads are lean
(columns, not ORM objects) because a pass reads up to the whole queue and every ALIVE agent;
JSON columns are read as text and parsed once per distinct text (thousands of sessions and
agents share a handful of specs and slot shapes). Writes of pending notes are one transaction
per pass.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from bai.manager.adapters.db.engine import Database
from bai.manager.adapters.db.placement import SlotsParser
from bai.manager.adapters.db.records import agent_record
from bai.manager.adapters.db.tables import (
    AgentImageRow,
    AgentRow,
    FairShareWeightRow,
    KernelRow,
    KeypairResourcePolicyRow,
    KeypairRow,
    ProjectRow,
    ResourceGroupRow,
    SessionDependencyRow,
    SessionRow,
    StatusHistoryRow,
    UserResourcePolicyRow,
    UserRow,
)
from bai.manager.domain import slots
from bai.manager.domain.model import (
    LIVE_STATES,
    AgentRecord,
    AgentStatus,
    SessionState,
    Slots,
    utcnow,
)
from bai.manager.domain.scheduling.ports import PendingNote
from bai.manager.domain.scheduling.types import (
    Allocation,
    DependencyState,
    KeypairLimits,
    PendingSession,
    PolicyLimits,
    ResourceGroup,
    UsageSample,
)
from sqlalchemy import Table, Text, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy import cast as sql_cast

__all__ = ["SqlSchedulingRepository"]

S = SessionState
_PENDING = S.PENDING.value
_PLACED_LIVE = sorted(s.value for s in LIVE_STATES - {S.PENDING})
_sessions = cast(Table, SessionRow.__table__)
_CHUNK = 500  # ids per IN list (SQLite's variable limit is far above; keeps statements small)


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


_ALIVE = AgentStatus.ALIVE.value
_AgentShape = tuple[str, str, str, str, str, str, str]
"""What a pass needs of an agent row: id, address, resource group, architecture, version, and
the capacity and occupancy JSON texts."""


class SqlSchedulingRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._known_agents: dict[str, tuple[_AgentShape, AgentRecord]] = {}
        """Agent records of earlier snapshots, by id, with the row shape they were built from."""
        self._slots = SlotsParser()
        """Parsed capacity / occupancy texts, shared by every snapshot (agents with the same
        text share one map, which lets the scheduler's index compute per shape)."""

    # ---- the queue --------------------------------------------------------------------

    async def pending(self, limit: int, group: str | None = None) -> list[PendingSession]:
        query = (
            select(SessionRow.id, SessionRow.name, SessionRow.access_key, UserRow.email,
                   SessionRow.domain_name, SessionRow.project_name,
                   sql_cast(SessionRow.spec, Text),
                   SessionRow.priority, SessionRow.created_at, SessionRow.starts_at,
                   SessionRow.reason, SessionRow.message)
            .join(KeypairRow, KeypairRow.access_key == SessionRow.access_key)
            .join(UserRow, UserRow.id == KeypairRow.user_id)
            .where(SessionRow.state == _PENDING)
            .order_by(SessionRow.priority.desc(), SessionRow.created_at, SessionRow.id)
            .limit(limit)
        )
        deps_query = (
            select(SessionDependencyRow.session_id, SessionDependencyRow.depends_on)
            .join(SessionRow, SessionRow.id == SessionDependencyRow.session_id)
            .where(SessionRow.state == _PENDING)
        )
        async with self._db.read() as s:
            rows = (await s.execute(query)).all()
            deps: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
            for sid, dep in await s.execute(deps_query):
                deps[sid].append(dep)
        found = []
        specs: dict[str, tuple[str, str, Slots, int]] = {}
        for (sid, name, ak, email, domain, project, spec_text, priority, created, starts,
             reason, message) in rows:
            parsed = specs.get(spec_text)
            if parsed is None:
                parsed = specs[spec_text] = _scheduled_part(json.loads(spec_text or "{}"))
            rg, image, resources, cluster_size = parsed
            if group is not None and rg != group:
                continue
            found.append(PendingSession(
                id=sid, name=name, access_key=ak, user=email, domain=domain, project=project,
                resource_group=rg, image=image, resources=resources,
                cluster_size=cluster_size, priority=priority, created_at=created,
                starts_at=starts, dependencies=tuple(sorted(deps[sid])) if sid in deps else (),
                reason=reason, message=message))
        return found

    async def alive_agents(self) -> list[tuple[AgentRecord, frozenset[str]]]:
        """Every ALIVE agent with the images it holds, in id order.

        Reads the columns a pass needs, with capacity and occupancy as JSON text; a record of
        an earlier snapshot is reused when the agent's row shape is unchanged, or copied with
        the new values when it changed, so only agents never seen before are read in full.
        Their ``first_contact`` / ``last_heartbeat`` are therefore those of the first read (the
        scheduler does not use them; :meth:`SqlAgentRepository.get` gives fresh ones).
        """
        query = (
            select(AgentRow.id, AgentRow.address, AgentRow.resource_group,
                   AgentRow.architecture, AgentRow.version,
                   sql_cast(AgentRow.capacity, Text), sql_cast(AgentRow.occupied, Text))
            .where(AgentRow.status == _ALIVE).order_by(AgentRow.id)
        )
        images_query = (
            select(AgentImageRow.agent_id, AgentImageRow.image_ref)
            .join(AgentRow, AgentRow.id == AgentImageRow.agent_id)
            .where(AgentRow.status == _ALIVE)
            .order_by(AgentImageRow.agent_id, AgentImageRow.image_ref)
        )
        previous = self._known_agents  # (a concurrent call may replace it meanwhile)
        async with self._db.read() as s:
            rows = (await s.execute(query)).all()
            held: dict[str, list[str]] = defaultdict(list)
            for agent_id, ref in await s.execute(images_query):
                held[agent_id].append(ref)
            unseen = [r[0] for r in rows if r[0] not in previous]
            fresh: dict[str, AgentRecord] = {}
            for chunk in _chunks(unseen):
                for full in await s.scalars(select(AgentRow).where(AgentRow.id.in_(chunk))):
                    fresh[full.id] = agent_record(full)
        parse = self._slots
        image_sets: dict[tuple[str, ...], frozenset[str]] = {}
        known: dict[str, tuple[_AgentShape, AgentRecord]] = {}
        found: list[tuple[AgentRecord, frozenset[str]]] = []
        for shape in cast(list[_AgentShape], [tuple(r) for r in rows]):
            agent_id = shape[0]
            seen = previous.get(agent_id)
            if seen is not None and seen[0] == shape:
                record = seen[1]
            else:
                _, address, group, arch, version, capacity, occupied = shape
                base = seen[1] if seen is not None else fresh.get(agent_id)
                if base is None:
                    continue  # (cannot happen: unseen agents were read in full above)
                record = dataclasses.replace(
                    base, address=address, status=AgentStatus.ALIVE, resource_group=group,
                    architecture=arch, version=version, capacity=parse(capacity),
                    occupied=parse(occupied))
            known[agent_id] = (shape, record)
            refs = tuple(held.get(agent_id, ()))
            images = image_sets.get(refs)
            if images is None:
                images = image_sets[refs] = frozenset(refs)
            found.append((record, images))
        self._known_agents = known  # agents no longer ALIVE are forgotten
        return found

    async def resource_groups(self) -> dict[str, ResourceGroup]:
        async with self._db.read() as s:
            rows = (await s.scalars(select(ResourceGroupRow))).all()
        return {r.name: ResourceGroup(
            name=r.name, scheduler=r.scheduler, agent_selector=r.agent_selector,
            scheduler_opts=dict(r.scheduler_opts or {}),
            allowed_domains=frozenset(str(d) for d in r.allowed_domains or ()),
            allowed_projects=frozenset(str(p) for p in r.allowed_projects or ()),
            is_active=r.is_active) for r in rows}

    async def dependency_states(
        self, ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, DependencyState]:
        found: dict[uuid.UUID, DependencyState] = {}
        async with self._db.read() as s:
            for chunk in _chunks(sorted(ids)):
                rows = await s.execute(
                    select(SessionRow.id, SessionRow.name, SessionRow.state, SessionRow.exit_code)
                    .where(SessionRow.id.in_(chunk)))
                for sid, name, state, exit_code in rows:
                    found[sid] = DependencyState(name, S(state), exit_code)
        return found

    # ---- policies and occupancy -------------------------------------------------------

    async def limits(
        self, access_keys: Collection[str], users: Collection[str], projects: Collection[str]
    ) -> PolicyLimits:
        keypairs: dict[str, KeypairLimits] = {}
        user_caps: dict[str, Slots] = {}
        project_caps: dict[str, Slots] = {}
        async with self._db.read() as s:
            for chunk in _chunks(sorted(access_keys)):
                rows = await s.execute(
                    select(KeypairRow.access_key, KeypairResourcePolicyRow)
                    .join(KeypairResourcePolicyRow,
                          KeypairResourcePolicyRow.name == KeypairRow.resource_policy)
                    .where(KeypairRow.access_key.in_(chunk)))
                for ak, policy in rows:
                    keypairs[ak] = KeypairLimits(
                        policy=policy.name,
                        max_concurrent_sessions=policy.max_concurrent_sessions or None,
                        total_slots=_caps(policy.total_resource_slots),
                        limited_unspecified=policy.default_for_unspecified == "LIMITED",
                        max_pending_sessions=policy.max_pending_session_count)
            for chunk in _chunks(sorted(users)):
                user_rows = await s.execute(
                    select(UserRow.email, UserResourcePolicyRow.total_resource_slots)
                    .join(UserResourcePolicyRow,
                          UserResourcePolicyRow.name == UserRow.resource_policy)
                    .where(UserRow.email.in_(chunk)))
                for email, user_cap in user_rows:
                    if user_cap:
                        user_caps[email] = _caps(user_cap)
            pairs = [tuple(p.split("/", 1)) for p in sorted(projects) if "/" in p]
            for chunk in _chunks(pairs):
                projects_rows = await s.execute(
                    select(ProjectRow.domain_name, ProjectRow.name, ProjectRow.total_resource_slots)
                    .where(tuple_(ProjectRow.domain_name, ProjectRow.name).in_(chunk)))
                for domain, name, project_cap in projects_rows:
                    if project_cap:
                        project_caps[f"{domain}/{name}"] = _caps(project_cap)
        return PolicyLimits(keypairs=keypairs, users=user_caps, projects=project_caps)

    async def allocations(self) -> list[Allocation]:
        query = (
            select(SessionRow.id, SessionRow.access_key, UserRow.email, SessionRow.domain_name,
                   SessionRow.project_name, AgentRow.resource_group, KernelRow.occupied_slots)
            .join(KernelRow, KernelRow.session_id == SessionRow.id)
            .join(AgentRow, AgentRow.id == KernelRow.agent_id)
            .join(KeypairRow, KeypairRow.access_key == SessionRow.access_key)
            .join(UserRow, UserRow.id == KeypairRow.user_id)
            .where(SessionRow.state.in_(_PLACED_LIVE))
        )
        by_session: dict[uuid.UUID, list[Any]] = {}
        async with self._db.read() as s:
            for sid, ak, email, domain, project, group, occupied in await s.execute(query):
                entry = by_session.setdefault(sid, [ak, email, f"{domain}/{project}", group, {}])
                entry[4] = slots.add(entry[4], slots.from_strings(occupied or {}))
        return [Allocation(ak, email, project, group, used)
                for ak, email, project, group, used in by_session.values()]

    async def usage(self, since: datetime) -> list[UsageSample]:
        started = (
            select(StatusHistoryRow.session_id, StatusHistoryRow.at)
            .where(StatusHistoryRow.state == S.SCHEDULED.value).subquery()
        )
        query = (
            select(SessionRow.id, UserRow.email, SessionRow.domain_name, SessionRow.project_name,
                   started.c.at, SessionRow.terminated_at, KernelRow.occupied_slots)
            .join(started, started.c.session_id == SessionRow.id)
            .join(KernelRow, KernelRow.session_id == SessionRow.id)
            .join(KeypairRow, KeypairRow.access_key == SessionRow.access_key)
            .join(UserRow, UserRow.id == KeypairRow.user_id)
            .where((SessionRow.terminated_at.is_(None)) | (SessionRow.terminated_at >= since))
        )
        by_session: dict[uuid.UUID, list[Any]] = {}
        async with self._db.read() as s:
            for sid, email, domain, project, start, end, occupied in await s.execute(query):
                entry = by_session.setdefault(sid, [email, f"{domain}/{project}", {}, start, end])
                entry[2] = slots.add(entry[2], slots.from_strings(occupied or {}))
        return [UsageSample(email, project, used, start, end)
                for email, project, used, start, end in by_session.values()]

    async def weights(self) -> dict[tuple[str, str], Decimal]:
        async with self._db.read() as s:
            rows = (await s.scalars(select(FairShareWeightRow))).all()
        found = {}
        for r in rows:
            try:
                weight = Decimal(r.weight)
            except InvalidOperation:
                continue
            if weight > 0:
                found[(r.scope, r.subject)] = weight
        return found

    async def pending_of(self, access_key: str) -> int:
        async with self._db.read() as s:
            count = await s.scalar(select(func.count()).select_from(SessionRow).where(
                SessionRow.access_key == access_key, SessionRow.state == _PENDING))
        return int(count or 0)

    # ---- writes -----------------------------------------------------------------------

    async def note_pending(self, notes: Sequence[PendingNote], at: datetime) -> list[uuid.UUID]:
        if not notes:
            return []
        async with self._db.write() as s:
            still: set[uuid.UUID] = set()
            for chunk in _chunks([n.session_id for n in notes]):
                still |= set(await s.scalars(select(SessionRow.id).where(
                    SessionRow.id.in_(chunk), SessionRow.state == _PENDING)))
            todo = [n for n in notes if n.session_id in still]
            if not todo:
                return []
            await s.execute(
                update(_sessions).where(_sessions.c.id == bindparam("b_id")).values(
                    reason=bindparam("b_reason"), message=bindparam("b_message")),
                [{"b_id": n.session_id, "b_reason": n.reason, "b_message": n.message}
                 for n in todo])
            history = [{"session_id": n.session_id, "state": _PENDING, "reason": n.reason,
                        "message": n.message, "at": at} for n in todo if n.new_reason]
            if history:
                await s.execute(insert(StatusHistoryRow), history)
        return [n.session_id for n in todo]

    # ---- administration (tests, tools) ------------------------------------------------

    async def put_resource_group(self, group: ResourceGroup) -> None:
        """Creates or replaces a resource group."""
        async with self._db.write() as s:
            await s.execute(delete(ResourceGroupRow).where(ResourceGroupRow.name == group.name))
            s.add(ResourceGroupRow(
                name=group.name, description="", is_active=group.is_active,
                scheduler=group.scheduler, agent_selector=group.agent_selector,
                scheduler_opts=dict(group.scheduler_opts),
                allowed_domains=sorted(group.allowed_domains),
                allowed_projects=sorted(group.allowed_projects), created_at=utcnow()))

    async def put_weight(self, scope: str, subject: str, weight: Decimal) -> None:
        async with self._db.write() as s:
            await s.execute(delete(FairShareWeightRow).where(
                FairShareWeightRow.scope == scope, FairShareWeightRow.subject == subject))
            s.add(FairShareWeightRow(scope=scope, subject=subject, weight=str(weight)))


def _scheduled_part(spec: dict[str, Any]) -> tuple[str, str, Slots, int]:
    """Resource group, image, resources and cluster size of a stored session spec."""
    return (str(spec.get("resource_group", "default")), str(spec.get("image", "")),
            slots.from_strings(spec.get("resources", {})), int(spec.get("cluster_size", 1)))


def _caps(raw: dict[str, Any] | None) -> Slots:
    return slots.from_strings(raw or {})

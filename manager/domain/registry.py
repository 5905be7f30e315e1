"""Agent registry: registration with reconciliation, heartbeats, kernel events, LOST detection.

Registration is a complete snapshot of the agent's kernels, so it also reconciles:
- kernels the agent holds that the database does not know as live → destroyed (directive);
- RUNNING kernels of the database that the agent does not hold → session ERROR (KernelLost);
- kernels the agent reports as exited → handled like a kernel exit (batch result or ERROR).
Sessions on a LOST agent are left as they are (the agent may come back); the scheduler only
places onto ALIVE agents.

The heartbeat path awaits nothing: a heartbeat (or kernel event) only records its time in memory
(:class:`~bai.manager.domain.liveness.LatestTimes`); :meth:`AgentRegistry.flush` writes the latest
time of every agent heard from in one batch, every ``flush_interval`` seconds and always right
before the LOST check, so the check never sees a time older than the last message. A LOST agent
that speaks again is revived (LOST → ALIVE) by that flush, at most ``flush_interval`` after its
message. The kernel lists of every ``reconcile_every``-th heartbeat are reconciled by that flush
too, all agents' lists with one query; kernels to destroy reach the agent with its next ack.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bai.common.errors import BaiError
from bai.manager.domain.errors import IllegalTransition
from bai.manager.domain.events import AgentChanged
from bai.manager.domain.lifecycle.kernel_exit import KernelExitHandler
from bai.manager.domain.liveness import LatestTimes, LiveKernel, LivenessRepository, by_agent
from bai.manager.domain.loops import stop_requested
from bai.manager.domain.model import (
    AgentRegistration,
    AgentStatus,
    KernelEvent,
    KernelEventKind,
    KernelReport,
    SessionState,
    utcnow,
)
from bai.manager.domain.ports import AgentClient, EventBus, SessionRepository
from bai.manager.domain.transitions import Transitions

__all__ = ["AgentRegistry", "Registered", "RegistryConfig"]

log = logging.getLogger(__name__)
_SNAPSHOT_SLACK = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    heartbeat_interval_ms: int = 3000
    lost_timeout: float | None = None
    """Seconds of silence before an agent is LOST; None means 3 intervals + 5 s."""
    reconcile_every: int = 10
    """Reconcile the kernel list of every N-th heartbeat (0: only at registration)."""
    flush_interval: float = 0.5
    """Seconds between batched writes of the agents' last-message times."""
    max_concurrent_registrations: int = 24
    """Registrations handled at once; the others wait their turn. Thousands of agents
    (re)connecting together would otherwise take every database connection (the pool holds
    30), so that flushes and user calls time out too. Kept below the pool size."""

    @property
    def effective_lost_timeout(self) -> float:
        if self.lost_timeout is not None:
            return self.lost_timeout
        return 3 * self.heartbeat_interval_ms / 1000 + 5


@dataclass(frozen=True, slots=True)
class Registered:
    agent_id: str
    heartbeat_interval_ms: int
    destroy_kernel_ids: tuple[str, ...]


class AgentRegistry:
    def __init__(
        self,
        agents: LivenessRepository,
        sessions: SessionRepository,
        client: AgentClient,
        moves: Transitions,
        exits: KernelExitHandler,
        bus: EventBus,
        config: RegistryConfig,
    ) -> None:
        self._agents = agents
        self._sessions = sessions
        self._client = client
        self._moves = moves
        self._exits = exits
        self._bus = bus
        self.config = config
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: LatestTimes[str] = LatestTimes()
        """Agents heard from since the last flush, with the time of their latest message."""
        self._snapshots: dict[str, tuple[datetime, Sequence[KernelReport]]] = {}
        """Heartbeat kernel lists due for reconciliation at the next flush (latest per agent)."""
        self._directives: dict[str, list[str]] = {}
        """Kernels each agent should destroy, handed to its stream with its next ack."""
        self._lost: set[str] = set()
        """Agents this process marked (or found) LOST."""
        self.heartbeats = 0
        """Heartbeats received (benchmarks)."""
        self._registering = asyncio.Semaphore(config.max_concurrent_registrations)

    async def register(self, reg: AgentRegistration) -> Registered:
        async with self._registering:
            return await self._register(reg)

    async def _register(self, reg: AgentRegistration) -> Registered:
        received = utcnow()
        agent = await self._agents.register(reg, received)
        self._lost.discard(agent.id)
        self._seen.discard(agent.id)
        self._snapshots.pop(agent.id, None)  # this registration's snapshot is newer
        self._directives.pop(agent.id, None)  # and decides afresh what to destroy
        log.info("agent %s registered at %s (%s, group %s, %d kernels, %d images)",
                 agent.id, agent.address, ", ".join(f"{k}={v}" for k, v in
                                                    sorted(agent.capacity.items())),
                 agent.resource_group, len(reg.kernels), len(reg.images))
        destroy = await self._reconcile({reg.agent_id: (received, reg.kernels)})
        await self._bus.publish(AgentChanged(agent.id, AgentStatus.ALIVE))
        return Registered(agent.id, self.config.heartbeat_interval_ms,
                          tuple(destroy.get(agent.id, ())))

    async def _reconcile(
        self, snapshots: Mapping[str, tuple[datetime, Sequence[KernelReport]]]
    ) -> dict[str, list[str]]:
        """Compares complete kernel snapshots of agents with the database (one query for all of
        them); returns the kernels each agent should destroy."""
        live = by_agent(await self._agents.live_kernels(list(snapshots)))
        destroy: dict[str, list[str]] = {}
        for agent_id, (received, kernels) in snapshots.items():
            ids = await self._reconcile_one(agent_id, kernels, live.get(agent_id, []), received)
            if ids:
                destroy[agent_id] = ids
        return destroy

    async def _reconcile_one(
        self, agent_id: str, kernels: Sequence[KernelReport], live: Sequence[LiveKernel],
        received: datetime,
    ) -> list[str]:
        reported = {k.kernel_id: k for k in kernels}
        known = {kernel.kernel_id for kernel in live}
        destroy = sorted(kid for kid in reported if kid not in known)
        for kernel in live:
            report = reported.get(kernel.kernel_id)
            if kernel.session_state is not SessionState.RUNNING:
                continue  # creation, restart and termination handlers own these
            if kernel.session_state_changed_at > received - _SNAPSHOT_SLACK:
                continue  # it may have started after the agent took the snapshot
            if report is None:
                await self._lose(kernel.session_id, f"agent {agent_id} reported its kernels "
                                                    f"without kernel {kernel.kernel_id}")
            elif report.state == "terminated":
                await self._exits.on_exit(agent_id, report.kernel_id, report.exit_code,
                                          "exited while the agent was disconnected")
                destroy.append(report.kernel_id)
        if destroy:
            log.info("agent %s: destroying kernels the manager does not know as live: %s",
                     agent_id, ", ".join(destroy))
        return destroy

    async def _lose(self, session_id: uuid.UUID, message: str) -> None:
        try:
            await self._moves.move(session_id, SessionState.RUNNING, SessionState.ERROR,
                                   "KernelLost", message)
        except IllegalTransition:
            pass

    def wants_kernels(self, sequence: int) -> bool:
        """Whether the heartbeat of this sequence number gets its kernel list reconciled (the
        transport converts the list only then)."""
        every = self.config.reconcile_every
        return every > 0 and sequence % every == 0

    def heartbeat(
        self, agent_id: str, sequence: int = 0, kernels: Sequence[KernelReport] | None = None
    ) -> None:
        """Records a sign of life: a dict store, nothing awaited (this runs once per heartbeat).

        The next flush (at most ``flush_interval`` later) writes the time and revives the agent
        if it was LOST, and reconciles the kernel list of every ``reconcile_every``-th heartbeat
        together with the other agents' lists; kernels to destroy are then handed out by
        :meth:`take_directives`. (Writing a LOST agent's message at once cost a transaction per
        message, and a reconciliation query per heartbeat was most of the manager's CPU.)"""
        received = utcnow()
        self.heartbeats += 1
        self._seen.touch(agent_id, received)
        if kernels is not None and self.wants_kernels(sequence):
            self._snapshots[agent_id] = (received, kernels)

    def take_directives(self, agent_id: str) -> list[str]:
        """Kernels the agent should destroy, found since it last asked (each given out once)."""
        return self._directives.pop(agent_id, None) or []

    async def flush(self) -> None:
        """Writes the coalesced last-message times (one batch), revives LOST agents among them
        (another process may have marked them), then reconciles the pending kernel lists."""
        seen = self._seen.drain()
        if seen:
            try:
                revived = await self._agents.touch_many(seen)
            except BaseException:
                self._seen.restore(seen)  # keep them for the next flush
                raise
            self._lost.difference_update(seen)  # every agent written is ALIVE now
            for agent_id in revived:
                log.warning("agent %s is back (ALIVE)", agent_id)
                await self._bus.publish(AgentChanged(agent_id, AgentStatus.ALIVE))
        if self._snapshots:
            snapshots, self._snapshots = self._snapshots, {}
            try:
                destroy = await self._reconcile(snapshots)
            except Exception:
                # Not retried (the agents send newer lists soon), and not raised: the LOST
                # check right after this flush must run whatever happened here.
                log.exception("reconciling the kernel lists of %d agents failed", len(snapshots))
                return
            for agent_id, kernel_ids in destroy.items():
                self._directives.setdefault(agent_id, []).extend(kernel_ids)

    async def kernel_event(self, agent_id: str, event: KernelEvent) -> None:
        self._seen.touch(agent_id)
        if event.kind is not KernelEventKind.TERMINATED:
            log.info("agent %s: kernel %s %s (%s)", agent_id, event.kernel_id, event.kind,
                     event.reason)
            return
        session = await self._exits.on_exit(agent_id, event.kernel_id, event.exit_code,
                                            event.reason)
        if session is not None:
            # The session is over: its other kernels (a cluster's) go with the exited one.
            kernel_ids = [str(k.id) for k in session.kernels if k.agent_id == agent_id]
            self._destroy_later(agent_id, kernel_ids or [event.kernel_id],
                                f"session {session.state}")

    def _destroy_later(self, agent_id: str, kernel_ids: list[str], reason: str) -> None:
        """Destroys the kernels of an ended session without holding up the agent's stream."""

        async def destroy() -> None:
            agent = await self._agents.get(agent_id)
            if agent is None:
                return
            try:
                results = await self._client.destroy_kernels(
                    agent.address, [(kid, reason) for kid in kernel_ids])
            except BaiError as exc:
                results = [(kid, 0, exc.message) for kid in kernel_ids]
            for kernel_id, _, error in results:
                if error:
                    log.warning("could not destroy kernel %s on agent %s: %s", kernel_id,
                                agent_id, error)

        task = asyncio.create_task(destroy(), name=f"destroy-{kernel_ids[0]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def check_lost(self) -> list[str]:
        """Marks silent agents LOST; returns their ids."""
        # The threshold is taken before the flush: a flush that waits for a lock must not age
        # the times it writes past it.
        silent_since = utcnow() - timedelta(seconds=self.config.effective_lost_timeout)
        await self.flush()
        lost = await self._agents.mark_lost(silent_since)
        for agent_id in lost:
            self._lost.add(agent_id)
            log.warning("agent %s is LOST: no message for %.1f s; its sessions are kept, no new "
                        "placements on it", agent_id, self.config.effective_lost_timeout)
            await self._bus.publish(AgentChanged(agent_id, AgentStatus.LOST))
        return lost

    async def run_lost_checker(self) -> None:
        """Flushes the last-message times and checks for LOST agents, periodically."""
        period = min(1.0, self.config.effective_lost_timeout / 4)
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        while not stop_requested():
            try:
                if loop.time() >= next_check:
                    next_check = loop.time() + period
                    await self.check_lost()
                else:
                    await self.flush()
            except Exception:
                log.exception("LOST check failed")
            await asyncio.sleep(min(self.config.flush_interval, period))

    async def close(self) -> None:
        try:
            await self.flush()
        except Exception:
            log.exception("flushing the agents' last-message times failed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

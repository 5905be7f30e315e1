"""The lifecycle loop: schedule, then hand each session to the handler for its state.

Every ``expiry_interval`` seconds it also sweeps for idle and over-lifetime sessions
(:mod:`~bai.manager.domain.lifecycle.expiry`), as a task of its own.

Runs one step whenever an event arrives and at least every ``interval`` seconds, but paced
(:class:`StepPacer`): under a continuous stream of session events a step waits out a gap
proportional to how long the last one took, coalescing the events meanwhile, so each
scheduling pass places a growing queue at once instead of rerunning for every few arrivals;
after an idle period the gap has long passed and the first event steps at once. Handlers run
as tasks (bounded by ``concurrency``); a session is worked on by at most one task of this
process at a time (:class:`InFlight`). Cancelling :meth:`LifecycleEngine.run` cancels them;
whatever they were doing is resumed from the database by the next process.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bai.common.errors import BaiError
from bai.manager.domain.events import AgentChanged
from bai.manager.domain.lifecycle.expiry import ExpiryHandler
from bai.manager.domain.lifecycle.inflight import InFlight
from bai.manager.domain.lifecycle.resume import ResumeHandler
from bai.manager.domain.lifecycle.start import StartHandler
from bai.manager.domain.lifecycle.terminate import TerminateHandler
from bai.manager.domain.loops import stop_requested
from bai.manager.domain.model import SessionRecord, SessionState
from bai.manager.domain.ports import EventBus, SessionRepository, Subscription
from bai.manager.domain.scheduling import SessionScheduler

__all__ = ["EngineConfig", "LifecycleEngine", "StepPacer", "wait_for_step"]

log = logging.getLogger(__name__)
S = SessionState


@dataclass(frozen=True, slots=True)
class EngineConfig:
    interval: float = 1.0
    """Seconds between steps when no event arrives."""
    concurrency: int = 32
    """Handlers running at once (kernel creations included)."""
    terminating_retry: float = 5.0
    """Seconds between retries of a TERMINATING session whose agent did not answer."""
    batch_size: int = 500
    """Sessions per state looked at in one step."""
    agent_event_gap: float = 1.0
    """Agent events alone (ALIVE, LOST) wake a step at most this often."""
    expiry_interval: float = 5.0
    """Seconds between idle-timeout / lifetime sweeps (and activity flushes)."""
    step_gap_factor: float = 1.0
    """After a step that took t seconds, the next event-driven step starts no sooner than
    ``step_gap_factor`` * t after it ended: stepping takes at most 1 / (1 + factor) of the
    process's time however fast session events arrive (a pass over 5,000 agents costs the same
    for 3 pending sessions as for 300)."""
    min_step_gap: float = 0.02
    """Event-driven steps start at least this many seconds apart (the floor of the gap)."""
    max_step_gap: float = 0.5
    """The gap never exceeds this (nor ``interval``): a slow step must not stall the queue."""
    burst_quiet: float = 0.02
    """A burst of events ends after this many seconds without one ..."""
    burst_limit: float = 0.1
    """... or this many seconds after its first event, whichever comes first (a continuous
    stream must not postpone the step for ever)."""


class StepPacer:
    """When the next event-driven step may start, from when the last one started and ended."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._not_before = -float("inf")

    def stepped(self, started: float, ended: float) -> None:
        cfg = self._config
        gap = max(cfg.min_step_gap, cfg.step_gap_factor * (ended - started))
        self._not_before = ended + min(gap, cfg.max_step_gap, cfg.interval)

    def hold(self, now: float) -> float:
        """Seconds to wait from ``now`` before stepping (0 once the gap has passed, e.g. after
        an idle period)."""
        return max(0.0, self._not_before - now)


async def wait_for_step(
    events: Subscription, pacer: StepPacer, config: EngineConfig, last: float
) -> bool:
    """Waits for a reason to step after the step started at ``last``: True for a session event
    (or the interval passing), False for agent churn only (agents going LOST and back in their
    thousands must not drive a step each: they wait for the next step, at most
    ``agent_event_gap`` away). Events arriving until the burst ends and the pacer's gap has
    passed join the one step."""
    event = await events.next(max(0.0, last + config.interval - time.monotonic()))
    if event is None:
        return True
    sessions = not isinstance(event, AgentChanged)
    first = time.monotonic()
    hold_until = first + pacer.hold(first)
    give_up = max(hold_until, first + config.burst_limit)
    while (now := time.monotonic()) < give_up:
        # Before the gap has passed: wait it out; after: until a quiet moment ends the burst.
        more = await events.next(min(max(hold_until - now, config.burst_quiet), give_up - now))
        if more is None:
            if time.monotonic() >= hold_until:
                break
            continue
        sessions = sessions or not isinstance(more, AgentChanged)
    return sessions


class LifecycleEngine:
    def __init__(
        self,
        sessions: SessionRepository,
        scheduler: SessionScheduler,
        start: StartHandler,
        resume: ResumeHandler,
        terminate: TerminateHandler,
        bus: EventBus,
        inflight: InFlight,
        config: EngineConfig = EngineConfig(),
        expiry: ExpiryHandler | None = None,
    ) -> None:
        self._sessions = sessions
        self._scheduler = scheduler
        self._start = start
        self._resume = resume
        self._terminate = terminate
        self._bus = bus
        self._inflight = inflight
        self._config = config
        self._slots = asyncio.Semaphore(config.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry_at: dict[uuid.UUID, float] = {}
        self._expiry = expiry
        self._next_sweep = 0.0
        self.pacer = StepPacer(config)
        self.steps = 0
        """Steps run so far (tests, benchmarks)."""

    async def run(self) -> None:
        try:
            async with self._bus.subscribe() as events:
                last, due = -float("inf"), True
                while not stop_requested():
                    if due or time.monotonic() - last >= self._config.agent_event_gap:
                        last = time.monotonic()
                        try:
                            await self.step()
                        except Exception:
                            log.exception("lifecycle step failed; retrying")
                        self.pacer.stepped(last, time.monotonic())
                    due = await self._wait(events, last)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _wait(self, events: Subscription, last: float) -> bool:
        return await wait_for_step(events, self.pacer, self._config, last)

    async def step(self) -> None:
        """One pass: schedule pending sessions, then dispatch every other live state."""
        self.steps += 1
        await self._scheduler.schedule_once()
        batch = self._config.batch_size
        for session in await self._sessions.list_in_states(self._start.consumes, batch):
            self._spawn(session, self._start.run)
        for session in await self._sessions.list_in_states(self._resume.consumes, batch):
            self._spawn(session, self._resume.run)
        now = time.monotonic()
        for session in await self._sessions.list_in_states(self._terminate.consumes, batch):
            if self._retry_at.get(session.id, 0.0) <= now:
                self._retry_at[session.id] = now + self._config.terminating_retry
                self._spawn(session, self._finish_termination)
        if self._expiry is not None and now >= self._next_sweep:
            self._next_sweep = now + self._config.expiry_interval
            self._track(asyncio.create_task(self._sweep(self._expiry), name="expiry-sweep"))

    async def _sweep(self, expiry: ExpiryHandler) -> None:
        try:
            await expiry.sweep()
        except Exception:
            log.exception("idle / lifetime sweep failed; retrying")

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_termination(self, session: SessionRecord) -> None:
        try:
            await self._terminate.finish(session, forced=False)
            self._retry_at.pop(session.id, None)
        except BaiError as exc:
            log.info("session %s: %s", session.id, exc.message)

    def _spawn(
        self, session: SessionRecord, handler: Callable[[SessionRecord], Awaitable[None]]
    ) -> None:
        if not self._inflight.try_claim(session.id):
            return

        async def work() -> None:
            try:
                async with self._slots:
                    fresh = await self._sessions.get(session.id)  # the listing may be stale
                    if fresh is not None and fresh.state is session.state:
                        await handler(fresh)
            except Exception:
                log.exception("handler for session %s (%s) failed", session.id, session.state)
            finally:
                self._inflight.release(session.id)

        self._track(asyncio.create_task(work(), name=f"lifecycle-{session.id}"))

    async def drain(self) -> None:
        """Waits for the handlers started so far (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


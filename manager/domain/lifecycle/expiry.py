"""Idle timeout and maximum lifetime, enforced by the manager.

- Lifetime: a RUNNING session is terminated (reason LifetimeExceeded) once it has run longer
  than its limit, counted from when it first entered RUNNING (Backend.AI counts from creation,
  so time spent PENDING shortened the run; we do not). The limit is the smaller non-zero one of
  the session's own ``max_lifetime_seconds`` and its keypair resource policy's
  ``max_session_lifetime``.
- Idle: a RUNNING session is terminated (reason IdleTimeout) after its idle timeout without
  activity (an execution started or finished, an app started), counted from the latest
  activity, or from when it started running if there was none. The timeout is the session's
  own ``idle_timeout_seconds``, else its keypair resource policy's ``idle_timeout``.

Activity is recorded in memory on the hot path (:class:`ActivityTracker`) and written in one
batched UPDATE per sweep, so executions cost no extra database write and a restarted manager
still knows roughly when each session was last used (at most one sweep interval is lost, which
only lengthens an idle period). Expired sessions are terminated concurrently; their kernels go
through the per-agent batched destroyer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bai.common.errors import BaiError
from bai.manager.domain.lifecycle.inflight import InFlight
from bai.manager.domain.lifecycle.terminate import TerminateHandler
from bai.manager.domain.liveness import LatestTimes
from bai.manager.domain.model import utcnow

__all__ = ["ActivityTracker", "ExpiryCandidate", "ExpiryHandler", "ExpiryRepository", "expiry"]

log = logging.getLogger(__name__)


class ActivityTracker(LatestTimes[uuid.UUID]):
    """Latest activity per session since the last flush (in memory; cheap on the hot path).
    The same mechanism as the agents' last-message times (see liveness.LatestTimes)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ExpiryCandidate:
    """A RUNNING session with what its timers need."""

    session_id: uuid.UUID
    name: str
    started_at: datetime | None
    last_activity_at: datetime | None
    idle_timeout_seconds: float
    """The session's own; 0: none."""
    max_lifetime_seconds: float
    """The session's own; 0: none."""
    policy_idle_timeout_seconds: float = 0.0
    """The owner's keypair resource policy's; 0: none."""
    policy_max_lifetime_seconds: float = 0.0
    """The owner's keypair resource policy's; 0: unlimited."""


class ExpiryRepository(Protocol):
    async def record_activity(self, seen: Mapping[uuid.UUID, datetime]) -> None:
        """Writes the latest activity time of each session (never moves one backwards)."""
        ...

    async def expiry_candidates(self, limit: int) -> list[ExpiryCandidate]:
        """RUNNING sessions that have an idle timeout or a lifetime limit (own or policy's)."""
        ...


def expiry(c: ExpiryCandidate, now: datetime) -> tuple[str, str] | None:
    """(reason, message) when the session is due for termination, else None."""
    if c.started_at is None:
        return None
    limits = [s for s in (c.max_lifetime_seconds, c.policy_max_lifetime_seconds) if s > 0]
    if limits and now - c.started_at > timedelta(seconds=min(limits)):
        return ("LifetimeExceeded",
                f"ran longer than its maximum lifetime of {min(limits):g} s")
    idle = c.idle_timeout_seconds or c.policy_idle_timeout_seconds
    last = max(c.started_at, c.last_activity_at or c.started_at)
    if idle > 0 and now - last > timedelta(seconds=idle):
        return ("IdleTimeout", f"no execution or app activity for {idle:g} s")
    return None


class ExpiryHandler:
    def __init__(
        self,
        repo: ExpiryRepository,
        terminator: TerminateHandler,
        activity: ActivityTracker,
        inflight: InFlight,
        *,
        batch_size: int = 2000,
    ) -> None:
        self._repo = repo
        self._terminator = terminator
        self._activity = activity
        self._inflight = inflight
        self._batch_size = batch_size

    async def flush_activity(self) -> None:
        seen = self._activity.drain()
        if not seen:
            return
        try:
            await self._repo.record_activity(seen)
        except BaseException:
            self._activity.restore(seen)
            raise

    async def sweep(self) -> list[uuid.UUID]:
        """Terminates every expired RUNNING session; returns their ids."""
        await self.flush_activity()
        now = utcnow()
        due = [(c, why) for c in await self._repo.expiry_candidates(self._batch_size)
               if (why := expiry(c, now)) is not None and c.session_id not in self._inflight]
        await asyncio.gather(*(self._terminate(c, reason, message) for c, (reason, message) in due))
        return [c.session_id for c, _ in due]

    async def _terminate(self, c: ExpiryCandidate, reason: str, message: str) -> None:
        with self._inflight.hold(c.session_id):
            try:
                await self._terminator.terminate(c.session_id, forced=False, reason=reason,
                                                 message=message)
                log.info("session %s (%s) terminated: %s: %s", c.name, c.session_id, reason,
                         message)
            except BaiError as exc:  # stays TERMINATING: the engine retries it
                log.info("session %s (%s): %s", c.name, c.session_id, exc.message)

"""LatestTimes: the coalescing buffer behind agent liveness and session activity."""

from __future__ import annotations

import uuid
from datetime import timedelta

from bai.manager.domain.lifecycle import ActivityTracker
from bai.manager.domain.liveness import LatestTimes
from bai.manager.domain.model import utcnow


def test_drain_keeps_the_latest_time_per_key_and_starts_empty() -> None:
    times: LatestTimes[str] = LatestTimes()
    t0 = utcnow()
    times.touch("a", t0)
    times.touch("b", t0)
    times.touch("a", t0 + timedelta(seconds=1))
    assert len(times) == 2 and "a" in times
    assert times.drain() == {"a": t0 + timedelta(seconds=1), "b": t0}
    assert len(times) == 0 and times.drain() == {}


def test_restore_after_a_failed_flush_never_overwrites_newer_entries() -> None:
    times: LatestTimes[str] = LatestTimes()
    t0 = utcnow()
    times.touch("a", t0)
    times.touch("b", t0)
    drained = times.drain()
    times.touch("a", t0 + timedelta(seconds=2))  # arrived while the write was failing
    times.restore(drained)
    assert times.drain() == {"a": t0 + timedelta(seconds=2), "b": t0}
    times.touch("c")
    times.discard("c")
    assert times.drain() == {}


def test_session_activity_uses_the_same_buffer() -> None:
    activity = ActivityTracker()
    session_id = uuid.uuid4()
    before = utcnow()
    activity.touch(session_id)
    seen = activity.drain()
    assert list(seen) == [session_id] and seen[session_id] >= before

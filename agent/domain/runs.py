"""Run buffering: a run's output is read from the runner in the background into a buffer,
so an execute call can stop after ``max_wait`` and a later call continues where it left off.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from bai.agent.domain.model import RunEvent
from bai.agent.domain.ports import KernelRunner
from bai.common.errors import BaiError, FailedPrecondition, InternalError, Unavailable

__all__ = ["Run"]

log = logging.getLogger(__name__)

# Unread output above this pauses reading from the runner (the kernel's writes then block).
HIGH_WATER_BYTES = 8 * 1024 * 1024
# Consecutive chunks of one stream are merged into one response up to this size.
MERGE_BYTES = 64 * 1024
# How long a new reader waits for the previous one (a cancelled call) to let go.
READER_WAIT_S = 1.0
_OUTPUT_STREAMS = frozenset({"stdout", "stderr"})


class Run:
    """One execution in a kernel and the unread part of its output."""

    def __init__(self, runner: KernelRunner, mode: str, code: str, limit_s: float | None) -> None:
        self.run_id = uuid.uuid4().hex
        self.waiting_input = False
        self.finished_at: float | None = None
        """Monotonic time the run ended (finished or failed); None while it runs."""
        self.exhausted = False
        """The final event (or the error) was delivered: nothing more to read."""
        self._events: deque[RunEvent] = deque()
        self._unread_bytes = 0
        self._error: BaiError | None = None
        self._changed = asyncio.Condition()
        self._reader = asyncio.Lock()
        self._task = asyncio.create_task(
            self._consume(runner, mode, code, limit_s), name=f"run-{self.run_id}"
        )

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    async def cancel(self) -> None:
        """Stops reading from the runner (the kernel goes away)."""
        self._task.cancel()
        await asyncio.wait([self._task])

    async def read(self, max_wait: float | None) -> AsyncIterator[RunEvent]:
        """Unread events until the run finishes or waits for input, or ``max_wait`` passes.

        The last event then has ``finished`` or ``continued`` set. An event counts as read once
        the consumer asks for the next one, so a caller that goes away loses nothing.
        Raises the run's error (e.g. KERNEL_BUSY, RUNNER_UNAVAILABLE) when it failed.
        """
        loop = asyncio.get_running_loop()
        deadline = None if max_wait is None else loop.time() + max_wait
        try:
            # A call that was just cancelled may still hold the reader for a moment.
            await asyncio.wait_for(self._reader.acquire(), READER_WAIT_S)
        except TimeoutError:
            raise FailedPrecondition(
                f"run {self.run_id} is being read by another call", reason="RUN_BUSY"
            ) from None
        try:
            while True:
                if not await self._wait_for_events(deadline, loop):
                    yield RunEvent(run_id=self.run_id, continued=True)
                    return
                if not self._events:
                    assert self._error is not None
                    self.exhausted = True
                    raise self._error
                event, count = self._peek_merged()
                if event.waiting_input:
                    event = RunEvent(
                        run_id=self.run_id, data=event.data, waiting_input=True, continued=True
                    )
                yield event
                await self._pop(count)
                if event.finished:
                    self.exhausted = True
                    return
                if event.waiting_input:
                    return
        finally:
            self._reader.release()

    async def _wait_for_events(
        self, deadline: float | None, loop: asyncio.AbstractEventLoop
    ) -> bool:
        """True when there is something to deliver (events or the error); False on deadline."""
        async with self._changed:
            while not self._events and self._error is None:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return False
        return True

    def _peek_merged(self) -> tuple[RunEvent, int]:
        first = self._events[0]
        if first.stream not in _OUTPUT_STREAMS:
            return first, 1
        parts, count, size = [first.data], 1, len(first.data)
        for event in itertools.islice(self._events, 1, None):
            if event.stream != first.stream or size >= MERGE_BYTES:
                break
            parts.append(event.data)
            size += len(event.data)
            count += 1
        if count == 1:
            return first, 1
        return RunEvent(run_id=self.run_id, stream=first.stream, data="".join(parts)), count

    async def _pop(self, count: int) -> None:
        async with self._changed:
            for _ in range(count):
                self._unread_bytes -= len(self._events.popleft().data)
            self._changed.notify_all()

    async def _push(self, event: RunEvent) -> None:
        async with self._changed:
            while self._unread_bytes > HIGH_WATER_BYTES:
                await self._changed.wait()
            self._events.append(event)
            self._unread_bytes += len(event.data)
            self._changed.notify_all()

    async def _consume(
        self, runner: KernelRunner, mode: str, code: str, limit_s: float | None
    ) -> None:
        try:
            async for raw in runner.execute(mode, code, limit_s):
                await self._push(self._event(raw))
                if raw.get("finished"):
                    break
            else:
                raise Unavailable(
                    "the runner ended the run without a result", reason="RUNNER_UNAVAILABLE"
                )
        except BaiError as exc:
            await self._fail(exc)
        except asyncio.CancelledError:
            await self._fail(Unavailable("the kernel went away", reason="KERNEL_GONE"))
            raise
        except Exception as exc:  # never let a run's reader die silently
            log.exception("run %s: reading the runner failed", self.run_id)
            await self._fail(InternalError(f"reading the run failed: {exc!r}"))
        finally:
            self.finished_at = time.monotonic()

    async def _fail(self, error: BaiError) -> None:
        async with self._changed:
            self._error = error
            self._changed.notify_all()

    def _event(self, raw: dict[str, Any]) -> RunEvent:
        if raw.get("finished"):
            return RunEvent(
                run_id=self.run_id,
                finished=True,
                exit_code=int(raw.get("exit_code") or 0),
                timed_out=bool(raw.get("timed_out")),
            )
        if raw.get("waiting_input"):
            self.waiting_input = True
            return RunEvent(run_id=self.run_id, waiting_input=True, data=str(raw.get("prompt", "")))
        stream, data = str(raw.get("stream", "stdout")), str(raw.get("data", ""))
        return RunEvent(run_id=self.run_id, stream=stream, data=data)

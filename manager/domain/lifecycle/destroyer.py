"""Per-agent batching of kernel destructions.

Many sessions terminated at once (a user deleting 100 sessions, an expiry sweep) would cost one
DestroyKernel call per kernel. :class:`KernelDestroyer` queues destructions per agent address:
while a DestroyKernels call to an agent is in flight, later requests for that agent wait and go
together in the next call, so concurrent callers share calls without any added delay (the first
request of an idle agent is sent at once, after one event-loop turn).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bai.common.errors import BaiError
from bai.manager.domain.ports import AgentClient

__all__ = ["KernelDestroyer"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Request:
    kernel_id: str
    reason: str
    done: asyncio.Future[str]
    """Resolves to "" (destroyed or unknown) or why the agent could not destroy it."""


class KernelDestroyer:
    def __init__(self, client: AgentClient, *, max_batch: int = 500) -> None:
        self._client = client
        self._max_batch = max_batch
        self._queued: dict[str, list[_Request]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self.calls = 0
        """DestroyKernels calls made (tests, benchmarks)."""

    async def destroy(self, address: str, kernels: Sequence[tuple[str, str]]) -> list[str]:
        """Destroys ``(kernel id, reason)``s on the agent at ``address``; returns the error of
        each ("" when it is gone). An unreachable agent gives every kernel its error."""
        loop = asyncio.get_running_loop()
        requests = [_Request(kid, reason, loop.create_future()) for kid, reason in kernels]
        self._queued.setdefault(address, []).extend(requests)
        if address not in self._senders:
            task = asyncio.create_task(self._send(address), name=f"destroy-kernels-{address}")
            self._senders[address] = task
        return list(await asyncio.gather(*(r.done for r in requests)))

    async def _send(self, address: str) -> None:
        try:
            await asyncio.sleep(0)  # callers of this same loop turn join the first call
            while queued := self._queued.pop(address, None):
                batch, rest = queued[:self._max_batch], queued[self._max_batch:]
                if rest:
                    self._queued.setdefault(address, [])[:0] = rest
                await self._call(address, batch)
        finally:
            del self._senders[address]
            for request in self._queued.pop(address, []):  # only after a cancellation
                if not request.done.done():
                    request.done.set_result("the destruction was cancelled")

    async def _call(self, address: str, batch: list[_Request]) -> None:
        self.calls += 1
        try:
            results = await self._client.destroy_kernels(
                address, [(r.kernel_id, r.reason) for r in batch])
        except BaseException as exc:
            if not isinstance(exc, BaiError):  # cancelled: nobody must wait forever
                for request in batch:
                    if not request.done.done():
                        request.done.set_result("the destruction was cancelled")
                raise
            log.info("DestroyKernels of %d kernels on %s failed: %s", len(batch), address,
                     exc.message)
            errors = {r.kernel_id: exc.message for r in batch}
        else:
            errors = {kid: error for kid, _, error in results}
        for request in batch:
            if not request.done.done():
                request.done.set_result(errors.get(request.kernel_id, "no result from the agent"))

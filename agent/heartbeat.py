"""The manager link: the agent's side of AgentRegistryService.Heartbeat.

Protocol (see agent_registry.proto): registration first (a complete snapshot), then heartbeats
every interval from the RegistrationAck and kernel events as they happen; directives from the
manager are obeyed. Any failure closes the stream and the link reconnects with exponential
backoff and jitter, forever; it never takes the agent down.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
from bai.agent.api.convert import timestamp_to_proto
from bai.agent.domain.model import ImageInfo, KernelEvent, KernelEventKind, KernelReport
from bai.agent.domain.service import AgentService
from bai.common.errors import BaiError
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.manager.v1 import agent_registry_pb2 as pb
from bai.pb.manager.v1 import agent_registry_pb2_grpc as pb_grpc
from google.protobuf import timestamp_pb2

__all__ = ["LinkConfig", "ManagerLink"]

log = logging.getLogger(__name__)

_EVENT_KINDS = {
    KernelEventKind.TERMINATED: pb.KernelEvent.KIND_TERMINATED,
    KernelEventKind.STARTED: pb.KernelEvent.KIND_STARTED,
}


class _StreamClosed(Exception):
    """The manager closed the stream or broke its protocol."""


@dataclass(frozen=True)
class LinkConfig:
    manager: str
    """host:port of the manager."""
    service_token: str
    address: str
    """host:port of our AgentService, as the manager should dial it."""
    resource_group: str = "default"
    architecture: str = ""
    version: str = ""
    default_interval_s: float = 5.0
    """Heartbeat interval when the ack names none."""
    registration_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 10.0
    silence_grace_s: float = 5.0
    """The stream is given up after 3 intervals plus this without a message from the manager."""
    directive_timeout_s: float = 60.0
    """Deadline of a kernel destruction the manager ordered."""


class ManagerLink:
    """Keeps one Heartbeat stream to the manager open; run :meth:`run` as a task, cancel it."""

    def __init__(self, service: AgentService, config: LinkConfig) -> None:
        self._service = service
        self._config = config
        self._directives: set[asyncio.Task[None]] = set()
        self.registered = asyncio.Event()
        """Set while a stream is registered (for health and tests)."""

    async def run(self) -> None:
        delay = self._config.reconnect_initial_s
        async with grpc.aio.insecure_channel(self._config.manager) as channel:
            stub = pb_grpc.AgentRegistryServiceStub(channel)  # type: ignore[no-untyped-call]
            while True:
                try:
                    await self._session(stub)
                except Exception as exc:  # the link must survive anything
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        # grpc.aio may turn our cancellation into an error of the call.
                        raise asyncio.CancelledError from exc
                    log.warning("manager link to %s: %s", self._config.manager, _describe(exc))
                finally:
                    if self.registered.is_set():
                        delay = self._config.reconnect_initial_s
                    self.registered.clear()
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self._config.reconnect_max_s)

    async def _session(self, stub: Any) -> None:
        """One stream: register, then exchange heartbeats, events and directives until it fails."""
        call = stub.Heartbeat(metadata=((SERVICE_TOKEN_KEY, self._config.service_token),))
        try:
            await self._exchange(call)
        except asyncio.InvalidStateError:
            # Writing to a call that already failed: report why it failed instead.
            raise _StreamClosed(f"{(await call.code()).name}: {await call.details()}") from None
        finally:
            call.cancel()

    async def _exchange(self, call: Any) -> None:
        # Subscribe before the snapshot so no event falls between the two.
        with self._service.subscribe() as events:
            await call.write(pb.HeartbeatRequest(registration=await self._registration()))
            reply = await asyncio.wait_for(call.read(), self._config.registration_timeout_s)
            if reply is grpc.aio.EOF or reply.WhichOneof("message") != "registration_ack":
                raise _StreamClosed("the manager did not acknowledge the registration")
            interval = self._interval(reply.registration_ack)
            log.info("registered with %s (heartbeats every %.1f s)", self._config.manager, interval)
            self.registered.set()
            await _until_one_fails(
                self._send(call, events, interval), self._receive(call, interval)
            )

    def _interval(self, ack: pb.RegistrationAck) -> float:
        if ack.heartbeat_interval_ms > 0:
            return ack.heartbeat_interval_ms / 1000
        return self._config.default_interval_s

    async def _send(self, call: Any, events: asyncio.Queue[KernelEvent], interval: float) -> None:
        # Waits for the next event with a deadline (a timer handle), not asyncio.wait on a task
        # per beat: with thousands of simulated agents in one process that task was most of
        # the fleet's CPU. Queue.get is cancel-safe: an event is only taken when get returns.
        loop = asyncio.get_running_loop()
        sequence = 0
        next_beat = loop.time() + interval
        while True:
            if next_beat > loop.time():
                try:
                    async with asyncio.timeout_at(next_beat):
                        event = await events.get()
                except TimeoutError:
                    pass
                else:
                    await call.write(pb.HeartbeatRequest(event=_event_to_proto(event)))
                    continue
            sequence += 1
            await call.write(pb.HeartbeatRequest(heartbeat=self._heartbeat(sequence)))
            next_beat = max(next_beat + interval, loop.time())

    async def _receive(self, call: Any, interval: float) -> None:
        # One deadline moved on by every message (asyncio.wait_for would wrap each read in a
        # task of its own).
        silence = 3 * interval + self._config.silence_grace_s
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(silence) as deadline:
                while True:
                    message = await call.read()
                    deadline.reschedule(loop.time() + silence)
                    if message is grpc.aio.EOF:
                        raise _StreamClosed("the manager closed the stream")
                    if message.WhichOneof("message") == "directive":
                        self._obey(message.directive)
        except TimeoutError:
            raise _StreamClosed(f"no word from the manager for {silence:.1f} s") from None

    def _obey(self, directive: pb.AgentDirective) -> None:
        for kernel_id in directive.destroy_kernel_ids:
            task = asyncio.create_task(self._destroy(kernel_id, directive.reason))
            self._directives.add(task)
            task.add_done_callback(self._directives.discard)

    async def _destroy(self, kernel_id: str, reason: str) -> None:
        try:
            async with asyncio.timeout(self._config.directive_timeout_s):
                await self._service.destroy_kernel(kernel_id, f"manager directive: {reason}")
        except (BaiError, TimeoutError) as exc:
            log.warning("kernel %s: destroying on directive failed: %s", kernel_id, exc)

    async def _registration(self) -> pb.AgentRegistration:
        try:
            images = await self._service.kernel_images()
        except BaiError as exc:  # register anyway; the next registration lists them
            log.warning("listing images failed: %s", exc)
            images = []
        return pb.AgentRegistration(
            agent_id=self._service.agent_id,
            address=self._config.address,
            capacity=self._service.capacity.as_slots(),
            architecture=self._config.architecture,
            resource_group=self._config.resource_group,
            version=self._config.version,
            kernels=[_report_to_proto(k) for k in self._service.list_kernels()],
            images=[_image_to_proto(i) for i in images],
        )

    def _heartbeat(self, sequence: int) -> pb.AgentHeartbeat:
        return pb.AgentHeartbeat(
            sequence=sequence,
            report_time=_now(),
            occupied=self._service.occupied(),
            kernels=[_report_to_proto(k) for k in self._service.list_kernels()],
        )


def _now() -> timestamp_pb2.Timestamp:
    """The current time; Timestamp.FromDatetime costs ~40 us in Python, this a fraction (it
    runs once per heartbeat, thousands of times a second in a simulated fleet)."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


async def _until_one_fails(*loops: Coroutine[Any, Any, None]) -> None:
    """Runs endless loops until one raises; cancels the others and raises that error.

    Not a TaskGroup: on Python 3.11 one can swallow the caller's cancellation (it raises the
    children's errors instead) and leave the caller marked as cancelling.
    """
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in done:
        error = task.exception()
        if error is not None:
            raise error
    raise _StreamClosed("the stream loops ended")


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def _report_to_proto(report: KernelReport) -> pb.KernelReport:
    return pb.KernelReport(
        kernel_id=report.kernel_id,
        session_id=report.session_id,
        state=report.state.value,
        container_id=report.container_id,
        exit_code=report.exit_code,
    )


def _image_to_proto(image: ImageInfo) -> pb.AgentImage:
    return pb.AgentImage(
        ref=image.ref,
        digest=image.digest,
        labels=image.labels,
        size_bytes=image.size_bytes,
        architecture=image.architecture,
    )


def _event_to_proto(event: KernelEvent) -> pb.KernelEvent:
    return pb.KernelEvent(
        kernel_id=event.kernel_id,
        session_id=event.session_id,
        kind=_EVENT_KINDS[event.kind],
        exit_code=event.exit_code,
        reason=event.reason,
        event_time=timestamp_to_proto(event.time),
    )

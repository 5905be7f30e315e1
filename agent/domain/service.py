"""AgentService: the kernels this node holds, their lifecycle, executions and events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bai.agent.domain import apps, batch
from bai.agent.domain.devices import DevicePool
from bai.agent.domain.kernel import Kernel
from bai.agent.domain.model import (
    ContainerInfo,
    ContainerSpec,
    ExecMode,
    ExecRequest,
    ImageInfo,
    KernelEvent,
    KernelEventKind,
    KernelReport,
    KernelRequest,
    KernelState,
    LogChunk,
    RunEvent,
    SessionType,
    kernel_dir,
)
from bai.agent.domain.ports import ContainerRuntime, RunnerConnector
from bai.agent.domain.slots import Capacity, resolve_slots, sum_slots
from bai.common.errors import (
    AlreadyExists,
    BaiError,
    FailedPrecondition,
    InternalError,
    NotFound,
)

__all__ = ["AgentService"]

log = logging.getLogger(__name__)

KERNELSPEC_LABEL = "ai.backend.kernelspec"
_EVENT_QUEUE_SIZE = 1024
# How long a failed wait on a container is retried before the next try (engine hiccups).
_WATCH_RETRY_S = 1.0


class AgentService:
    """Holds this node's kernels. Never destroys them on close: a restarted agent adopts them."""

    def __init__(
        self,
        *,
        agent_id: str,
        kernel_root: Path,
        capacity: Capacity,
        runtime: ContainerRuntime,
        connect_runner: RunnerConnector,
        runner_ready_timeout_s: float = 20.0,
        adopt_ready_timeout_s: float = 5.0,
        service_start_timeout_s: float = 60.0,
        device_pools: Sequence[DevicePool] = (),
    ) -> None:
        self.agent_id = agent_id
        self.capacity = capacity
        self._device_pools = tuple(device_pools)
        self._root = kernel_root
        self._runtime = runtime
        self._connect = connect_runner
        self._ready_timeout = runner_ready_timeout_s
        self._adopt_timeout = adopt_ready_timeout_s
        self._service_start_timeout = service_start_timeout_s
        self._kernels: dict[str, Kernel] = {}
        self._subscribers: set[asyncio.Queue[KernelEvent]] = set()

    # ----- lifecycle of the service ------------------------------------------------------

    async def start(self) -> None:
        """Re-adopts this agent's running kernels; removes its dead ones."""
        containers = await self._runtime.list_managed(self.agent_id)
        await asyncio.gather(*(self._adopt(info) for info in containers))
        self._relink_networks(containers)

    async def close(self) -> None:
        """Stops watching kernels (they keep running)."""
        for kernel in list(self._kernels.values()):
            await kernel.stop_tasks(runs=True)

    # ----- kernels --------------------------------------------------------------------

    async def create_kernel(self, request: KernelRequest) -> KernelReport:
        if request.kernel_id in self._kernels:
            raise AlreadyExists(f"kernel {request.kernel_id} exists", reason="KERNEL_EXISTS")
        slots = resolve_slots(request.slots)
        self.capacity.check_fits(self.occupied(), slots)
        devices = self._assign_devices(slots)
        network_container = self._network_container(request)
        kernel = Kernel(
            kernel_id=request.kernel_id,
            session_id=request.session_id,
            image=request.image,
            slots=slots,
            session_type=request.session_type,
            scratch_dir=kernel_dir(self._root, request.kernel_id),
            network_kernel_id=request.network_kernel_id,
            devices=devices,
        )
        self._kernels[kernel.kernel_id] = kernel
        try:
            async with kernel.lock:
                await self._start_container(kernel, request, network_container)
        except BaseException:
            self._kernels.pop(kernel.kernel_id, None)
            await asyncio.shield(self._discard(kernel))
            raise
        log.info("kernel %s: running in container %s", kernel.kernel_id, kernel.container_id[:12])
        return kernel.report()

    async def destroy_kernel(self, kernel_id: str, reason: str = "") -> int | None:
        """Stops and removes the kernel; None when unknown (idempotent)."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            return None
        async with kernel.lock:
            if self._kernels.get(kernel_id) is not kernel:
                return None
            terminated = kernel.state is KernelState.TERMINATED
            kernel.state, kernel.expected_stop = KernelState.TERMINATING, True
            await kernel.stop_tasks(runs=True)
            exit_code = await self._runtime.destroy(kernel.container_id, kernel.scratch_dir)
            del self._kernels[kernel_id]
        log.info("kernel %s: destroyed (%s)", kernel_id, reason or "no reason given")
        return kernel.exit_code if terminated else exit_code

    async def destroy_kernels(
        self, requests: list[tuple[str, str]]
    ) -> list[tuple[str, int | None, str]]:
        """Destroys many kernels concurrently: ``(kernel id, reason)`` → ``(kernel id, exit
        code, error)`` in request order (error "" when gone). Kernels whose network namespace
        others of the batch join go last, so no member outlives the namespace it uses."""
        results: dict[str, tuple[int | None, str]] = {}

        async def one(kernel_id: str, reason: str) -> None:
            try:
                results[kernel_id] = (await self.destroy_kernel(kernel_id, reason), "")
            except BaiError as exc:
                results[kernel_id] = (None, exc.message)

        owners = {k.network_kernel_id for kid, _ in requests
                  if (k := self._kernels.get(kid)) is not None and k.network_kernel_id}
        members = [(kid, why) for kid, why in requests if kid not in owners]
        await asyncio.gather(*(one(kid, why) for kid, why in members))
        await asyncio.gather(*(one(kid, why) for kid, why in requests if kid in owners))
        return [(kid, *results[kid]) for kid, _ in requests]

    async def restart_kernel(self, kernel_id: str) -> KernelReport:
        kernel = self._get(kernel_id)
        async with kernel.lock:
            kernel.state, kernel.expected_stop = KernelState.CREATING, True
            await kernel.stop_tasks(runs=True)
            try:
                info = await self._runtime.restart(kernel.container_id)
                await self._attach(kernel, self._ready_timeout)
            except BaseException:
                kernel.state, kernel.exit_code = KernelState.TERMINATED, -1
                raise
            kernel.start_time, kernel.exit_code = info.started_at, 0
            kernel.expected_stop = False
            kernel.spawn(self._watch(kernel), "watch")
        self._publish(kernel, KernelEventKind.STARTED, 0, "Restarted")
        return kernel.report()

    def list_kernels(self) -> list[KernelReport]:
        return [kernel.report() for kernel in self._kernels.values()]

    def occupied(self) -> dict[str, str]:
        """Slots held by kernels that are not terminated."""
        live = (k.slots for k in self._kernels.values() if k.state is not KernelState.TERMINATED)
        return sum_slots(live)

    async def kernel_images(self) -> list[ImageInfo]:
        """Local images that are kernel images (carry ``ai.backend.kernelspec``)."""
        return [i for i in await self._runtime.list_images() if KERNELSPEC_LABEL in i.labels]

    # ----- executions -----------------------------------------------------------------

    async def execute(self, request: ExecRequest) -> AsyncIterator[RunEvent]:
        """Starts a run (QUERY, BATCH) or resumes one (CONTINUE, INPUT) and streams its events."""
        kernel = self._get(request.kernel_id)
        if request.mode in (ExecMode.QUERY, ExecMode.BATCH):
            run = kernel.start_run(request.mode.value, request.code, request.timeout_s)
        else:
            run = kernel.get_run(request.run_id)
            if request.mode is ExecMode.INPUT:
                runner = kernel.running_runner()
                if not run.waiting_input or not await runner.send_input(request.code):
                    raise FailedPrecondition(
                        f"run {run.run_id} is not waiting for input", reason="NOT_WAITING_INPUT"
                    )
                run.waiting_input = False
        try:
            async for event in run.read(request.max_wait_s):
                yield event
        finally:
            if run.exhausted:
                kernel.runs.pop(run.run_id, None)

    async def interrupt(self, kernel_id: str) -> bool:
        """SIGINT to the kernel's running execution; False when nothing ran."""
        return await self._get(kernel_id).running_runner().interrupt()

    async def logs(self, kernel_id: str, *, follow: bool, tail: int) -> AsyncIterator[LogChunk]:
        kernel = self._get(kernel_id)
        async for chunk in self._runtime.logs(kernel.container_id, follow=follow, tail=tail):
            yield chunk

    async def start_service(
        self, kernel_id: str, name: str, environ: dict[str, str], arguments: list[str]
    ) -> apps.StartedApp:
        """Starts an app in the kernel and waits until it answers on its socket."""
        kernel = self._get(kernel_id)
        labels: dict[str, str] = {}
        if name not in apps.APPS:  # a custom app: the image's labels declare it
            images = await self._runtime.list_images()
            labels = next((i.labels for i in images if i.ref == kernel.image), {})
        launch = apps.launch_for(name, arguments, labels)
        app = await apps.start_app(kernel.running_runner(), kernel.scratch_dir, launch, environ,
                                   self._service_start_timeout)
        log.info("kernel %s: service %s answers on %s", kernel_id, name, app.socket_path)
        return app

    # ----- events ---------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[KernelEvent]]:
        """A queue of the kernel events published while the context is open."""
        queue: asyncio.Queue[KernelEvent] = asyncio.Queue(_EVENT_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _publish(self, kernel: Kernel, kind: KernelEventKind, exit_code: int, reason: str) -> None:
        log.info("kernel %s: %s (%s, exit code %d)", kernel.kernel_id, kind, reason, exit_code)
        event = KernelEvent(
            kernel.kernel_id, kernel.session_id, kind, exit_code, reason, datetime.now(UTC)
        )
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):  # the snapshot on reconnect fixes it
                queue.put_nowait(event)

    # ----- internals ------------------------------------------------------------------

    def _get(self, kernel_id: str) -> Kernel:
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            raise NotFound(f"kernel {kernel_id} not found", reason="KERNEL_NOT_FOUND")
        return kernel

    def _assign_devices(self, slots: dict[str, str]) -> dict[str, Decimal]:
        """Physical devices for the kernel's accelerator slots, next to the live kernels'.
        Kernels being created count too: they are in ``_kernels`` before their container is."""
        taken = [k.devices for k in self._kernels.values()]
        devices: dict[str, Decimal] = {}
        for pool in self._device_pools:
            devices.update(pool.assign(slots, taken))
        return devices

    def _network_container(self, request: KernelRequest) -> str:
        """The container whose network namespace the new kernel joins ("" for its own)."""
        if not request.network_kernel_id:
            return ""
        owner = self._kernels.get(request.network_kernel_id)
        if owner is None or owner.state is not KernelState.RUNNING or not owner.container_id:
            state = owner.state.value if owner is not None else "not on this agent"
            raise FailedPrecondition(
                f"kernel {request.kernel_id} cannot join the network of kernel "
                f"{request.network_kernel_id}: it is {state}",
                reason="NETWORK_KERNEL_NOT_RUNNING")
        return owner.container_id

    async def _start_container(
        self, kernel: Kernel, request: KernelRequest, network_container: str = ""
    ) -> None:
        spec = ContainerSpec(
            kernel_id=kernel.kernel_id,
            session_id=kernel.session_id,
            agent_id=self.agent_id,
            image=kernel.image,
            cpu=kernel.slots["cpu"],
            mem=int(kernel.slots["mem"]),
            slots=kernel.slots,
            environ=dict(request.environ),
            session_type=kernel.session_type,
            cluster_role=request.cluster_role,
            cluster_idx=request.cluster_idx,
            scratch_dir=kernel.scratch_dir,
            mounts=request.mounts,
            network_container_id=network_container,
            cluster_hostnames=request.cluster_hostnames,
            devices=kernel.devices,
        )
        info = await self._runtime.create(spec)
        kernel.container_id, kernel.start_time = info.container_id, info.started_at
        await self._attach(kernel, self._ready_timeout)
        kernel.spawn(self._watch(kernel), "watch")
        if kernel.session_type is SessionType.BATCH:
            kernel.spawn(
                self._run_batch(kernel, request.startup_command, request.batch_timeout_s), "batch"
            )

    async def _attach(self, kernel: Kernel, within_s: float) -> None:
        """Connects the kernel's runner and waits until it answers (or the container dies)."""
        runner = self._connect(kernel.scratch_dir)
        ready = asyncio.ensure_future(runner.wait_ready(within_s))
        died = asyncio.ensure_future(self._runtime.wait_exit(kernel.container_id))
        try:
            done, _ = await asyncio.wait({ready, died}, return_when=asyncio.FIRST_COMPLETED)
            if ready not in done and died.exception() is not None:
                await asyncio.wait({ready})  # cannot watch the container: just wait for the runner
        finally:
            for task in (ready, died):
                task.cancel()
            await asyncio.wait({ready, died})
        if ready.cancelled() or ready.exception() is not None:
            if died.done() and not died.cancelled() and died.exception() is None:
                why = f"the container exited with code {died.result().exit_code}"
            else:
                why = f"the runner did not answer within {within_s} s"
            raise InternalError(
                f"kernel {kernel.kernel_id}: {why}{await self._log_tail(kernel)}",
                reason="KERNEL_START_FAILED",
            )
        kernel.runner, kernel.state = runner, KernelState.RUNNING

    async def _log_tail(self, kernel: Kernel, limit: int = 2000) -> str:
        """The end of the container's output, for error messages ("" when there is none)."""
        text = ""
        try:
            async for chunk in self._runtime.logs(kernel.container_id, follow=False, tail=20):
                text = (text + chunk.data)[-limit:]
        except BaiError:
            return ""
        return f"; its output ends with:\n{text}" if text.strip() else ""

    async def _discard(self, kernel: Kernel) -> None:
        """Best-effort cleanup of a kernel that failed to start."""
        kernel.expected_stop = True
        await kernel.stop_tasks(runs=True)
        if kernel.container_id:
            try:
                await self._runtime.destroy(kernel.container_id, kernel.scratch_dir)
            except BaiError:
                log.exception("kernel %s: cleanup failed", kernel.kernel_id)

    async def _adopt(self, info: ContainerInfo) -> None:
        try:
            uuid.UUID(info.kernel_id)
        except ValueError:
            log.warning("container %s: bad kernel id label; ignored", info.container_id[:12])
            return
        kernel = Kernel(
            kernel_id=info.kernel_id,
            session_id=info.session_id,
            image=info.image,
            slots=dict(info.slots),
            session_type=info.session_type,
            scratch_dir=kernel_dir(self._root, info.kernel_id),
            container_id=info.container_id,
            start_time=info.started_at,
            devices=dict(info.devices),
        )
        try:
            if not info.running:
                raise InternalError(f"container exited with {info.exit_code}")
            await self._attach(kernel, self._adopt_timeout)
        except BaiError as exc:
            log.warning("kernel %s: not adoptable (%s); removing it", info.kernel_id, exc.message)
            await self._discard(kernel)
            return
        self._kernels[kernel.kernel_id] = kernel
        kernel.spawn(self._watch(kernel), "watch")
        if kernel.session_type is SessionType.BATCH:
            kernel.spawn(self._await_batch(kernel), "batch")
        log.info("kernel %s: re-adopted (container %s)", kernel.kernel_id, info.container_id[:12])

    def _relink_networks(self, containers: list[ContainerInfo]) -> None:
        """Re-adopted cluster kernels learn again whose network namespace they share, so a
        batched destroy still removes the namespace owner last."""
        by_container = {k.container_id: k.kernel_id for k in self._kernels.values()}
        for info in containers:
            kernel = self._kernels.get(info.kernel_id)
            if kernel is None or not info.network_container_id:
                continue
            owner = by_container.get(info.network_container_id) or next(
                (kid for cid, kid in by_container.items()
                 if cid.startswith(info.network_container_id)), "")
            kernel.network_kernel_id = owner

    async def _watch(self, kernel: Kernel) -> None:
        """Learns when the container dies on its own and reports it."""
        while True:
            try:
                result = await self._runtime.wait_exit(kernel.container_id)
                break
            except BaiError as exc:
                log.warning("kernel %s: waiting for exit failed: %s", kernel.kernel_id, exc)
                await asyncio.sleep(_WATCH_RETRY_S)
        if kernel.expected_stop or kernel.state is KernelState.TERMINATED:
            return
        kernel.state, kernel.exit_code = KernelState.TERMINATED, result.exit_code
        reason = "OOMKilled" if result.oom_killed else "ContainerExited"
        self._publish(kernel, KernelEventKind.TERMINATED, result.exit_code, reason)
        await kernel.stop_tasks(runs=False)  # e.g. a batch command waiting on a dead runner

    async def _run_batch(self, kernel: Kernel, command: str, limit_s: float | None) -> None:
        assert kernel.runner is not None
        try:
            result = await batch.run_batch(kernel.runner, command, limit_s)
        except BaiError as exc:
            log.warning("kernel %s: lost the batch command (%s); polling", kernel.kernel_id, exc)
            result = await batch.await_batch_result(kernel.runner, kernel.scratch_dir)
        self._finish_batch(kernel, result)

    async def _await_batch(self, kernel: Kernel) -> None:
        assert kernel.runner is not None
        result = await batch.await_batch_result(kernel.runner, kernel.scratch_dir)
        self._finish_batch(kernel, result)

    def _finish_batch(self, kernel: Kernel, result: batch.BatchResult) -> None:
        if kernel.expected_stop or kernel.state is not KernelState.RUNNING:
            return
        kernel.state, kernel.exit_code = KernelState.TERMINATED, result.exit_code
        self._publish(kernel, KernelEventKind.TERMINATED, result.exit_code, result.reason)

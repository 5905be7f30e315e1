"""The agent's record of one kernel: identity, state, runner handle, runs, background tasks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bai.agent.domain.model import KernelReport, KernelState, SessionType
from bai.agent.domain.ports import KernelRunner
from bai.agent.domain.runs import Run
from bai.common.errors import FailedPrecondition, NotFound

__all__ = ["Kernel"]

# Finished runs nobody came back for are dropped after this long.
RUN_RETENTION_S = 600.0


@dataclass(eq=False)
class Kernel:
    kernel_id: str
    session_id: str
    image: str
    slots: dict[str, str]
    session_type: SessionType
    scratch_dir: Path
    state: KernelState = KernelState.CREATING
    container_id: str = ""
    start_time: datetime | None = None
    exit_code: int = 0
    runner: KernelRunner | None = None
    expected_stop: bool = False
    """Set while the agent itself stops or restarts the container (no event for that exit)."""
    runs: dict[str, Run] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Serializes lifecycle operations (create, destroy, restart)."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    network_kernel_id: str = ""
    """Cluster sessions: the kernel whose network namespace this one shares (destroyed first)."""
    devices: dict[str, Decimal] = field(default_factory=dict)
    """Accelerator devices backing its accelerator slots: device UUID → share."""

    def report(self) -> KernelReport:
        return KernelReport(
            kernel_id=self.kernel_id,
            session_id=self.session_id,
            state=self.state,
            image=self.image,
            container_id=self.container_id,
            slots=dict(self.slots),
            start_time=self.start_time,
            exit_code=self.exit_code,
        )

    def running_runner(self) -> KernelRunner:
        """The runner of a RUNNING kernel; FailedPrecondition otherwise."""
        if self.state is not KernelState.RUNNING or self.runner is None:
            raise FailedPrecondition(
                f"kernel {self.kernel_id} is {self.state.value}", reason="KERNEL_NOT_RUNNING"
            )
        return self.runner

    def start_run(self, mode: str, code: str, limit_s: float | None) -> Run:
        runner = self.running_runner()
        self.prune_runs()
        run = Run(runner, mode, code, limit_s)
        self.runs[run.run_id] = run
        return run

    def get_run(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r} in kernel {self.kernel_id}", reason="RUN_NOT_FOUND")
        return run

    def prune_runs(self) -> None:
        now = time.monotonic()
        for run_id, run in list(self.runs.items()):
            if run.exhausted or (
                run.finished_at is not None and now - run.finished_at > RUN_RETENTION_S
            ):
                del self.runs[run_id]

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Runs a background task owned by this kernel (cancelled by ``stop_tasks``)."""
        task = asyncio.create_task(coro, name=f"{name}-{self.kernel_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop_tasks(self, *, runs: bool) -> None:
        """Cancels the background tasks (except the calling one), and the runs if asked."""
        current = asyncio.current_task()
        tasks = [t for t in self.tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if runs:
            for run in list(self.runs.values()):
                await run.cancel()
            self.runs.clear()

"""Batch sessions: the startup command, run once through the runner, and its exit code.

The runner copies batch output to the container log (where users read it). The command runs
inside a small bash wrapper that records its exit code in the kernel's scratch dir, so an agent
that restarted meanwhile still learns the result.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from bai.agent.domain.errors import KernelBusy, RunnerUnavailable
from bai.agent.domain.ports import KernelRunner

__all__ = ["BatchResult", "await_batch_result", "read_exit_file", "run_batch", "wrap_command"]

log = logging.getLogger(__name__)

EXIT_FILE = "batch-exit"
_CONTAINER_SCRATCH = "/run/bai"


@dataclass(frozen=True)
class BatchResult:
    exit_code: int
    timed_out: bool = False
    lost: bool = False
    """The command ended while nobody watched and left no exit code."""

    @property
    def reason(self) -> str:
        """CamelCase reason of the KernelEvent that reports it."""
        if self.lost:
            return "TaskLost"
        if self.timed_out:
            return "TaskTimeout"
        return "TaskFinished" if self.exit_code == 0 else "TaskFailed"


def wrap_command(command: str) -> str:
    """The bash script the runner runs for a startup command."""
    quoted = shlex.quote(command)
    exit_file = f"{_CONTAINER_SCRATCH}/{EXIT_FILE}"
    # `trap : TERM` keeps the wrapper alive when a timeout SIGTERMs the process group, so it
    # still records the command's exit code after the command itself died of the signal.
    return "\n".join(
        [
            "trap : TERM",
            f"/bin/bash -c {quoted}",
            "rc=$?",
            f'echo "$rc" > {exit_file}.tmp && mv -f {exit_file}.tmp {exit_file}',
            'exit "$rc"',
        ]
    )


def read_exit_file(scratch_dir: Path) -> int | None:
    """The recorded exit code, or None when the command has not finished (or never started)."""
    try:
        return int((scratch_dir / EXIT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


async def run_batch(runner: KernelRunner, command: str, limit_s: float | None) -> BatchResult:
    """Runs the startup command to its end (killed after ``limit_s``); raises RunnerUnavailable
    when the link to the runner breaks."""
    async for event in runner.execute("batch", wrap_command(command), limit_s):
        if event.get("finished"):
            return BatchResult(int(event.get("exit_code") or 0), bool(event.get("timed_out")))
    raise RunnerUnavailable("the runner ended the batch command without a result")


async def await_batch_result(
    runner: KernelRunner, scratch_dir: Path, poll_s: float = 1.0
) -> BatchResult:
    """Waits for a startup command the agent is not attached to (after re-adoption).

    Polls the exit file; while it is missing, a no-op query probes whether the command still
    runs (the runner answers KERNEL_BUSY then).
    """
    while True:
        code = read_exit_file(scratch_dir)
        if code is not None:
            return BatchResult(code)
        try:
            async for _ in runner.execute("query", "pass", None):
                pass
        except (KernelBusy, RunnerUnavailable):
            await asyncio.sleep(poll_s)
            continue
        code = read_exit_file(scratch_dir)
        if code is None:
            log.warning("batch command in %s ended without an exit code", scratch_dir)
        return BatchResult(-1 if code is None else code, lost=code is None)

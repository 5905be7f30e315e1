"""The agent's domain errors (plain exceptions with a stable reason)."""

from __future__ import annotations

from bai.common.errors import FailedPrecondition, Unavailable

__all__ = ["KernelBusy", "RunnerUnavailable"]


class KernelBusy(FailedPrecondition):
    """Another execution runs in the kernel (the runner runs one at a time)."""

    default_reason = "KERNEL_BUSY"


class RunnerUnavailable(Unavailable):
    """The kernel's runner cannot be reached or broke the protocol."""

    default_reason = "RUNNER_UNAVAILABLE"

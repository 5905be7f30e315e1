"""Conversions between AgentService protos and the agent's domain types."""

from __future__ import annotations

from datetime import datetime

from bai.agent.domain.model import (
    ExecMode,
    ExecRequest,
    KernelReport,
    KernelRequest,
    KernelState,
    LogChunk,
    Mount,
    RunEvent,
    SessionType,
)
from bai.common.errors import InvalidArgument
from bai.pb.agent.v1 import agent_service_pb2 as pb
from bai.pb.agent.v1 import kernel_pb2
from google.protobuf import duration_pb2, timestamp_pb2

__all__ = [
    "exec_mode_from_proto",
    "exec_request_from_proto",
    "kernel_request_from_proto",
    "kernel_to_proto",
    "log_chunk_to_proto",
    "run_event_to_proto",
    "seconds_from_proto",
    "timestamp_to_proto",
]

_STATES = {
    KernelState.CREATING: kernel_pb2.Kernel.STATE_CREATING,
    KernelState.RUNNING: kernel_pb2.Kernel.STATE_RUNNING,
    KernelState.TERMINATING: kernel_pb2.Kernel.STATE_TERMINATING,
    KernelState.TERMINATED: kernel_pb2.Kernel.STATE_TERMINATED,
}
_MODES = {
    pb.EXECUTION_MODE_QUERY: ExecMode.QUERY,
    pb.EXECUTION_MODE_BATCH: ExecMode.BATCH,
    pb.EXECUTION_MODE_CONTINUE: ExecMode.CONTINUE,
    pb.EXECUTION_MODE_INPUT: ExecMode.INPUT,
}


def seconds_from_proto(value: duration_pb2.Duration, name: str) -> float:
    """A Duration field as seconds; rejects negative ones."""
    seconds = float(value.ToTimedelta().total_seconds())
    if seconds < 0:
        raise InvalidArgument(f"{name} must not be negative")
    return seconds


def timestamp_to_proto(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def kernel_request_from_proto(request: pb.CreateKernelRequest) -> KernelRequest:
    try:
        session_type = SessionType(request.session_type or SessionType.INTERACTIVE.value)
    except ValueError as exc:
        raise InvalidArgument(f"unknown session_type {request.session_type!r}") from exc
    timeout = None
    if request.HasField("batch_timeout"):
        timeout = seconds_from_proto(request.batch_timeout, "batch_timeout") or None
    return KernelRequest(
        kernel_id=request.kernel_id,
        session_id=request.session_id,
        image=request.image,
        slots=dict(request.slots),
        environ=dict(request.environ),
        session_type=session_type,
        startup_command=request.startup_command,
        batch_timeout_s=timeout,
        cluster_role=request.cluster_role or "main",
        cluster_idx=request.cluster_idx,
        mounts=tuple(Mount(host_path=m.host_path, container_path=m.container_path,
                           read_only=m.read_only) for m in request.mounts),
        network_kernel_id=request.network_kernel_id,
        cluster_hostnames=tuple(request.cluster_hostnames),
    )


def kernel_to_proto(report: KernelReport) -> kernel_pb2.Kernel:
    return kernel_pb2.Kernel(
        kernel_id=report.kernel_id,
        session_id=report.session_id,
        state=_STATES[report.state],
        image=report.image,
        container_id=report.container_id,
        slots=report.slots,
        start_time=timestamp_to_proto(report.start_time),
        exit_code=report.exit_code,
    )


def exec_mode_from_proto(mode: pb.ExecutionMode) -> ExecMode:
    try:
        return _MODES[mode]
    except KeyError:
        raise InvalidArgument("mode must be QUERY, BATCH, CONTINUE or INPUT") from None


def exec_request_from_proto(request: pb.ExecuteRequest) -> ExecRequest:
    max_wait = timeout = None
    if request.HasField("max_wait"):
        max_wait = seconds_from_proto(request.max_wait, "max_wait")
    if request.HasField("timeout"):
        timeout = seconds_from_proto(request.timeout, "timeout") or None
    return ExecRequest(
        kernel_id=request.kernel_id,
        mode=exec_mode_from_proto(request.mode),
        code=request.code,
        run_id=request.run_id,
        max_wait_s=max_wait,
        timeout_s=timeout,
    )


def run_event_to_proto(event: RunEvent) -> pb.ExecuteResponse:
    return pb.ExecuteResponse(
        run_id=event.run_id,
        stream=event.stream,
        data=event.data,
        finished=event.finished,
        continued=event.continued,
        waiting_input=event.waiting_input,
        exit_code=event.exit_code,
        timed_out=event.timed_out,
    )


def log_chunk_to_proto(chunk: LogChunk) -> pb.StreamKernelLogsResponse:
    return pb.StreamKernelLogsResponse(data=chunk.data, stream=chunk.stream)

"""Conversions between protobuf messages and domain records (the only place that knows both)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from bai.manager.domain import slots
from bai.manager.domain.errors import InvalidSessionRequest
from bai.manager.domain.images import min_resources
from bai.manager.domain.model import (
    TERMINAL_STATES,
    AgentImage,
    AgentRegistration,
    ExecInput,
    ExecMode,
    ExecOutput,
    ImageRecord,
    KernelEvent,
    KernelEventKind,
    KernelReport,
    SessionRecord,
    SessionState,
    SessionType,
)
from bai.manager.domain.requests import CreateRequest
from bai.manager.domain.vfolders import MountRequest
from bai.pb.manager.v1 import agent_registry_pb2 as reg_pb
from bai.pb.manager.v1 import image_service_pb2 as image_pb
from bai.pb.manager.v1 import session_pb2 as pb
from bai.pb.manager.v1 import session_service_pb2 as svc_pb
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = [
    "create_request",
    "exec_input",
    "exec_output",
    "image_to_proto",
    "kernel_event",
    "kernel_reports",
    "registration",
    "session_to_proto",
    "state_from_proto",
]


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _seconds(value: Duration, present: bool) -> float:
    return value.ToTimedelta().total_seconds() if present else 0.0


def _state(state: SessionState) -> pb.Session.State:
    return pb.Session.State.Value(f"STATE_{state.value}")  # type: ignore[no-any-return]


def state_from_proto(value: int) -> SessionState:
    name = pb.Session.State.Name(value)  # raises ValueError for unknown numbers
    if value == 0:
        raise ValueError("STATE_UNSPECIFIED")
    return SessionState(name.removeprefix("STATE_"))


def _conditions(s: SessionRecord) -> list[pb.Condition]:
    terminal = s.state in TERMINAL_STATES
    if s.spec.session_type is SessionType.BATCH:
        kind = "Succeeded"
        ok = s.state is SessionState.TERMINATED and s.exit_code == 0
        status = "True" if ok else ("False" if terminal else "Unknown")
    else:
        kind = "Ready"
        status = "True" if s.state is SessionState.RUNNING else (
            "False" if terminal else "Unknown")
    return [pb.Condition(type=kind, status=status, reason=s.reason, message=s.message,
                         last_transition_time=_ts(s.state_changed_at))]


def session_to_proto(s: SessionRecord) -> pb.Session:
    spec = s.spec
    return pb.Session(
        id=str(s.id),
        name=s.name,
        spec=pb.SessionSpec(
            image=spec.image, session_type=spec.session_type.value,
            resources=slots.to_strings(spec.resources), environ=dict(spec.environ),
            startup_command=spec.startup_command,
            batch_timeout_seconds=spec.batch_timeout_seconds, cluster_size=spec.cluster_size,
            resource_group=spec.resource_group, tag=spec.tag,
            cluster_mode=spec.cluster_mode, idle_timeout_seconds=spec.idle_timeout_seconds,
            max_lifetime_seconds=spec.max_lifetime_seconds,
            priority=spec.priority, starts_at_time=_ts(spec.starts_at),
            dependencies=[str(d) for d in spec.dependencies],
        ),
        status=pb.SessionStatus(
            state=_state(s.state), reason=s.reason, message=s.message,
            state_change_time=_ts(s.state_changed_at),
            history=[
                pb.StatusTransition(state=_state(h.state), transition_time=_ts(h.at),
                                    reason=h.reason, message=h.message)
                for h in s.history
            ],
            conditions=_conditions(s),
            exit_code=s.exit_code or 0,
            queue_position=s.queue_position or 0,
        ),
        kernels=[
            pb.KernelInfo(id=str(k.id), agent_id=k.agent_id or "",
                          container_id=k.container_id or "", state=_state(k.state),
                          cluster_role=k.cluster_role, cluster_idx=k.cluster_idx,
                          occupied_slots=slots.to_strings(k.occupied_slots))
            for k in s.kernels
        ],
        access_key=s.access_key,
        domain=s.domain,
        project=s.project,
        create_time=_ts(s.created_at),
        terminate_time=_ts(s.terminated_at),
    )


def create_request(r: svc_pb.CreateSessionRequest) -> CreateRequest:
    return CreateRequest(
        image=r.image, name=r.name, session_type=r.session_type,
        resources=dict(r.resources), environ=dict(r.environ),
        startup_command=r.startup_command,
        batch_timeout_seconds=_seconds(r.batch_timeout, r.HasField("batch_timeout")),
        reuse_if_exists=r.reuse_if_exists, enqueue_only=r.enqueue_only,
        max_wait_seconds=_seconds(r.max_wait, r.HasField("max_wait")),
        request_id=r.request_id, cluster_size=r.cluster_size,
        resource_group=r.resource_group, domain=r.domain, project=r.project, tag=r.tag,
        mounts=tuple(MountRequest(vfolder_ref=m.vfolder_ref, container_path=m.container_path,
                                  read_only=m.read_only) for m in r.mounts),
        cluster_mode=r.cluster_mode,
        idle_timeout_seconds=_seconds(r.idle_timeout, r.HasField("idle_timeout")),
        max_lifetime_seconds=_seconds(r.max_lifetime, r.HasField("max_lifetime")),
        priority=r.priority if r.HasField("priority") else None,
        starts_at=(r.starts_at_time.ToDatetime(tzinfo=UTC)
                   if r.HasField("starts_at_time") else None),
        dependencies=tuple(r.dependencies),
    )


def exec_input(r: svc_pb.ExecuteSessionRequest) -> ExecInput:
    try:
        mode = ExecMode(r.mode)
    except ValueError as exc:
        raise InvalidSessionRequest("mode must be QUERY, BATCH, CONTINUE or INPUT",
                                    reason="INVALID_EXECUTION_MODE") from exc
    return ExecInput(
        mode=mode, code=r.code, run_id=r.run_id,
        max_wait_seconds=_seconds(r.max_wait, r.HasField("max_wait")) or None,
        timeout_seconds=_seconds(r.timeout, r.HasField("timeout")) or None,
    )


def exec_output(o: ExecOutput) -> svc_pb.ExecuteSessionResponse:
    return svc_pb.ExecuteSessionResponse(
        run_id=o.run_id, stream=o.stream, data=o.data, finished=o.finished,
        continued=o.continued, waiting_input=o.waiting_input, exit_code=o.exit_code,
        timed_out=o.timed_out,
    )


def image_to_proto(i: ImageRecord) -> image_pb.Image:
    return image_pb.Image(
        ref=i.ref, aliases=list(i.aliases), architecture=i.architecture,
        size_bytes=i.size_bytes, labels=dict(i.labels), agent_ids=list(i.agent_ids),
        min_resources=slots.to_strings(min_resources(i.labels)),
    )


def registration(r: reg_pb.AgentRegistration) -> AgentRegistration:
    return AgentRegistration(
        agent_id=r.agent_id, address=r.address, capacity=slots.from_strings(r.capacity),
        architecture=r.architecture, resource_group=r.resource_group, version=r.version,
        kernels=kernel_reports(r.kernels),
        images=tuple(
            AgentImage(ref=i.ref, digest=i.digest, labels=dict(i.labels),
                       size_bytes=i.size_bytes, architecture=i.architecture)
            for i in r.images
        ),
    )


def kernel_reports(reports: Iterable[reg_pb.KernelReport]) -> tuple[KernelReport, ...]:
    return tuple(
        KernelReport(kernel_id=k.kernel_id, session_id=k.session_id,
                     state=k.state.strip().lower(), container_id=k.container_id,
                     exit_code=k.exit_code)
        for k in reports
    )


def kernel_event(e: reg_pb.KernelEvent) -> KernelEvent | None:
    kinds = {
        reg_pb.KernelEvent.KIND_TERMINATED: KernelEventKind.TERMINATED,
        reg_pb.KernelEvent.KIND_STARTED: KernelEventKind.STARTED,
    }
    kind = kinds.get(e.kind)
    if kind is None:
        return None
    return KernelEvent(kernel_id=e.kernel_id, session_id=e.session_id, kind=kind,
                       exit_code=e.exit_code, reason=e.reason)

"""Conversions between Backend.AI's JSON shapes and the manager's protobuf messages.

Pure functions only: no I/O, no decisions. Timestamps become ISO 8601 strings in UTC, states
become Backend.AI's upper-case names (``STATE_RUNNING`` -> ``RUNNING``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bai.common import errors
from bai.pb.manager.v1 import session_pb2 as session_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = [
    "EXECUTION_MODES",
    "RunResult",
    "create_response",
    "duration",
    "iso_time",
    "parse_seconds",
    "proto_input",
    "session_info",
    "state_name",
    "status_history",
]

_TERMINAL = {
    session_pb.Session.STATE_TERMINATED,
    session_pb.Session.STATE_ERROR,
    session_pb.Session.STATE_CANCELLED,
}

EXECUTION_MODES: dict[str, sessions_pb.ExecutionMode] = {
    "query": sessions_pb.EXECUTION_MODE_QUERY,
    "batch": sessions_pb.EXECUTION_MODE_BATCH,
    "continue": sessions_pb.EXECUTION_MODE_CONTINUE,
    "input": sessions_pb.EXECUTION_MODE_INPUT,
}
"""Backend.AI execute modes and their ExecutionMode values."""

MAX_SECONDS = 365 * 86400
"""Longest duration accepted from clients (a year)."""

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def state_name(state: int) -> str:
    """``STATE_RUNNING`` -> ``RUNNING``."""
    name: str = session_pb.Session.State.Name(state)
    return name.removeprefix("STATE_")


def iso_time(ts: Timestamp) -> str | None:
    """An ISO 8601 UTC string, or None for an unset timestamp."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    when: datetime = ts.ToDatetime(tzinfo=UTC)
    return when.isoformat()


def parse_seconds(value: float | str | None) -> float:
    """Seconds from a number or a Backend.AI duration string (``"90"``, ``"30s"``, ``"2h"``)."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(value)
        if match is None:
            raise errors.InvalidArgument(f"not a duration: {value!r}", reason="INVALID_DURATION")
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise errors.InvalidArgument(
            f"a duration must be between 0 and {MAX_SECONDS} seconds", reason="INVALID_DURATION"
        )
    return seconds


@contextmanager
def proto_input(what: str) -> Iterator[None]:
    """Turns a value protobuf refuses (out of range, unpaired surrogate...) into InvalidArgument."""
    try:
        yield
    except (ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        raise errors.InvalidArgument(f"{what}: {exc}") from exc


def duration(seconds: float) -> Duration:
    out = Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def _main_kernel(session: session_pb.Session) -> session_pb.KernelInfo | None:
    kernels: list[session_pb.KernelInfo] = list(session.kernels)
    mains = [kernel for kernel in kernels if kernel.cluster_role == "main"]
    candidates = mains or kernels
    return candidates[0] if candidates else None


def _sum_slots(kernels: Any) -> dict[str, str]:
    totals: dict[str, Decimal] = {}
    for kernel in kernels:
        for slot, value in kernel.occupied_slots.items():
            try:
                totals[slot] = totals.get(slot, Decimal(0)) + Decimal(value)
            except InvalidOperation:
                continue
    return {slot: str(total) for slot, total in totals.items()}


def create_response(response: sessions_pb.CreateSessionResponse) -> dict[str, Any]:
    """The body of ``POST /session`` (wire doc §6)."""
    session = response.session
    return {
        "sessionId": session.id,
        "sessionName": session.name,
        "status": state_name(session.status.state),
        "statusInfo": session.status.reason or None,
        "created": response.created,
        "servicePorts": [],
    }


def session_info(session: session_pb.Session, now: datetime | None = None) -> dict[str, Any]:
    """The body of ``GET /session/{ref}``: Backend.AI's get_info keys plus a few of ours."""
    main = _main_kernel(session)
    created = iso_time(session.create_time)
    terminated = iso_time(session.terminate_time)
    age_ms = None
    if created is not None:
        end = session.terminate_time.ToDatetime(tzinfo=UTC) if terminated else now
        age = (end or datetime.now(UTC)) - session.create_time.ToDatetime(tzinfo=UTC)
        age_ms = int(age.total_seconds() * 1000)
    spec, status = session.spec, session.status
    return {
        "sessionId": session.id,
        "sessionName": session.name,
        "type": spec.session_type,
        "sessionType": spec.session_type,
        "status": state_name(status.state),
        "statusInfo": status.reason or None,
        "statusMessage": status.message or None,
        "statusData": {},
        "image": spec.image,
        "lang": spec.image,
        "tag": spec.tag or None,
        "domainName": session.domain,
        "groupName": session.project,
        "accessKey": session.access_key,
        "scalingGroup": spec.resource_group,
        "clusterSize": spec.cluster_size,
        "startupCommand": spec.startup_command or None,
        "environ": dict(spec.environ),
        "requestedSlots": dict(spec.resources),
        "occupiedSlots": dict(main.occupied_slots) if main else {},
        "occupyingSlots": _sum_slots(session.kernels),
        "resourceOpts": {},
        "containerId": (main.container_id or None) if main else None,
        "agents": [kernel.agent_id for kernel in session.kernels if kernel.agent_id],
        "kernels": [
            {
                "id": kernel.id,
                "agent": kernel.agent_id or None,
                "containerId": kernel.container_id or None,
                "status": state_name(kernel.state),
                "clusterRole": kernel.cluster_role,
                "clusterIdx": kernel.cluster_idx,
                "occupiedSlots": dict(kernel.occupied_slots),
            }
            for kernel in session.kernels
        ],
        "exitCode": status.exit_code if status.state in _TERMINAL else None,
        "created_at": created,
        "terminated_at": terminated,
        "creationTime": created,
        "terminationTime": terminated,
        "age": age_ms,
        "numQueriesExecuted": 0,
        "lastStat": {},
        "idleChecks": {},
    }


def status_history(session: session_pb.Session) -> dict[str, str]:
    """``{STATE: iso time}`` of every state entered (the latest entry wins on repeats)."""
    history: dict[str, str] = {}
    for transition in session.status.history:
        when = iso_time(transition.transition_time)
        if when is not None:
            history[state_name(transition.state)] = when
    return history


def _console_item(stream: str, data: str) -> list[Any]:
    if stream == "media":
        try:
            payload = json.loads(data)
            return ["media", [payload["type"], payload["data"]]]
        except (ValueError, KeyError, TypeError):
            return ["media", ["text/plain", data]]
    return [stream or "stdout", data]


@dataclass(slots=True)
class RunResult:
    """Execution events folded into Backend.AI's execute result (wire doc §8)."""

    run_id: str
    """The run id (replaced by the one the manager reports)."""
    status: str = "continued"
    """``continued``, ``waiting-input`` or ``finished``."""
    console: list[list[Any]] = field(default_factory=list)
    """``[kind, data]`` pairs in arrival order; adjacent text of one stream is merged."""
    exit_code: int | None = None
    """Exit code once finished."""

    def add(self, event: sessions_pb.ExecuteSessionResponse) -> bool:
        """Folds one event in; True when it ends what one call should return."""
        if event.run_id:
            self.run_id = event.run_id
        # Tracebacks already went out on stderr; Backend.AI has no "exception" console kind.
        if event.data and event.stream != "exception":
            item = _console_item(event.stream, event.data)
            last = self.console[-1] if self.console else None
            if last and last[0] == item[0] and item[0] in ("stdout", "stderr"):
                last[1] += item[1]
            else:
                self.console.append(item)
        if event.finished:
            self.status, self.exit_code = "finished", event.exit_code
        elif event.waiting_input:
            self.status = "waiting-input"
        elif event.continued:
            self.status = "continued"
        else:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "status": self.status,
            "console": self.console,
            "exitCode": self.exit_code,
            "options": {},
            "files": [],
        }

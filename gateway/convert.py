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
from datetime import UTC, datetime, timedelta
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
    "SessionInfoBodies",
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


_STATE_NAMES: dict[int, str] = {
    value.number: value.name.removeprefix("STATE_")
    for value in session_pb.Session.State.DESCRIPTOR.values
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def state_name(state: int) -> str:
    """``STATE_RUNNING`` -> ``RUNNING``."""
    name = _STATE_NAMES.get(state)
    if name is None:  # an unknown number: the enum wrapper says precisely what is wrong
        unknown: str = session_pb.Session.State.Name(state)  # pragma: no cover
        return unknown.removeprefix("STATE_")  # pragma: no cover
    return name


def _utc(ts: Timestamp) -> datetime:
    # What ``ts.ToDatetime(tzinfo=UTC)`` returns (nanos are 0..999,999,999, truncated to µs),
    # at a fifth of its cost: GET /session converts several timestamps per request (P7).
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def iso_time(ts: Timestamp) -> str | None:
    """An ISO 8601 UTC string, or None for an unset timestamp."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return _utc(ts).isoformat()


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


def _main_kernel(kernels: list[session_pb.KernelInfo]) -> int:
    """Index of the main kernel (the first one if none says so), -1 without kernels."""
    for index, kernel in enumerate(kernels):
        if kernel.cluster_role == "main":
            return index
    return 0 if kernels else -1


def _sum_slots(slots_per_kernel: list[dict[str, str]]) -> dict[str, str]:
    totals: dict[str, Decimal] = {}
    for slots in slots_per_kernel:
        for slot, value in slots.items():
            try:
                totals[slot] = totals.get(slot, _ZERO) + Decimal(value)
            except InvalidOperation:
                continue
    return {slot: str(total) for slot, total in totals.items()}


_ZERO = Decimal(0)


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
    # The hottest conversion (P7): every repeated or map field is read once (each protobuf
    # access builds a wrapper) and maps are copied with dict(items()), cheaper than dict(map).
    kernels = list(session.kernels)
    main_index = _main_kernel(kernels)
    main = kernels[main_index] if main_index >= 0 else None
    kernel_slots = [dict(kernel.occupied_slots.items()) for kernel in kernels]
    create_time, terminate_time = session.create_time, session.terminate_time
    created = iso_time(create_time)
    terminated = iso_time(terminate_time)
    age_ms = None
    if created is not None:
        end = _utc(terminate_time) if terminated else now
        age = (end or datetime.now(UTC)) - _utc(create_time)
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
        "environ": dict(spec.environ.items()),
        "requestedSlots": dict(spec.resources.items()),
        "occupiedSlots": dict(kernel_slots[main_index]) if main is not None else {},
        "occupyingSlots": _sum_slots(kernel_slots),
        "resourceOpts": {},
        "containerId": (main.container_id or None) if main is not None else None,
        "agents": [kernel.agent_id for kernel in kernels if kernel.agent_id],
        "kernels": [
            {
                "id": kernel.id,
                "agent": kernel.agent_id or None,
                "containerId": kernel.container_id or None,
                "status": state_name(kernel.state),
                "clusterRole": kernel.cluster_role,
                "clusterIdx": kernel.cluster_idx,
                "occupiedSlots": slots,
            }
            for kernel, slots in zip(kernels, kernel_slots, strict=True)
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


_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""Starlette's JSONResponse encoding, built once."""


@dataclass(frozen=True, slots=True)
class _InfoBody:
    """A :func:`session_info` body encoded around its one time-dependent value, ``age``."""

    head: bytes
    """The JSON up to and including ``"age":``."""
    tail: bytes
    """The JSON after the age value."""
    created: datetime | None
    """Creation time (None: ``age`` is null)."""
    ended: datetime | None
    """Termination time (None while the session lives: ``age`` runs with the clock)."""

    def render(self, now: datetime | None) -> bytes:
        if self.created is None:
            return self.head + b"null" + self.tail
        age = ((self.ended or now or datetime.now(UTC)) - self.created).total_seconds()
        return self.head + str(int(age * 1000)).encode() + self.tail


class SessionInfoBodies:
    """``GET /session/{ref}`` bodies (:func:`session_info` as JSON) per serialized GetSession
    reply, memoized.

    Clients poll this route (the official client while it waits for a state), and the manager
    answers byte-identical replies until the session changes; so the conversion and most of
    the JSON encoding, the gateway's largest own costs on this route (P7), are done once per
    distinct reply. Keyed by the exact reply bytes, so a changed session is a new entry; only
    ``age`` depends on the clock and is computed per request. Bounded (cleared when full).
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self._entries: dict[bytes, _InfoBody] = {}
        self._max = max_entries

    def __len__(self) -> int:
        """Replies memoized now."""
        return len(self._entries)

    def render(self, reply: bytes, now: datetime | None = None) -> bytes:
        """The JSON body for the serialized ``GetSessionResponse`` ``reply``."""
        body = self._entries.get(reply)
        if body is None:
            body = self._encode(sessions_pb.GetSessionResponse.FromString(reply).session)
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[reply] = body
        return body.render(now)

    @staticmethod
    def _encode(session: session_pb.Session) -> _InfoBody:
        info = session_info(session)
        keys = list(info)
        cut = keys.index("age")
        before = {key: info[key] for key in keys[:cut]}
        after = {key: info[key] for key in keys[cut + 1:]}
        head = _JSON.encode(before)[:-1] + ',"age":'
        tail = "," + _JSON.encode(after)[1:] if after else "}"
        created = _utc(session.create_time) if info["created_at"] is not None else None
        ended = _utc(session.terminate_time) if info["terminated_at"] is not None else None
        return _InfoBody(head.encode(), tail.encode(), created, ended)


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

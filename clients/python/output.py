"""How the CLI prints: aligned tables (rich) for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any, TextIO

from bai.pb.manager.v1 import image_service_pb2 as images_pb
from bai.pb.manager.v1 import session_pb2 as session_pb
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.console import Console
from rich.table import Table

__all__ = [
    "Printer",
    "human_size",
    "message_json",
    "state_name",
    "when",
]


def state_name(state: int) -> str:
    """``STATE_RUNNING`` -> ``RUNNING`` (Backend.AI's names)."""
    name: str = session_pb.Session.State.Name(state)
    return name.removeprefix("STATE_")


def when(ts: Timestamp) -> str:
    """A timestamp as local-free ISO 8601 (UTC, seconds), or ``-`` when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    text: str = ts.ToDatetime(tzinfo=UTC).replace(microsecond=0).isoformat()
    return text


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def message_json(message: Message) -> dict[str, Any]:
    """Proto3 JSON (camelCase names, every field printed)."""
    out: dict[str, Any] = json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True
    )
    return out


class Printer:
    """Prints results as tables or JSON, depending on ``--output``."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout
        width = None if self.stream.isatty() else 200
        self.console = Console(file=self.stream, width=width, highlight=False, soft_wrap=False)

    def json(self, value: Any) -> None:
        self.stream.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")

    def line(self, text: str) -> None:
        self.console.print(text, markup=False)

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    # -- sessions ---------------------------------------------------------------------------

    def sessions(self, sessions: Sequence[session_pb.Session]) -> None:
        if self.as_json:
            self.json({"sessions": [message_json(s) for s in sessions]})
            return
        self.table(
            ("NAME", "ID", "STATE", "IMAGE", "TYPE", "CREATED", "REASON"),
            (
                (
                    s.name,
                    s.id,
                    state_name(s.status.state),
                    s.spec.image,
                    s.spec.session_type,
                    when(s.create_time),
                    s.status.reason,
                )
                for s in sessions
            ),
        )

    def session(self, s: session_pb.Session) -> None:
        if self.as_json:
            self.json(message_json(s))
            return
        status = s.status
        fields = [
            ("Name", s.name),
            ("ID", s.id),
            ("State", state_name(status.state)),
            ("Reason", status.reason),
            ("Message", status.message),
            ("Image", s.spec.image),
            ("Type", s.spec.session_type),
            ("Resources", ", ".join(f"{k}={v}" for k, v in sorted(s.spec.resources.items()))),
            ("Resource group", s.spec.resource_group),
            ("Domain / project", f"{s.domain} / {s.project}"),
            ("Created", when(s.create_time)),
            ("Terminated", when(s.terminate_time)),
        ]
        fields.append(("Priority", str(s.spec.priority)))
        if status.queue_position:
            fields.append(("Queue position", f"{status.queue_position} in resource group "
                                             f"{s.spec.resource_group}"))
        if s.spec.HasField("starts_at_time"):
            fields.append(("Starts at", when(s.spec.starts_at_time)))
        if s.spec.dependencies:
            fields.append(("Depends on", ", ".join(s.spec.dependencies)))
        if s.spec.startup_command:
            fields.append(("Startup command", s.spec.startup_command))
        if status.state in (session_pb.Session.STATE_TERMINATED, session_pb.Session.STATE_ERROR):
            fields.append(("Exit code", str(status.exit_code)))
        self.table(("FIELD", "VALUE"), fields)
        if s.kernels:
            self.table(
                ("KERNEL", "ROLE", "STATE", "AGENT", "CONTAINER"),
                (
                    (
                        k.id,
                        f"{k.cluster_role}{k.cluster_idx}",
                        state_name(k.state),
                        k.agent_id,
                        k.container_id[:12],
                    )
                    for k in s.kernels
                ),
            )
        if status.history:  # transitions, and each change of why a PENDING session waits
            self.table(
                ("STATE", "SINCE", "REASON", "DETAIL"),
                ((state_name(t.state), when(t.transition_time), t.reason, t.message)
                 for t in status.history),
            )

    def session_state(self, s: session_pb.Session, verb: str) -> None:
        """One line: ``Session NAME (ID) <verb>: STATE [reason: message]``."""
        if self.as_json:
            self.json(message_json(s))
            return
        detail = ""
        # A running session's reason ("KernelStarted ...") is noise; any other state's explains it.
        if s.status.state != session_pb.Session.STATE_RUNNING and (
            s.status.reason or s.status.message
        ):
            detail = f" ({': '.join(x for x in (s.status.reason, s.status.message) if x)})"
        self.line(f"Session {s.name} ({s.id}) {verb}: {state_name(s.status.state)}{detail}")

    # -- images -----------------------------------------------------------------------------

    def images(self, images: Sequence[images_pb.Image]) -> None:
        if self.as_json:
            self.json({"images": [message_json(i) for i in images]})
            return
        self.table(
            ("IMAGE", "ALIASES", "ARCH", "SIZE", "AGENTS"),
            (
                (
                    i.ref,
                    ", ".join(i.aliases),
                    i.architecture,
                    human_size(i.size_bytes),
                    ", ".join(i.agent_ids),
                )
                for i in images
            ),
        )

"""``bai run``: run code in a (new or reused) session and stream its output as it arrives.

The execution protocol is the manager's ExecuteSession stream: events carry output; one with
``waiting_input`` means the code called ``input()``: the CLI reads a line from its own stdin and
sends it with mode INPUT, which streams the rest of the run; ``continued`` (only when a wait
limit is set) is resumed with CONTINUE; ``finished`` carries the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bai.client.client import ManagerClient
from bai.common import errors
from bai.pb.manager.v1 import session_pb2 as session_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb

__all__ = ["Output", "RunOptions", "execute", "load_code", "run"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``bai run`` was asked to do."""

    code: str
    """The code, or a path whose contents are the code."""
    image: str = "python"
    session: str | None = None
    """Session name to create or reuse; generated when None."""
    keep: bool = False
    """Keep a session this run created (sessions it reused are always kept)."""
    resources: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Output:
    """Where execution output goes: written through as it arrives, and kept for JSON output."""

    stdout: TextIO | None = None
    """Live stdout (None: only collect)."""
    stderr: TextIO | None = None
    """Live stderr (None: only collect)."""
    console: list[tuple[str, str]] = field(default_factory=list)
    """Every ``(stream, data)`` in arrival order."""

    def write(self, stream: str, data: str) -> None:
        self.console.append((stream, data))
        target = self.stderr if stream == "stderr" else self.stdout
        if target is None:
            return
        if stream in ("stdout", "stderr"):
            target.write(data)
        else:
            target.write(f"[{stream}] {data}\n")
        target.flush()


def load_code(argument: str) -> str:
    """The contents of ``argument`` if it names a file, else ``argument`` itself."""
    path = Path(argument)
    with contextlib.suppress(OSError, ValueError):
        if path.is_file():
            return path.read_text()
    return argument


def _read_line() -> str | None:
    line = sys.stdin.readline()
    return None if line == "" else line.removesuffix("\n")


async def execute(
    client: ManagerClient,
    session_ref: str,
    code: str,
    output: Output,
    read_line: Callable[[], str | None] = _read_line,
) -> int:
    """Runs ``code`` in query mode, answering input prompts; returns the exit code."""
    request = sessions_pb.ExecuteSessionRequest(
        session_ref=session_ref, mode=sessions_pb.EXECUTION_MODE_QUERY, code=code
    )
    while True:
        event = await _stream_until_pause(client, request, output)
        if event is None:
            raise errors.InternalError("the execution ended without finishing")
        if event.finished:
            return event.exit_code
        if event.waiting_input:
            line = await asyncio.to_thread(read_line)
            if line is None:  # stdin closed: input() cannot be answered, stop the code
                await client.interrupt(session_ref)
                mode, line = sessions_pb.EXECUTION_MODE_CONTINUE, ""
            else:
                mode = sessions_pb.EXECUTION_MODE_INPUT
        else:
            mode, line = sessions_pb.EXECUTION_MODE_CONTINUE, ""
        request = sessions_pb.ExecuteSessionRequest(
            session_ref=session_ref, mode=mode, code=line, run_id=event.run_id
        )


async def _stream_until_pause(
    client: ManagerClient, request: sessions_pb.ExecuteSessionRequest, output: Output
) -> sessions_pb.ExecuteSessionResponse | None:
    """Writes one call's output; returns its finished/waiting/continued event (None if none)."""
    run_id = request.run_id
    async with contextlib.aclosing(client.execute(request)) as events:
        async for event in events:
            run_id = event.run_id or run_id
            # Tracebacks arrive on stderr; the "exception" event only repeats their last line.
            if event.data and event.stream != "exception":
                output.write(event.stream or "stdout", event.data)
            if event.finished or event.waiting_input or event.continued:
                event.run_id = run_id
                return event
    return None


async def run(client: ManagerClient, options: RunOptions, output: Output) -> dict[str, Any]:
    """Creates or reuses the session, runs the code, cleans up; returns a summary."""
    name = options.session or "bai-run-" + secrets.token_hex(4)
    created = await client.create_session(
        sessions_pb.CreateSessionRequest(
            name=name,
            image=options.image,
            reuse_if_exists=True,
            resources=options.resources,
            environ=options.environ,
        )
    )
    session = created.session
    destroy = created.created and not options.keep
    try:
        if session.status.state != session_pb.Session.STATE_RUNNING:
            state = session_pb.Session.State.Name(session.status.state).removeprefix("STATE_")
            detail = ": ".join(x for x in (session.status.reason, session.status.message) if x)
            raise errors.FailedPrecondition(
                f"session {session.name} is {state}" + (f" ({detail})" if detail else ""),
                reason="SESSION_NOT_RUNNING",
            )
        try:
            exit_code = await execute(client, session.id, load_code(options.code), output)
        except asyncio.CancelledError:
            if not destroy:  # Ctrl-C: stop the code in a session that outlives this run
                with contextlib.suppress(errors.BaiError):
                    await client.interrupt(session.id)
            raise
    finally:
        if destroy:
            with contextlib.suppress(errors.BaiError):
                await client.delete_session(session.id)
    return {
        "sessionId": session.id,
        "sessionName": session.name,
        "created": created.created,
        "destroyed": destroy,
        "exitCode": exit_code,
        "console": [list(item) for item in output.console],
    }

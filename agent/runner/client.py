"""asyncio client of the bai kernel runner (stdlib only); the protocol is in protocol.md.

Every call opens its own connection, as the protocol wants one request per connection; that
is what lets ``interrupt()`` or ``send_input()`` reach the runner while ``execute()`` streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["RunnerBusyError", "RunnerClient", "RunnerError"]

# One stdout event can carry 64 KiB of output, which JSON escaping may inflate several times.
LINE_LIMIT = 32 * 1024 * 1024


class RunnerError(Exception):
    """The runner answered with an error, or the connection ended too early."""


class RunnerBusyError(RunnerError):
    """An exec was refused because another one is running."""


class RunnerClient:
    def __init__(self, socket_path: str | os.PathLike[str]) -> None:
        self.socket_path = os.fspath(socket_path)

    async def ping(self) -> dict[str, Any]:
        return await self._call({"op": "ping"})

    async def execute(
        self,
        mode: str,
        code: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every event of one execution, the final ``{"finished": true, ...}`` included.

        ``timeout`` is enforced by the runner (it interrupts, then kills, the code), so it is
        not a client-side deadline. Raises RunnerBusyError when another execution runs,
        RunnerError on any other error.
        """
        request = {"op": "exec", "mode": mode, "code": code, "timeout": timeout}
        reader, writer = await self._open(request)
        try:
            while True:
                event = await _read_event(reader)
                if event is None:
                    raise RunnerError("the runner closed the connection before 'finished'")
                _raise_for_error(event)
                yield event
                if event.get("finished"):
                    return
        finally:
            await _close(writer)

    async def send_input(self, data: str) -> bool:
        """Answer a pending ``input()``; False when no execution was waiting for input."""
        reply = await self._call({"op": "input", "data": data})
        return bool(reply.get("ok"))

    async def interrupt(self) -> bool:
        """SIGINT the running execution; False when nothing was running."""
        reply = await self._call({"op": "interrupt"})
        return bool(reply.get("interrupted"))

    async def start_service(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        service_def: str = "",
        bridge_port: int | None = None,
    ) -> dict[str, Any]:
        """Start the app ``name`` as ``argv`` unless it runs already (``started`` says which).

        With ``service_def`` the command comes from that service definition (in the
        container) and ``argv`` is appended to it; with ``bridge_port`` the runner relays
        ``<name>.sock`` to that TCP port inside the container once it accepts connections.
        """
        request: dict[str, Any] = {"op": "service", "name": name, "argv": argv, "env": env or {}}
        if service_def:
            request["service_def"] = service_def
        if bridge_port is not None:
            request["bridge_port"] = bridge_port
        return await self._call(request)

    async def wait_ready(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109 - retries
        """Retry until the runner answers a ping (it may still be starting); returns the ping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                return await asyncio.wait_for(self.ping(), max(deadline - loop.time(), 0.01))
            except (OSError, RunnerError, TimeoutError) as exc:
                if loop.time() >= deadline:
                    raise TimeoutError(
                        f"runner at {self.socket_path} not ready after {timeout} s: {exc!r}"
                    ) from exc
            await asyncio.sleep(0.02)

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request, one reply line."""
        reader, writer = await self._open(request)
        try:
            reply = await _read_event(reader)
        finally:
            await _close(writer)
        if reply is None:
            raise RunnerError("the runner closed the connection without a reply")
        if "error" in reply and "ok" not in reply:
            _raise_for_error(reply)
        return reply

    async def _open(
        self, request: dict[str, Any]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=LINE_LIMIT)
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
        except BaseException:
            await _close(writer)
            raise
        return reader, writer


async def _read_event(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    if not line:
        return None
    event = json.loads(line)
    if not isinstance(event, dict):
        raise RunnerError(f"unexpected reply from the runner: {line!r}")
    return event


def _raise_for_error(event: dict[str, Any]) -> None:
    error = event.get("error")
    if error is None:
        return
    if error == "busy":
        raise RunnerBusyError("busy")
    raise RunnerError(str(error))


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()

"""The HTTP load generator and process helpers the gateway and webserver benches share.

The load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio streams: a few µs per
request, so that what is measured is the server, not the client (httpx costs ~1 ms a request).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["cpu_seconds", "free_port", "get_request", "load", "wait_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has spent (from /proc, so a loaded machine's
    scheduling does not blur it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_port(port: int, proc: subprocess.Popen[bytes], what: str = "") -> None:
    """Until something listens on ``port``; raises when ``proc`` exits first."""
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited{'; see ' + what if what else ''}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def get_request(host: str, path: str, headers: dict[str, str]) -> bytes:
    """The bytes of one keep-alive ``GET``."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def load(port: int, request: bytes, expect: bytes, seconds: float,
               concurrency: int) -> tuple[int, int]:
    """Sends ``request`` over ``concurrency`` connections for ``seconds``; returns (ok, failed),
    ok meaning status 200 with ``expect`` in the body."""
    ok = failed = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal ok, failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200") and expect in body:
                    ok += 1
                else:
                    failed += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed

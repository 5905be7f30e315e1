"""Helpers of the app proxy tests: upstream apps on Unix sockets, a coordinator + Envoy stack."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
from aiohttp import WSMsgType, web
from bai.appproxy.config import AppProxyConfig
from bai.appproxy.domain.model import Frontends
from bai.appproxy.server import Coordinator
from bai.appproxy.xds.bootstrap import BootstrapParams, render_bootstrap
from bai.appproxy.xds.envoy_process import EnvoyProcess
from bai.appproxy.xds.resources import ProxySettings
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.appproxy.v1 import circuit_pb2, circuit_service_pb2, circuit_service_pb2_grpc

TOKEN = "appproxy-test-token"
HTTP = circuit_pb2.Circuit.PROTOCOL_HTTP
TCP = circuit_pb2.Circuit.PROTOCOL_TCP
PORT = circuit_pb2.Circuit.FRONTEND_MODE_PORT
SUBDOMAIN = circuit_pb2.Circuit.FRONTEND_MODE_SUBDOMAIN


def short_dir() -> Path:
    """A fresh directory short enough for Unix socket paths (< 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="bai-ap-", dir="/tmp"))


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` consecutive ports on 127.0.0.1 that are free now."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        if all(_free(p) for p in range(base, base + count)):
            return list(range(base, base + count))
    raise RuntimeError("no free port block")


async def wait_for(check: Callable[[], Any], within_s: float = 5.0, what: str = "") -> Any:
    """Polls ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


# ----- upstream apps ---------------------------------------------------------------------


async def start_http_app(path: Path, name: str) -> web.AppRunner:
    """An HTTP app on a Unix socket: ``/`` greets, ``/echo`` reflects, ``/ws`` echoes."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {name}")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {"app": name, "query": request.query_string, "headers": dict(request.headers)}
        )

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(f"{name}:{msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/echo", echo)
    app.router.add_get("/ws", ws_echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    return runner


async def start_tcp_echo(path: Path) -> asyncio.Server:
    """A line echo server on a Unix socket (answers ``echo:<line>``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(b"echo:" + line)
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, str(path))


# ----- the stack --------------------------------------------------------------------------


class Stack:
    """A coordinator (in this process) and an Envoy on it, in one short directory."""

    def __init__(
        self, *, ports: int = 8, fast_path: bool = True, apps_domain: str = "apps.localhost"
    ) -> None:
        self.dir = short_dir()
        block = free_ports(ports + 1)
        self.frontends = Frontends(apps_domain=apps_domain, subdomain_port=block[0])
        self.config = AppProxyConfig(
            service_token=TOKEN,
            listen="127.0.0.1:0",
            xds_socket=self.dir / "xds.sock",
            state_path=self.dir / "state" / "circuits.json",
            port_range=(block[1], block[-1]),
            proxy=ProxySettings(
                frontends=self.frontends,
                health_check_interval_s=0.3,
                cookie_fast_path=fast_path,
            ),
            upstream_roots=(str(self.dir),),
            shutdown_grace_s=0.2,
        )
        self.bootstrap = self.dir / "envoy.yaml"
        self.bootstrap.write_text(
            render_bootstrap(BootstrapParams(xds_socket=str(self.config.xds_socket), admin_port=0))
        )
        self.coordinator: Coordinator | None = None
        self.envoy = EnvoyProcess(self.bootstrap, workdir=self.dir / "envoy", concurrency=1)
        self.channel: grpc.aio.Channel | None = None
        self.stub: circuit_service_pb2_grpc.CircuitServiceStub | None = None
        self.apps: list[Any] = []

    async def start_coordinator(self) -> Coordinator:
        self.coordinator = Coordinator(self.config)
        await self.coordinator.start()
        if self.channel is not None:
            await self.channel.close()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.coordinator.control_port}")
        self.stub = circuit_service_pb2_grpc.CircuitServiceStub(self.channel)
        return self.coordinator

    async def stop_coordinator(self) -> None:
        if self.coordinator is not None:
            await self.coordinator.stop()
            self.coordinator = None

    async def start(self) -> Stack:
        await self.start_coordinator()
        await self.envoy.start()
        return self

    async def close(self) -> None:
        await self.envoy.stop()
        await self.stop_coordinator()
        if self.channel is not None:
            await self.channel.close()
        for app in self.apps:
            if isinstance(app, web.AppRunner):
                await app.cleanup()
            else:
                app.close()
                await app.wait_closed()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def http_app(self, name: str) -> Path:
        path = self.dir / f"{name}.sock"
        self.apps.append(await start_http_app(path, name))
        return path

    async def tcp_app(self, name: str) -> Path:
        path = self.dir / f"{name}.sock"
        self.apps.append(await start_tcp_echo(path))
        return path

    async def create(
        self,
        socket_path: Path,
        *,
        app: str = "web",
        protocol: int = HTTP,
        mode: int = PORT,
        session_id: str | None = None,
        sync: bool = True,
    ) -> circuit_pb2.Circuit:
        assert self.stub is not None
        reply = await self.stub.CreateCircuit(
            circuit_service_pb2.CreateCircuitRequest(
                session_id=session_id or str(uuid.uuid4()),
                kernel_id=str(uuid.uuid4()),
                app=app,
                protocol=protocol,  # type: ignore[arg-type]
                upstream_socket_path=str(socket_path),
                frontend_mode=mode,  # type: ignore[arg-type]
                owner_access_key="AKIATEST",
            ),
            metadata=[(SERVICE_TOKEN_KEY, TOKEN)],
            timeout=5,
        )
        if sync:
            await self.synced()
        return reply.circuit

    async def delete(self, circuit_id: str) -> None:
        assert self.stub is not None
        await self.stub.DeleteCircuit(
            circuit_service_pb2.DeleteCircuitRequest(circuit_id=circuit_id),
            metadata=[(SERVICE_TOKEN_KEY, TOKEN)],
            timeout=5,
        )
        await self.synced()

    async def synced(self, within_s: float = 5.0) -> None:
        """Waits until Envoy ACKed the coordinator's current resources."""
        coordinator = self.coordinator
        assert coordinator is not None
        await wait_for(coordinator.ads.in_sync, within_s, "Envoy to ACK the current config")

    async def admin(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.get(self.envoy.admin_url + path)

    async def stat(self, name: str) -> int:
        reply = await self.admin(f"/stats?filter=^{name}$")
        for line in reply.text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        raise KeyError(name)

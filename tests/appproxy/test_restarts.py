"""Restarts: Envoy keeps serving while the coordinator is away and gets the same config back;
a new Envoy gets the whole config from the coordinator."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from appproxy_support import (
    SUBDOMAIN,
    TCP,
    TOKEN,
    Stack,
    free_ports,
    short_dir,
    start_http_app,
    start_tcp_echo,
    wait_for,
)
from bai.appproxy.xds.bootstrap import BootstrapParams, render_bootstrap
from bai.appproxy.xds.envoy_process import EnvoyProcess
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.appproxy.v1 import circuit_pb2, circuit_service_pb2, circuit_service_pb2_grpc
from websockets.asyncio.client import connect as ws_connect

ROOT = Path(__file__).resolve().parents[2]
_DUMP_KEYS = {
    "dynamic_active_clusters": "cluster",
    "dynamic_listeners": "active_state",
    "dynamic_route_configs": "route_config",
}


async def dynamic_config(envoy: EnvoyProcess) -> dict[str, Any]:
    """Envoy's dynamic resources as (version, resource) by name, without update times."""
    async with httpx.AsyncClient(timeout=5) as client:
        dump = (await client.get(envoy.admin_url + "/config_dump")).json()
    found: dict[str, Any] = {}
    for section in dump["configs"]:
        for key in _DUMP_KEYS:
            for entry in section.get(key, []):
                state = entry.get("active_state", entry)
                body = state.get("listener") or state.get("cluster") or state.get("route_config")
                found[f"{key}/{body['name']}"] = (state["version_info"], body)
    return found


async def stat(envoy: EnvoyProcess, name: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{envoy.admin_url}/stats?filter=^{name}$")).text
    return int(text.split(": ")[1])


class CoordinatorProcess:
    """``python -m bai.appproxy serve`` as a child process."""

    def __init__(self, workdir: Path, ports: list[int]) -> None:
        self.workdir = workdir
        self.listen = f"127.0.0.1:{ports[0]}"
        self.subdomain_port = ports[1]
        self.argv = [
            sys.executable, "-m", "bai.appproxy", "serve",
            "--listen", self.listen,
            "--xds-socket", str(workdir / "xds.sock"),
            "--service-token", TOKEN,
            "--port-range", f"{ports[2]}-{ports[-1]}",
            "--apps-domain", "apps.localhost",
            "--subdomain-port", str(self.subdomain_port),
            "--state", str(workdir / "state.json"),
            "--upstream-root", str(workdir),
            "--health-check-interval", "0.5",
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.log = workdir / "coordinator.log"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BAI_APPPROXY_")}
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=log, stderr=log, env=env, cwd=ROOT
            )
        async with grpc.aio.insecure_channel(self.listen) as channel:
            await asyncio.wait_for(channel.channel_ready(), 20)

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 10)
        self.proc = None
        return code

    async def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_coordinator_restart(workdir: Path) -> None:
    web_app = await start_http_app(workdir / "web.sock", "web")
    tcp_app = await start_tcp_echo(workdir / "tcp.sock")
    coordinator = CoordinatorProcess(workdir, free_ports(8))
    bootstrap = workdir / "envoy.yaml"
    bootstrap.write_text(
        render_bootstrap(BootstrapParams(xds_socket=str(workdir / "xds.sock"), admin_port=0))
    )
    envoy = EnvoyProcess(bootstrap, workdir=workdir / "envoy", concurrency=1)
    try:
        await coordinator.start()
        await envoy.start()
        async with grpc.aio.insecure_channel(coordinator.listen) as channel:
            stub = circuit_service_pb2_grpc.CircuitServiceStub(channel)

            async def create(app: str, sock: str, **kw: Any) -> circuit_pb2.Circuit:
                reply = await stub.CreateCircuit(
                    circuit_service_pb2.CreateCircuitRequest(
                        session_id="0b5e3c1e-0000-4000-8000-000000000001",
                        kernel_id="0b5e3c1e-0000-4000-8000-000000000002",
                        app=app,
                        upstream_socket_path=str(workdir / sock),
                        owner_access_key="AKIATEST",
                        **kw,
                    ),
                    metadata=[(SERVICE_TOKEN_KEY, TOKEN)],
                    timeout=5,
                )
                return reply.circuit

            http = await create("web", "web.sock", protocol=1, frontend_mode=1)
            sub = await create("sub", "web.sock", protocol=1, frontend_mode=SUBDOMAIN)
            tcp = await create("ssh", "tcp.sock", protocol=TCP, frontend_mode=1)

        client = httpx.AsyncClient(timeout=5)
        host = {"host": f"{sub.id}.apps.localhost"}
        sub_url = f"http://127.0.0.1:{sub.frontend_port}/"

        async def admitted() -> bool:
            try:
                first = await client.get(http.url)
                second = await client.get(sub_url, params={"token": sub.token}, headers=host)
            except httpx.TransportError:
                return False
            return first.status_code == second.status_code == 200

        await wait_for(admitted, 5, "the circuits to be served")
        cookie = client.cookies.get(f"bai_app_{http.id}")
        assert cookie
        before = await dynamic_config(envoy)
        assert len(before) == 3 + 3 + 2  # clusters, listeners (+subdomain), routes (+subdomain)
        ws = await ws_connect(f"ws://127.0.0.1:{http.frontend_port}/ws?token={http.token}")
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp.frontend_port)

        assert await coordinator.stop() == 0
        await wait_for(lambda: _disconnected(envoy), 5, "Envoy to notice the coordinator is gone")
        # Envoy keeps its config: cookies, open websockets, TCP (old and new connections).
        plain = f"http://127.0.0.1:{http.frontend_port}/"
        assert (await client.get(plain)).status_code == 200
        await ws.send("still there?")
        assert await ws.recv() == "web:still there?"
        writer.write(b"down\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"echo:down\n"
        r2, w2 = await asyncio.open_connection("127.0.0.1", tcp.frontend_port)
        w2.write(b"new\n")
        assert await asyncio.wait_for(r2.readline(), 5) == b"echo:new\n"
        w2.close()
        # A token needs the ext_authz server: refused (not admitted) while it is away.
        async with httpx.AsyncClient(timeout=5) as fresh:
            assert (await fresh.get(http.url)).status_code == 503

        await coordinator.start()

        async def resynced() -> bool:
            return await stat(envoy, "control_plane.connected_state") == 1

        await wait_for(resynced, 10, "Envoy to reconnect")
        await wait_for(lambda: _admits_token(http.url), 5, "the token to be admitted again")
        assert await dynamic_config(envoy) == before
        assert await stat(envoy, "listener_manager.lds.update_rejected") == 0
        assert await stat(envoy, "cluster_manager.cds.update_rejected") == 0
        await ws.send("after")
        assert await ws.recv() == "web:after"
        writer.write(b"up\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"echo:up\n"
        await ws.close()
        writer.close()
        await client.aclose()
    finally:
        await envoy.stop()
        await coordinator.kill()
        await web_app.cleanup()
        tcp_app.close()


async def _disconnected(envoy: EnvoyProcess) -> bool:
    return await stat(envoy, "control_plane.connected_state") == 0


async def _admits_token(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as fresh:
        return (await fresh.get(url)).status_code == 200


async def test_envoy_restart_gets_the_whole_config_back(stack: Stack) -> None:
    http = await stack.create(await stack.http_app("web"), app="web")
    sub = await stack.create(await stack.http_app("sub"), app="sub", mode=SUBDOMAIN)
    tcp = await stack.create(await stack.tcp_app("tcp"), app="ssh", protocol=TCP)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(http.url)).status_code == 200
        before = await dynamic_config(stack.envoy)
        await stack.envoy.stop()
        with pytest.raises(httpx.TransportError):
            await client.get(http.url)

        stack.envoy = EnvoyProcess(stack.bootstrap, workdir=stack.dir / "envoy2", concurrency=1)
        await stack.envoy.start()  # LIVE only once the initial xDS fetch is applied
        after = await dynamic_config(stack.envoy)
        # The same resources (versions differ: Envoy records the push that last changed each).
        assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in before.items()}
        # The old permit cookie is still good: the permits live in the coordinator.
        plain = f"http://127.0.0.1:{http.frontend_port}/"
        assert (await client.get(plain)).status_code == 200
        reply = await client.get(
            f"http://127.0.0.1:{sub.frontend_port}/",
            params={"token": sub.token},
            headers={"host": f"{sub.id}.apps.localhost"},
        )
        assert reply.status_code == 200 and reply.text == "hello from sub"
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp.frontend_port)
    writer.write(b"back\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"echo:back\n"
    writer.close()

"""A real single-node bai cluster for end-to-end tests: manager, agent and gateway processes."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bai.common import auth
from postgres import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTED_AGENT_IDS: set[str] = set()
"""Agent ids of every cluster this process started (the session finalizer sweeps their kernels)."""


def remove_kernels_of(agent_ids: set[str]) -> None:
    for agent_id in agent_ids:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=ai.bai.agent-id={agent_id}"],
            capture_output=True,
            text=True,
        )
        if out.stdout.split():
            subprocess.run(["docker", "rm", "-f", *out.stdout.split()], capture_output=True)


class SignedAuth(httpx.Auth):
    """Signs httpx requests exactly as the official Backend.AI client does."""

    def __init__(self, access_key: str, secret_key: str, date: str | None = None) -> None:
        self.access_key, self.secret_key, self.date = access_key, secret_key, date

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        date = self.date or auth.now_date()
        content_type = request.headers.get("content-type")
        if content_type is None and not request.content:
            content_type = "text/plain"
            request.headers["Content-Type"] = content_type
        rel = request.url.raw_path.decode()
        signed = auth.SignedRequest(
            method=request.method,
            rel_url=rel,
            date=date,
            host=request.url.netloc.decode(),
            content_type=auth.normalize_content_type(content_type),
            api_version=auth.API_VERSION,
        )
        request.headers["Date"] = date
        request.headers["X-BackendAI-Version"] = auth.API_VERSION
        request.headers["Authorization"] = auth.authorization_header(
            self.access_key, auth.sign(signed, self.secret_key)
        )
        yield request


@dataclass
class Cluster:
    db_url: str
    workdir: Path
    agent_id: str = field(default_factory=lambda: "i-test-" + secrets.token_hex(3))
    service_token: str = field(default_factory=lambda: secrets.token_hex(16))
    access_key: str = ""
    secret_key: str = ""
    manager_addr: str = ""
    agent_addr: str = ""
    gateway_addr: str = ""
    appproxy_addr: str = ""
    """CircuitService of the app proxy coordinator (``start_cluster(apps=True)`` only)."""
    app_ports: tuple[int, int] = (0, 0)
    """Envoy's frontend port range (apps only)."""
    storage_addr: str = ""
    """StorageService of the storage proxy (``start_cluster(storage=True)`` only)."""
    transfer_addr: str = ""
    """The storage proxy's HTTP transfer endpoint (storage only)."""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_addr}"

    @property
    def kernel_root(self) -> Path:
        return self.workdir / "k"

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway_url,
            auth=SignedAuth(self.access_key, self.secret_key),
            timeout=120,
            **kw,  # type: ignore[arg-type]
        )

    def client_env(self) -> dict[str, str]:
        """Environment for the official client and our CLI."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(
            BACKEND_ENDPOINT=self.gateway_url,
            BACKEND_ENDPOINT_TYPE="api",
            BACKEND_ACCESS_KEY=self.access_key,
            BACKEND_SECRET_KEY=self.secret_key,
            BAI_MANAGER_ADDR=self.manager_addr,
            XDG_STATE_HOME=str(self.workdir / "state"),
        )
        return env

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"bai.{name}", "serve", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def start_manager(self) -> None:
        self._spawn(
            "manager",
            "--listen",
            self.manager_addr,
            "--db-url",
            self.db_url,
            "--service-token",
            self.service_token,
            *(["--appproxy", self.appproxy_addr] if self.appproxy_addr else []),
            *(["--storage", self.storage_addr] if self.storage_addr else []),
        )

    def start_storage(self) -> None:
        """The storage proxy with one fs volume ``local`` under ``<workdir>/.bai/vfroot``."""
        self._spawn(
            "storage",
            "--listen",
            self.storage_addr,
            "--transfer-listen",
            self.transfer_addr,
            "--service-token",
            self.service_token,
        )

    def start_appproxy(self) -> None:
        """The app proxy coordinator and its Envoy (frontends on ``app_ports``)."""
        xds = str(self.workdir / "xds.sock")
        low, high = self.app_ports
        self._spawn(
            "appproxy",
            "--listen",
            self.appproxy_addr,
            "--xds-socket",
            xds,
            "--service-token",
            self.service_token,
            "--state",
            str(self.workdir / "appproxy.json"),
            f"--port-range={low + 1}-{high}",
            f"--subdomain-port={low}",
            "--upstream-root",
            str(self.kernel_root),
        )
        log = open(self.workdir / "envoy.log", "ab")
        self.procs["envoy"] = subprocess.Popen(
            [sys.executable, "-m", "bai.appproxy", "envoy", "--xds-socket", xds,
             f"--admin-port={free_port()}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def start_agent(self) -> None:
        self._spawn(
            "agent",
            "--listen",
            self.agent_addr,
            "--manager",
            self.manager_addr,
            "--service-token",
            self.service_token,
            "--agent-id",
            self.agent_id,
            "--kernel-root",
            str(self.kernel_root),
            "--cpu",
            "2",
            "--mem",
            str(4 << 30),
        )

    def start_gateway(self) -> None:
        self._spawn(
            "gateway",
            "--listen",
            self.gateway_addr,
            "--manager",
            self.manager_addr,
            "--service-token",
            self.service_token,
        )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def logs(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited {proc.returncode}:\n{self.logs(name)[-3000:]}"
                    )
            if self.storage_addr and not self._serving(self.storage_addr):
                time.sleep(0.2)
                continue
            if self.appproxy_addr and not self._serving(self.appproxy_addr):
                time.sleep(0.2)
                continue
            if self._serving(self.manager_addr) and self._serving(self.agent_addr):
                if self._agent_registered():
                    return
            time.sleep(0.2)
        raise RuntimeError(
            "cluster not ready:\n"
            + "\n".join(f"== {n}\n{self.logs(n)[-2000:]}" for n in self.procs)
        )

    @staticmethod
    def _serving(addr: str) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(addr) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def _agent_registered(self) -> bool:
        try:
            with self.client() as c:
                r = c.get("/v1/images")
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and any(
            self.agent_id in img.get("agentIds", []) for img in r.json().get("images", [])
        )

    def containers(self) -> list[str]:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=ai.bai.agent-id={self.agent_id}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()

    def shutdown(self) -> None:
        for name in ("gateway", "agent", "manager", "envoy", "appproxy", "storage"):
            self.stop(name)
        ids = self.containers()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_cluster(db_url: str, apps: bool = False, storage: bool = False) -> Cluster:
    """A running cluster; with ``apps`` also the app proxy (coordinator + Envoy), with
    ``storage`` also the storage proxy (and the manager's ``--storage``)."""
    workdir = Path(tempfile.mkdtemp(prefix="bai-", dir="/tmp"))
    cluster = Cluster(db_url=db_url, workdir=workdir)
    STARTED_AGENT_IDS.add(cluster.agent_id)
    cluster.access_key, cluster.secret_key = auth.generate_keypair()
    cluster.manager_addr = f"127.0.0.1:{free_port()}"
    cluster.agent_addr = f"127.0.0.1:{free_port()}"
    cluster.gateway_addr = f"127.0.0.1:{free_port()}"
    if apps:
        cluster.appproxy_addr = f"127.0.0.1:{free_port()}"
        cluster.app_ports = _free_port_block(8)
    if storage:
        cluster.storage_addr = f"127.0.0.1:{free_port()}"
        cluster.transfer_addr = f"127.0.0.1:{free_port()}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bai.manager",
            "bootstrap",
            "--db-url",
            db_url,
            f"--access-key={cluster.access_key}",
            f"--secret-key={cluster.secret_key}",
        ],
        check=True,
        capture_output=True,
        cwd=workdir,
    )
    try:
        if apps:
            cluster.start_appproxy()
        if storage:
            cluster.start_storage()
        cluster.start_manager()
        cluster.start_agent()
        cluster.start_gateway()
        cluster.wait_ready()
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


def _free_port_block(count: int) -> tuple[int, int]:
    """``count`` consecutive free ports on 127.0.0.1 as (first, last)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        if all(_port_free(p) for p in range(base, base + count)):
            return base, base + count - 1
    raise RuntimeError("no free port block")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True

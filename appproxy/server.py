"""The coordinator's composition root: builds the parts, serves them, stops them in order.

Two grpc.aio servers share one registry:
- the control server on ``listen`` (TCP): CircuitService for the manager, behind the service
  token, plus health and reflection;
- the Envoy server on ``xds_socket`` (Unix): ADS and ext_authz, plus health.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from bai.appproxy.adapters.state_file import StateFile
from bai.appproxy.api.circuit_service import ERROR_DOMAIN, CircuitServicer
from bai.appproxy.config import AppProxyConfig
from bai.appproxy.domain.circuits import CircuitRegistry
from bai.appproxy.xds.ads import AdsServer, SnapshotCache
from bai.appproxy.xds.authz import AuthorizationServer
from bai.appproxy.xds.resources import build_snapshot
from bai.common.errors import FailedPrecondition
from bai.common.rpc import (
    DomainErrorInterceptor,
    ServiceTokenInterceptor,
    add_health_and_reflection,
    mark_not_serving,
    mark_serving,
)
from bai.pb.appproxy.v1 import circuit_service_pb2, circuit_service_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2, ads_pb2_grpc
from grpc_health.v1 import health

__all__ = ["Coordinator", "running", "serve"]

log = logging.getLogger(__name__)

CONTROL_SERVICES = [circuit_service_pb2.DESCRIPTOR.services_by_name["CircuitService"].full_name]
ENVOY_SERVICES = [
    ads_pb2.DESCRIPTOR.services_by_name["AggregatedDiscoveryService"].full_name,
    external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name,
]


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now (as Envoy will, with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _claim_socket_path(path: Path) -> None:
    """Removes a stale socket file; refuses when a live server still answers on it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
        else:
            raise FailedPrecondition(
                f"another server already listens on {path}", reason="XDS_SOCKET_IN_USE"
            )
    path.unlink(missing_ok=True)


class Coordinator:
    """A running coordinator (see :func:`running`)."""

    def __init__(self, config: AppProxyConfig) -> None:
        self.config = config
        self.registry = CircuitRegistry(
            store=StateFile(config.state_path),
            port_range=config.port_range,
            port_probe=lambda port: port_is_free(config.proxy.bind_host, port),
            upstream_roots=config.upstream_roots,
        )
        self.cache = SnapshotCache()
        self.ads = AdsServer(self.cache)
        self.control_port = 0
        """The bound CircuitService port."""
        self._control: grpc.aio.Server | None = None
        self._envoy: grpc.aio.Server | None = None
        self._health: list[tuple[health.aio.HealthServicer, list[str]]] = []

    def _rebuild(self) -> None:
        self.cache.set(build_snapshot(self.registry.all(), self.config.proxy))

    async def start(self) -> None:
        """Loads the circuits and starts both servers."""
        config = self.config
        await self.registry.start()
        self._rebuild()
        self.registry.on_change(self._rebuild)
        if not config.upstream_roots:
            log.warning("no --upstream-root given: circuits may point at any Unix socket")

        envoy = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, envoy)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
            AuthorizationServer(self.registry.get), envoy
        )
        envoy_health = add_health_and_reflection(envoy, ENVOY_SERVICES)
        _claim_socket_path(config.xds_socket)
        envoy.add_insecure_port(f"unix:{config.xds_socket}")
        await envoy.start()
        config.xds_socket.chmod(0o660)
        self._envoy = envoy

        control = grpc.aio.server(
            interceptors=[
                ServiceTokenInterceptor(config.service_token),
                DomainErrorInterceptor(ERROR_DOMAIN),
            ]
        )
        servicer = CircuitServicer(self.registry, config.proxy.frontends)
        circuit_service_pb2_grpc.add_CircuitServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, control
        )
        control_health = add_health_and_reflection(control, CONTROL_SERVICES)
        self.control_port = control.add_insecure_port(config.listen)
        await control.start()
        self._control = control

        await mark_serving(envoy_health, ENVOY_SERVICES)
        await mark_serving(control_health, CONTROL_SERVICES)
        self._health = [(control_health, CONTROL_SERVICES), (envoy_health, ENVOY_SERVICES)]
        host = config.listen.rpartition(":")[0]
        log.info(
            "app proxy coordinator serving CircuitService on %s:%d, ADS and ext_authz on %s",
            host,
            self.control_port,
            config.xds_socket,
        )

    async def stop(self) -> None:
        """Flips health to NOT_SERVING, then stops the control and the Envoy servers."""
        grace = self.config.shutdown_grace_s
        for servicer, names in self._health:
            await mark_not_serving(servicer, names)
        self._health = []
        if self._control is not None:
            await self._control.stop(grace)
            self._control = None
        if self._envoy is not None:
            # Envoy keeps its config and reconnects to the next coordinator on this socket.
            self.ads.close()
            await self._envoy.stop(grace)
            self._envoy = None
            self.config.xds_socket.unlink(missing_ok=True)
        log.info("app proxy coordinator stopped")


@contextlib.asynccontextmanager
async def running(config: AppProxyConfig) -> AsyncIterator[Coordinator]:
    """A started coordinator, stopped on exit."""
    coordinator = Coordinator(config)
    try:
        await coordinator.start()
        yield coordinator
    finally:
        await coordinator.stop()


async def serve(config: AppProxyConfig) -> None:
    """Runs the coordinator until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(config):
        await stop.wait()
        log.info("shutting down (signal received)")

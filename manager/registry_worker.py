"""The agent registry in its own process: heartbeat streams off the user-RPC event loop.

``python -m bai.manager serve --agent-listen HOST:PORT`` starts this as a child process
(``python -m bai.manager serve-agents``): a second composition root that serves only
``AgentRegistryService`` (agents' Heartbeat streams, with health and reflection) on its own
port, its own event loop and its own core, with its own database pool, and runs the liveness
flush and the LOST check. User RPCs stay on the main process, so a burst of heartbeats never
queues in front of them, and the heartbeat path's CPU is the worker's own (measurable).

The worker is, in effect, a second manager replica restricted to the registry, so it shares the
database and the event bus with the main process: it needs PostgreSQL (two processes writing
one SQLite file would lock each other out) and the Redis bus (session and agent events it
publishes must reach the main process's caches, waiters and lifecycle engine). Agents are
pointed at the worker's port; the main port keeps serving AgentRegistryService as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from bai.common.rpc import (
    SERVICE_TOKEN_KEY,
    ServiceTokenInterceptor,
    add_health_and_reflection,
    mark_not_serving,
    mark_serving,
)
from bai.manager.adapters.agent_client import AgentClientConfig, GrpcAgentClientPool
from bai.manager.adapters.db import Database, SqlAgentRepository, SqlSessionRepository
from bai.manager.adapters.event_bus import open_event_bus
from bai.manager.api import AgentRegistryServicer
from bai.manager.config import ManagerConfig
from bai.manager.domain import AgentRegistry, RegistryConfig, Transitions
from bai.manager.domain.lifecycle import KernelExitHandler
from bai.pb.manager.v1 import agent_registry_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["RunningRegistry", "check_worker_config", "registry_worker_process",
           "run_registry_worker", "serve_registry_worker"]

log = logging.getLogger(__name__)
REGISTRY_SERVICE = "bai.manager.v1.AgentRegistryService"
_START_TIMEOUT = 30.0
"""Seconds the worker gets to start listening (it runs no migrations: the main process did)."""


@dataclass(frozen=True, slots=True)
class RunningRegistry:
    address: str
    """host:port the worker's AgentRegistryService listens on."""
    registry: AgentRegistry


def check_worker_config(config: ManagerConfig) -> None:
    """Raises ValueError when a separate registry process cannot work with this configuration."""
    if config.db_url.startswith("sqlite"):
        raise ValueError("--agent-listen needs a PostgreSQL --db-url: the registry process and "
                         "the manager would lock each other out of one SQLite file")
    if not config.redis_url:
        raise ValueError("--agent-listen needs --redis-url: the registry process's session and "
                         "agent events must reach the manager through the shared event bus")


@asynccontextmanager
async def run_registry_worker(config: ManagerConfig) -> AsyncIterator[RunningRegistry]:
    """Serves AgentRegistryService on ``config.listen`` and runs the LOST checker."""
    if not config.service_token:
        raise ValueError("a service token is required (--service-token)")
    async with AsyncExitStack() as stack:
        db = Database(config.db_url)
        stack.push_async_callback(db.close)
        bus = await stack.enter_async_context(open_event_bus(config.redis_url))
        client = GrpcAgentClientPool(config.service_token, AgentClientConfig(
            call_timeout=config.agent_call_timeout, create_timeout=config.create_kernel_timeout))
        stack.push_async_callback(client.close)
        sessions = SqlSessionRepository(db)
        moves = Transitions(sessions, bus)
        registry = AgentRegistry(SqlAgentRepository(db), sessions, client, moves,
                                 KernelExitHandler(sessions, moves), bus,
                                 RegistryConfig(heartbeat_interval_ms=config.heartbeat_interval_ms,
                                                lost_timeout=config.lost_timeout))
        stack.push_async_callback(registry.close)
        server = grpc.aio.server(interceptors=[ServiceTokenInterceptor(config.service_token)])
        agent_registry_pb2_grpc.add_AgentRegistryServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AgentRegistryServicer(registry), server)
        health = add_health_and_reflection(server, (REGISTRY_SERVICE,))
        port = server.add_insecure_port(config.listen)
        if not port:
            raise OSError(f"cannot listen on {config.listen}")
        checker = asyncio.create_task(registry.run_lost_checker(), name="lost-checker")
        stack.push_async_callback(_cancel, checker)
        await server.start()
        stack.push_async_callback(_stop, server, health, config.stop_grace)
        await mark_serving(health, (REGISTRY_SERVICE,))
        address = f"{config.listen.rsplit(':', 1)[0]}:{port}"
        log.info("agent registry serving heartbeat streams on %s (pid %d)", address, os.getpid())
        yield RunningRegistry(address=address, registry=registry)


async def _stop(server: grpc.aio.Server, health: Any, grace: float) -> None:
    await mark_not_serving(health, (REGISTRY_SERVICE,))
    await server.stop(grace)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def serve_registry_worker(config: ManagerConfig) -> None:
    """Runs the registry worker until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with run_registry_worker(config):
        await stop.wait()
        log.info("agent registry: signal received; shutting down")


@asynccontextmanager
async def registry_worker_process(config: ManagerConfig) -> AsyncIterator[None]:
    """Starts ``python -m bai.manager serve-agents`` on ``config.agent_listen`` and waits until
    its health service answers SERVING; restarts it whenever it dies; stops it (SIGTERM, then
    SIGKILL) on exit. The service token travels in the environment, not on the command line
    (``ps`` shows that)."""
    check_worker_config(config)
    supervisor = _Supervisor(config)
    await supervisor.start()
    watch = asyncio.create_task(supervisor.watch(), name="registry-process-watch")
    try:
        yield
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await supervisor.stop()


class _Supervisor:
    _RESTART_DELAY = 1.0

    def __init__(self, config: ManagerConfig) -> None:
        self._config = config
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        config = self._config
        argv = [sys.executable, "-m", "bai.manager", "serve-agents",
                "--listen", config.agent_listen, "--db-url", config.db_url,
                "--redis-url", config.redis_url,
                "--heartbeat-interval-ms", str(config.heartbeat_interval_ms),
                "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel())]
        if config.lost_timeout is not None:
            argv += ["--lost-timeout", str(config.lost_timeout)]
        env = dict(os.environ, BAI_MANAGER_SERVICE_TOKEN=config.service_token)
        self._process = process = await asyncio.create_subprocess_exec(*argv, env=env)
        try:
            await _wait_serving(config.agent_listen, config.service_token, process)
        except BaseException:
            await self.stop()
            raise
        log.info("agent registry process %d serves heartbeat streams on %s", process.pid,
                 config.agent_listen)

    async def watch(self) -> None:
        """Restarts the process whenever it exits (until cancelled)."""
        while True:
            assert self._process is not None
            code = await self._process.wait()
            log.error("agent registry process %d exited with %s; restarting it in %.0f s",
                      self._process.pid, code, self._RESTART_DELAY)
            await asyncio.sleep(self._RESTART_DELAY)
            try:
                await self.start()
            except OSError as exc:
                log.error("agent registry process: %s", exc)

    async def stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self._config.stop_grace + 5)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _wait_serving(address: str, token: str, process: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.returncode is not None:
                raise OSError(f"the agent registry process exited with {process.returncode}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=REGISTRY_SERVICE),
                                         timeout=1.0, metadata=((SERVICE_TOKEN_KEY, token),))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise OSError(f"the agent registry process did not serve on {address} "
                              f"within {_START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)

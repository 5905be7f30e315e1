"""A fleet of simulated agents in one process (``python -m bai.agent simulate``).

Each simulated agent is a full :class:`AgentService` on a
:class:`~bai.agent.runtime.simulated.SimulatedKernelRuntime`, with its own AgentService gRPC
server (its own port, so the manager dials it like any agent) and its own Heartbeat stream to
the manager (:class:`~bai.agent.heartbeat.ManagerLink`). Agent ids are ``<prefix><n:05d>``
(``sim-00001`` …). A fault shim delays every message an agent writes to the manager
(``heartbeat_delay_s``), and :meth:`SimulatedFleet.kill` makes one agent vanish at once (its
stream and server stop), for liveness tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from bai.agent.domain.model import KernelEvent
from bai.agent.domain.service import AgentService
from bai.agent.domain.slots import Capacity
from bai.agent.heartbeat import LinkConfig, ManagerLink
from bai.agent.runtime.simulated import (
    DEFAULT_SIM_IMAGE,
    SimulatedKernelRuntime,
    SimulatedRuntimeConfig,
)
from bai.agent.server import AgentServer, start_server

__all__ = ["FleetConfig", "SimulatedAgent", "SimulatedFleet", "sim_agent_id"]

log = logging.getLogger(__name__)


def sim_agent_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:05d}"


@dataclass(frozen=True)
class FleetConfig:
    manager: str
    """host:port of the manager."""
    service_token: str
    count: int = 10
    prefix: str = "sim-"
    first: int = 1
    """Number of the first agent (ids ``<prefix><first:05d>`` on)."""
    cpu: Decimal = Decimal(8)
    mem: int = 32 << 30
    resource_group: str = "default"
    accelerators: Mapping[str, Decimal] = field(default_factory=dict)
    """Extra slots each agent offers (from an accelerator plugin, e.g. the mock CUDA one)."""
    listen_host: str = "127.0.0.1"
    images: tuple[str, ...] = (DEFAULT_SIM_IMAGE,)
    echo: bool = True
    heartbeat_delay_s: float = 0.0
    """Fault shim: every message to the manager is written this much later."""
    default_interval_s: float = 5.0
    registration_timeout_s: float = 30.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 10.0
    start_concurrency: int = 200
    """Agents whose servers are being started at once."""
    version: str = "simulated"


class _DelayedCall:
    """Wraps a Heartbeat call: each write happens ``delay`` seconds later."""

    def __init__(self, call: Any, delay: float) -> None:
        self._call = call
        self._delay = delay

    async def write(self, message: Any) -> None:
        await asyncio.sleep(self._delay)
        await self._call.write(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _CountingCall:
    """Wraps a Heartbeat call: counts the heartbeat acks read from it."""

    def __init__(self, call: Any, link: _SimLink) -> None:
        self._call = call
        self._link = link

    async def read(self) -> Any:
        message = await self._call.read()
        if message is not grpc.aio.EOF and message.WhichOneof("message") == "heartbeat_ack":
            self._link.acked += 1
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _SimLink(ManagerLink):
    """ManagerLink that counts acknowledged heartbeats and can delay its writes."""

    def __init__(self, service: AgentService, config: LinkConfig, delay: float) -> None:
        super().__init__(service, config)
        self.delay = delay
        self.acked = 0
        """Heartbeats the manager acknowledged."""

    async def _send(self, call: Any, events: asyncio.Queue[KernelEvent], interval: float) -> None:
        target = _DelayedCall(call, self.delay) if self.delay > 0 else call
        await super()._send(target, events, interval)

    async def _receive(self, call: Any, interval: float) -> None:
        await super()._receive(_CountingCall(call, self), interval)


@dataclass
class SimulatedAgent:
    agent_id: str
    service: AgentService
    runtime: SimulatedKernelRuntime
    server: AgentServer
    link: _SimLink
    task: asyncio.Task[None] | None = None
    alive: bool = True

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@dataclass
class SimulatedFleet:
    """Start with :meth:`start`, stop with :meth:`close` (or use ``async with``)."""

    config: FleetConfig
    agents: dict[str, SimulatedAgent] = field(default_factory=dict)

    async def __aenter__(self) -> SimulatedFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        cfg = self.config
        gate = asyncio.Semaphore(cfg.start_concurrency)

        async def one(n: int) -> None:
            async with gate:
                agent = await self._start_agent(sim_agent_id(cfg.prefix, n))
            self.agents[agent.agent_id] = agent

        await _gather_all([one(n) for n in range(cfg.first, cfg.first + cfg.count)])
        log.info("simulated fleet: %d agents started (%s … %s), manager %s", len(self.agents),
                 sim_agent_id(cfg.prefix, cfg.first),
                 sim_agent_id(cfg.prefix, cfg.first + cfg.count - 1), cfg.manager)

    async def _start_agent(self, agent_id: str) -> SimulatedAgent:
        cfg = self.config
        runtime = SimulatedKernelRuntime(SimulatedRuntimeConfig(images=cfg.images, echo=cfg.echo))
        service = AgentService(
            agent_id=agent_id,
            kernel_root=Path("/nonexistent/bai-sim") / agent_id,
            capacity=Capacity(cpu=cfg.cpu, mem=cfg.mem, accelerators=cfg.accelerators),
            runtime=runtime,
            connect_runner=runtime.connect_runner,
        )
        await service.start()
        server = await start_server(service, listen=f"{cfg.listen_host}:0",
                                    service_token=cfg.service_token)
        link = _SimLink(service, LinkConfig(
            manager=cfg.manager,
            service_token=cfg.service_token,
            address=f"{cfg.listen_host}:{server.port}",
            resource_group=cfg.resource_group,
            architecture="x86_64",
            version=cfg.version,
            default_interval_s=cfg.default_interval_s,
            registration_timeout_s=cfg.registration_timeout_s,
            reconnect_initial_s=cfg.reconnect_initial_s,
            reconnect_max_s=cfg.reconnect_max_s,
        ), cfg.heartbeat_delay_s)
        agent = SimulatedAgent(agent_id, service, runtime, server, link)
        agent.task = asyncio.create_task(link.run(), name=f"link-{agent_id}")
        return agent

    def registered(self) -> int:
        return sum(1 for a in self.agents.values() if a.link.registered.is_set())

    async def wait_registered(self, within: float) -> None:
        """Waits until every live agent's stream is registered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while any(a.alive and not a.link.registered.is_set() for a in self.agents.values()):
            if loop.time() > deadline:
                raise TimeoutError(f"{self.registered()}/{len(self.agents)} agents registered "
                                   f"within {within} s")
            await asyncio.sleep(0.05)

    def acked(self) -> int:
        """Heartbeats acknowledged by the manager, over all agents."""
        return sum(a.link.acked for a in self.agents.values())

    def set_delay(self, agent_id: str, delay: float) -> None:
        self.agents[agent_id].link.delay = delay

    async def kill(self, agent_id: str) -> None:
        """The agent vanishes: its heartbeat stream and its server stop (kernels are lost)."""
        agent = self.agents[agent_id]
        agent.alive = False
        await _stop_agent(agent)

    async def close(self) -> None:
        await _gather_all([_stop_agent(a) for a in self.agents.values() if a.alive])
        for agent in self.agents.values():
            agent.alive = False


async def _stop_agent(agent: SimulatedAgent) -> None:
    if agent.task is not None:
        agent.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent.task
    await agent.server.server.stop(0)
    await agent.service.close()


async def _gather_all(coros: Sequence[Coroutine[Any, Any, None]]) -> None:
    results = await asyncio.gather(*coros, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]

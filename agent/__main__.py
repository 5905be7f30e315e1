"""``python -m bai.agent serve ...``: the agent process (its one composition root)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import logging
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack

from bai.agent.config import AgentConfig, config_from_args, parse_argv
from bai.agent.cuda import cuda_device_pool
from bai.agent.domain.devices import DevicePool
from bai.agent.domain.ports import ContainerRuntime, RunnerConnector
from bai.agent.domain.service import AgentService
from bai.agent.fleet import FleetConfig, SimulatedFleet
from bai.agent.heartbeat import LinkConfig, ManagerLink
from bai.agent.runtime import (
    DockerRuntimeConfig,
    architecture,
    connect_runner,
    node_capacity,
    open_docker_runtime,
)
from bai.agent.runtime.simulated import SimulatedKernelRuntime
from bai.agent.server import SERVICE_NAME, AgentServer, start_server
from bai.common.errors import BaiError
from bai.common.rpc import mark_not_serving

__all__ = ["advertised_address", "main", "serve"]

log = logging.getLogger("bai.agent")

_WILDCARDS = {"", "0.0.0.0", "[::]", "::"}


def advertised_address(config: AgentConfig, port: int) -> str:
    """Where the manager should dial us: ``--advertise``, else the listen host and bound port."""
    if config.advertise:
        return config.advertise
    host = config.listen.rpartition(":")[0]
    return f"{'127.0.0.1' if host in _WILDCARDS else host}:{port}"


def _version() -> str:
    try:
        return importlib.metadata.version("bai")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


async def _stop_server(running: AgentServer, grace: float) -> None:
    await running.server.stop(grace)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _device_pools(config: AgentConfig) -> list[DevicePool]:
    """Accelerator plugins of a Docker agent (a simulated one attaches no devices)."""
    if config.runtime != "docker" or config.cuda == "off":
        return []
    pool = cuda_device_pool(config.cuda_shares_per_device)
    return [pool] if pool.devices else []


async def serve(config: AgentConfig, stop: asyncio.Event | None = None) -> None:
    """Runs the agent until ``stop`` is set (or SIGTERM/SIGINT). Kernels survive the shutdown."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncExitStack() as stack:
        runtime_config = DockerRuntimeConfig(
            runner_dir=config.runner_dir,
            kernel_user=config.kernel_user,
            pids_limit=config.pids_limit,
            stop_timeout_s=config.stop_timeout_s,
        )
        runtime: ContainerRuntime
        connect: RunnerConnector = connect_runner
        if config.runtime == "simulated":
            simulated = SimulatedKernelRuntime()
            runtime, connect = simulated, simulated.connect_runner
            log.info("agent %s uses the simulated runtime (no containers)", config.agent_id)
        else:
            runtime = await stack.enter_async_context(
                open_docker_runtime(runtime_config, config.docker_url)
            )
        config.kernel_root.mkdir(parents=True, exist_ok=True)
        pools = _device_pools(config)
        capacity = node_capacity(config.cpu, config.mem)
        capacity = dataclasses.replace(capacity, accelerators={
            key: value for pool in pools for key, value in pool.slots().items()})
        service = AgentService(
            agent_id=config.agent_id,
            kernel_root=config.kernel_root,
            capacity=capacity,
            device_pools=pools,
            runtime=runtime,
            connect_runner=connect,
            runner_ready_timeout_s=config.runner_ready_timeout_s,
            adopt_ready_timeout_s=config.adopt_ready_timeout_s,
        )
        await service.start()
        stack.push_async_callback(service.close)
        running = await start_server(
            service, listen=config.listen, service_token=config.service_token
        )
        stack.push_async_callback(_stop_server, running, config.shutdown_grace_s)
        link = ManagerLink(
            service,
            LinkConfig(
                manager=config.manager,
                service_token=config.service_token,
                address=advertised_address(config, running.port),
                resource_group=config.resource_group,
                architecture=architecture(),
                version=_version(),
                default_interval_s=config.heartbeat_interval_s,
                registration_timeout_s=config.registration_timeout_s,
                reconnect_initial_s=config.reconnect_initial_s,
                reconnect_max_s=config.reconnect_max_s,
            ),
        )
        stack.push_async_callback(_cancel, asyncio.create_task(link.run(), name="manager-link"))
        log.info(
            "agent %s serving on port %d (manager %s, %d kernels adopted)",
            config.agent_id,
            running.port,
            config.manager,
            len(service.list_kernels()),
        )
        await stop.wait()
        log.info("agent %s shutting down; kernels keep running", config.agent_id)
        await mark_not_serving(running.health, [SERVICE_NAME])


async def simulate(
    config: FleetConfig, stop: asyncio.Event | None = None, stats_interval: float = 0.0
) -> None:
    """Runs a fleet of simulated agents until ``stop`` is set (or SIGTERM/SIGINT); with
    ``stats_interval``, prints the registered streams and acknowledged heartbeats that often."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with SimulatedFleet(config) as fleet:
        log.warning("simulated fleet of %d agents running (manager %s)", len(fleet.agents),
                    config.manager)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), stats_interval or None)
            if stats_interval:
                print(f"fleet stats: t={time.time():.3f} registered={fleet.registered()} "
                      f"acked={fleet.acked()}", file=sys.stderr, flush=True)
        log.warning("simulated fleet shutting down")


def _fleet_config(args: argparse.Namespace) -> FleetConfig:
    return FleetConfig(
        manager=args.manager,
        service_token=args.service_token,
        count=args.count,
        prefix=args.prefix,
        first=args.first,
        cpu=args.cpu,
        mem=args.mem,
        resource_group=args.resource_group,
        heartbeat_delay_s=args.heartbeat_delay,
        accelerators=args.mock_accelerator.slots() if args.mock_accelerator else {},
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_argv(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "simulate":
        asyncio.run(simulate(_fleet_config(args), stats_interval=args.stats_interval))
        return 0
    try:
        asyncio.run(serve(config_from_args(args)))
    except BaiError as exc:  # e.g. the Docker engine is unreachable at start
        log.error("agent failed to start: %s (%s)", exc.message, exc.reason)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

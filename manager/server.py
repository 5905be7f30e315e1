"""Composition root: builds adapters and domain services, serves gRPC, runs the loops.

:func:`run_manager` is the lifespan (an async context manager, also used by tests);
:func:`serve` runs it until SIGTERM/SIGINT. On stop, health goes NOT_SERVING first, then the
server stops with a grace period, then the loops stop, then the agent channels and the
database close. Everything the manager knows lives in the database, so a restart resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from bai.common.rpc import (
    ServiceTokenInterceptor,
    add_health_and_reflection,
    mark_not_serving,
    mark_serving,
)
from bai.manager.adapters.agent_client import AgentClientConfig, GrpcAgentClientPool
from bai.manager.adapters.appproxy_client import GrpcCircuitClient
from bai.manager.adapters.db import (
    Database,
    SqlAccountRepository,
    SqlAgentRepository,
    SqlSessionRepository,
    run_migrations,
)
from bai.manager.adapters.db.admin import SqlAdminRepository
from bai.manager.adapters.db.audit import SqlAuditLog
from bai.manager.adapters.db.resource_groups import SqlResourceGroupRepository
from bai.manager.adapters.db.scheduling import SqlSchedulingRepository
from bai.manager.adapters.db.tenancy import SqlTenancyRepository
from bai.manager.adapters.db.vfolders import SqlVFolderRepository
from bai.manager.adapters.event_bus import credentials_sync, open_event_bus
from bai.manager.adapters.session_cache import CachedSessionRepository
from bai.manager.adapters.storage_client import GrpcStorageClient
from bai.manager.api import (
    AgentRegistryServicer,
    ImageServicer,
    ManagerInterceptor,
    SessionServicer,
)
from bai.manager.api.admin import AdminServicer, EventServicer
from bai.manager.api.interceptor import KEYPAIR_SERVICES
from bai.manager.api.resource_groups import ResourceGroupServicer
from bai.manager.api.tenancy import AuthServicer, TenancyServicer
from bai.manager.api.vfolders import VFolderServicer
from bai.manager.config import ManagerConfig
from bai.manager.domain import (
    AgentRegistry,
    Authenticator,
    ImageCatalog,
    RegistryConfig,
    SessionScheduler,
    SessionsConfig,
    SessionService,
    Transitions,
)
from bai.manager.domain.admin import AdminQueries
from bai.manager.domain.apps import AppService
from bai.manager.domain.audit import AuditQueries
from bai.manager.domain.auth import LoginConfig, PasswordLogin
from bai.manager.domain.lifecycle import (
    ActivityTracker,
    BatchedMoves,
    EngineConfig,
    ExpiryHandler,
    InFlight,
    KernelDestroyer,
    KernelExitHandler,
    LifecycleEngine,
    ResumeHandler,
    StartHandler,
    TerminateHandler,
)
from bai.manager.domain.resource_groups import ResourceGroupService
from bai.manager.domain.scheduling import QueueView
from bai.manager.domain.session_events import SessionEventWatcher
from bai.manager.domain.tenancy import TenancyService
from bai.manager.domain.vfolders import VFolderService
from bai.manager.registry_worker import check_worker_config, registry_worker_process
from bai.pb.manager.v1 import (
    admin_service_pb2_grpc,
    agent_registry_pb2_grpc,
    auth_service_pb2_grpc,
    event_service_pb2_grpc,
    image_service_pb2_grpc,
    resource_group_service_pb2_grpc,
    session_service_pb2_grpc,
    tenancy_service_pb2_grpc,
    vfolder_service_pb2_grpc,
)

__all__ = ["SERVICE_NAMES", "RunningManager", "run_manager", "serve"]

log = logging.getLogger(__name__)
SERVICE_NAMES = (
    "bai.manager.v1.SessionService",
    "bai.manager.v1.ImageService",
    "bai.manager.v1.AgentRegistryService",
    "bai.manager.v1.AdminService",
    "bai.manager.v1.EventService",
    "bai.manager.v1.VFolderService",
    "bai.manager.v1.TenancyService",
    "bai.manager.v1.AuthService",
    "bai.manager.v1.ResourceGroupService",
)


@dataclass(frozen=True, slots=True)
class RunningManager:
    """A started manager (what tests need to reach into)."""

    address: str
    """host:port it listens on (with the real port when 0 was asked for)."""
    db: Database
    registry: AgentRegistry
    engine: LifecycleEngine
    sessions: SessionService
    agent_address: str = ""
    """host:port agents should open their Heartbeat streams to (the registry process's with
    ``agent_listen``, else ``address``)."""


@asynccontextmanager
async def run_manager(config: ManagerConfig) -> AsyncIterator[RunningManager]:
    if not config.service_token:
        raise ValueError("a service token is required (--service-token)")
    if config.agent_listen:
        check_worker_config(config)
    async with AsyncExitStack() as stack:
        db = Database(config.db_url)
        stack.push_async_callback(db.close)
        await run_migrations(db)
        bus = await stack.enter_async_context(open_event_bus(config.redis_url))
        client = GrpcAgentClientPool(config.service_token, AgentClientConfig(
            call_timeout=config.agent_call_timeout,
            create_timeout=config.create_kernel_timeout))
        stack.push_async_callback(client.close)
        sessions_repo, agents_repo = SqlSessionRepository(db), SqlAgentRepository(db)
        moves, inflight = Transitions(sessions_repo, bus), InFlight()
        registry_config = RegistryConfig(heartbeat_interval_ms=config.heartbeat_interval_ms,
                                         lost_timeout=config.lost_timeout)
        start = StartHandler(agents_repo, client, moves)
        exits = KernelExitHandler(sessions_repo, moves)
        terminate = TerminateHandler(sessions_repo, agents_repo, client, moves,
                                     KernelDestroyer(client), BatchedMoves(sessions_repo, bus))
        activity = ActivityTracker()
        expiry = ExpiryHandler(sessions_repo, terminate, activity, inflight)
        grace = config.resume_grace
        if grace is None:
            grace = registry_config.effective_lost_timeout + 5
        resume = ResumeHandler(agents_repo, client, moves, start, exits, grace=grace)
        scheduling = SqlSchedulingRepository(db)
        scheduler = SessionScheduler(sessions_repo, agents_repo, bus, scheduling)
        engine = LifecycleEngine(sessions_repo, scheduler, start, resume, terminate, bus,
                                 inflight, EngineConfig(interval=config.scheduler_interval,
                                                        expiry_interval=config.expiry_interval),
                                 expiry=expiry)
        registry = AgentRegistry(agents_repo, sessions_repo, client, moves, exits, bus,
                                 registry_config)
        stack.push_async_callback(registry.close)
        catalog = ImageCatalog(agents_repo)
        storage = None
        if config.storage_addr:
            storage = GrpcStorageClient(config.storage_addr, config.service_token)
            stack.push_async_callback(storage.close)
        vfolders = VFolderService(SqlVFolderRepository(db), storage)
        # The user-facing reads (GetSession) go through a short-lived cache; see session_cache.
        sessions = SessionService(CachedSessionRepository(db, bus), SqlAccountRepository(db),
                                  agents_repo,
                                  catalog, client, moves, terminate, bus, inflight,
                                  SessionsConfig(create_wait_cap=config.create_wait_cap),
                                  vfolders=vfolders, activity=activity,
                                  queue=QueueView(scheduling, agents_repo, scheduler.plugins))
        authenticator = Authenticator(SqlAccountRepository(db),
                                      cache_ttl=config.keypair_cache_ttl)

        server = grpc.aio.server(interceptors=[
            ServiceTokenInterceptor(config.service_token, exempt=KEYPAIR_SERVICES),
            ManagerInterceptor(authenticator, config.service_token, audit=SqlAuditLog(db)),
        ])
        circuits = None
        if config.appproxy:
            circuits = GrpcCircuitClient(config.appproxy, config.service_token,
                                         http_frontend=config.appproxy_frontend)
            stack.push_async_callback(circuits.close)
        apps = AppService(sessions, agents_repo, SqlAccountRepository(db), client, circuits,
                          session_repo=sessions_repo)
        session_service_pb2_grpc.add_SessionServiceServicer_to_server(  # type: ignore[no-untyped-call]
            SessionServicer(sessions, apps), server)
        image_service_pb2_grpc.add_ImageServiceServicer_to_server(  # type: ignore[no-untyped-call]
            ImageServicer(catalog), server)
        agent_registry_pb2_grpc.add_AgentRegistryServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AgentRegistryServicer(registry), server)
        vfolder_service_pb2_grpc.add_VFolderServiceServicer_to_server(  # type: ignore[no-untyped-call]
            VFolderServicer(vfolders), server)
        admin_service_pb2_grpc.add_AdminServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AdminServicer(AdminQueries(SqlAdminRepository(db))), server)
        tenancy_service_pb2_grpc.add_TenancyServiceServicer_to_server(  # type: ignore[no-untyped-call]
            TenancyServicer(TenancyService(SqlTenancyRepository(db),
                                          credentials_sync(bus, authenticator.forget)),
                            AuditQueries(SqlAuditLog(db))), server)
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AuthServicer(PasswordLogin(SqlTenancyRepository(db), LoginConfig(
                lockout_threshold=config.login_lockout_threshold,
                lockout_seconds=config.login_lockout_seconds))), server)
        # Validates plugin names with the scheduler's own registry (what it can load).
        resource_group_service_pb2_grpc.add_ResourceGroupServiceServicer_to_server(  # type: ignore[no-untyped-call]
            ResourceGroupServicer(ResourceGroupService(SqlResourceGroupRepository(db),
                                                       scheduler.plugins)), server)
        event_service_pb2_grpc.add_EventServiceServicer_to_server(  # type: ignore[no-untyped-call]
            EventServicer(SessionEventWatcher(sessions, sessions_repo, bus)), server)
        health = add_health_and_reflection(server, SERVICE_NAMES)
        port = server.add_insecure_port(config.listen)
        if not port:
            raise OSError(f"cannot listen on {config.listen}")

        loops = [asyncio.create_task(engine.run(), name="lifecycle"),
                 asyncio.create_task(registry.run_lost_checker(), name="lost-checker"),
                 asyncio.create_task(apps.run_circuit_reaper(bus), name="circuit-reaper")]
        stack.push_async_callback(_cancel, loops)
        await server.start()
        stack.push_async_callback(_stop, server, health, config.stop_grace)
        await mark_serving(health, SERVICE_NAMES)
        address = f"{config.listen.rsplit(':', 1)[0]}:{port}"
        if config.agent_listen:  # heartbeat streams on their own process and core
            await stack.enter_async_context(registry_worker_process(config))
        log.info("manager serving on %s (database %s)", address,
                 db.url.render_as_string(hide_password=True))
        yield RunningManager(address=address, db=db, registry=registry, engine=engine,
                             sessions=sessions, agent_address=config.agent_listen or address)


async def _stop(server: grpc.aio.Server, health: Any, grace: float) -> None:
    log.info("manager stopping: NOT_SERVING, then up to %.1f s for in-flight calls", grace)
    await mark_not_serving(health, SERVICE_NAMES)
    await server.stop(grace)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def serve(config: ManagerConfig) -> None:
    """Runs the manager until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with run_manager(config):
        await stop.wait()
        log.info("signal received; shutting down")

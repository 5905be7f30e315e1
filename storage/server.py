"""The storage proxy's composition root: volumes, the gRPC server and the HTTP transfer server.

:func:`running_proxy` starts everything and yields the bound ports (tests use it in-process);
:func:`serve` runs until SIGTERM/SIGINT. On shutdown the health service flips to NOT_SERVING
first, then both servers stop with a grace period, then the volumes close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
from aiohttp import web
from bai.common.rpc import (
    DomainErrorInterceptor,
    ServiceTokenInterceptor,
    add_health_and_reflection,
    mark_not_serving,
    mark_serving,
)
from bai.pb.storage.v1 import storage_service_pb2_grpc as pb_grpc
from bai.storage.api import StorageServicer, transfer_app
from bai.storage.api.servicer import SERVICE_NAME
from bai.storage.backends import VolumeBackend, build_backend
from bai.storage.config import StorageConfig
from bai.storage.domain import StorageService, TransferTokens
from bai.storage.errors import DOMAIN

__all__ = ["RunningProxy", "running_proxy", "serve"]

log = logging.getLogger("bai.storage")

MAX_MESSAGE_BYTES = (4 << 20) + (64 << 10)
"""gRPC message limit: a 4 MiB upload chunk plus its envelope."""


@dataclass(frozen=True)
class RunningProxy:
    """A started storage proxy."""

    grpc_port: int
    """Bound port of the StorageService."""
    transfer_port: int
    """Bound port of the HTTP transfer endpoint."""
    storage: StorageService
    """The domain object both servers use."""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _bind(address: str) -> socket.socket:
    host, port = _split(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)  # connections queue from now on, before the HTTP server starts accepting
    return sock


async def _start_volumes(config: StorageConfig, stack: AsyncExitStack) -> dict[str, VolumeBackend]:
    volumes: dict[str, VolumeBackend] = {}
    for volume in config.volumes:
        backend = build_backend(volume.backend, dict(volume.options))
        await backend.start()
        stack.push_async_callback(backend.stop)
        volumes[volume.name] = backend
        log.info("volume %s: %s backend started", volume.name, volume.backend)
    return volumes


@contextlib.asynccontextmanager
async def running_proxy(config: StorageConfig) -> AsyncIterator[RunningProxy]:
    """Starts the volumes and both servers; stops them on exit."""
    async with AsyncExitStack() as stack:
        volumes = await _start_volumes(config, stack)
        secret = config.transfer_secret
        if not secret:
            secret = secrets.token_urlsafe(32)
            log.warning("no transfer secret configured: tokens will not survive a restart")
        transfer_sock = _bind(config.transfer_listen)
        stack.callback(transfer_sock.close)
        transfer_port = transfer_sock.getsockname()[1]
        url = config.transfer_url or f"http://{_split(config.transfer_listen)[0]}:{transfer_port}"
        storage = StorageService(volumes, TransferTokens(secret), url)

        server = grpc.aio.server(
            interceptors=[
                ServiceTokenInterceptor(config.service_token),
                DomainErrorInterceptor(DOMAIN),
            ],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        servicer = StorageServicer(storage)
        pb_grpc.add_StorageServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        health = add_health_and_reflection(server, [SERVICE_NAME])
        grpc_port = server.add_insecure_port(config.listen)
        if grpc_port == 0:
            raise OSError(f"cannot listen on {config.listen}")
        await server.start()
        stack.push_async_callback(server.stop, config.shutdown_grace_s)

        # no access log: one line per PATCH chunk would drown the log
        http = web.AppRunner(
            transfer_app(storage),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=config.shutdown_grace_s,
        )
        await http.setup()
        stack.push_async_callback(http.cleanup)
        site = web.SockSite(http, transfer_sock)
        await site.start()

        await mark_serving(health, [SERVICE_NAME])
        stack.push_async_callback(mark_not_serving, health, [SERVICE_NAME])  # runs first
        log.info(
            "storage proxy serving StorageService on port %d, transfers on %s (%d volumes)",
            grpc_port,
            url,
            len(volumes),
        )
        yield RunningProxy(grpc_port=grpc_port, transfer_port=transfer_port, storage=storage)
        log.info("storage proxy shutting down")


async def serve(config: StorageConfig, stop: asyncio.Event | None = None) -> None:
    """Runs the storage proxy until ``stop`` is set (or SIGTERM/SIGINT)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_proxy(config):
        await stop.wait()

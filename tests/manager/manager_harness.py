"""Manager test harness: a real manager (grpc.aio on 127.0.0.1:0, real database), keypair
signing exactly as session_service.proto describes, and ``ProtocolAgent``: a real gRPC
AgentService plus a heartbeat stream client that speak the agent protocols without containers
(the real agent with Docker is exercised by tests/e2e)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from bai.common import auth
from bai.common.rpc import (
    SERVICE_TOKEN_KEY,
    SIGN_DATE_KEY,
    SIGN_HOST_KEY,
    SIGN_VERSION_KEY,
    ServiceTokenInterceptor,
)
from bai.manager.adapters.db import Database, run_migrations
from bai.manager.adapters.db.accounts import bootstrap_admin, create_user
from bai.manager.config import ManagerConfig
from bai.manager.domain.model import Role
from bai.manager.server import RunningManager
from bai.pb.agent.v1 import agent_service_pb2 as apb
from bai.pb.agent.v1 import agent_service_pb2_grpc as apb_grpc
from bai.pb.agent.v1 import kernel_pb2
from bai.pb.manager.v1 import agent_registry_pb2 as rpb
from bai.pb.manager.v1 import agent_registry_pb2_grpc as rpb_grpc
from bai.pb.manager.v1 import image_service_pb2_grpc, session_service_pb2_grpc

IMAGE = "bai/python:3.11-debian12"
IMAGE_LABELS = {
    "ai.backend.kernelspec": "1",
    "ai.bai.aliases": "python,python:3.11,python:latest",
    "ai.backend.resource.min.cpu": "1",
    "ai.backend.resource.min.mem": "64m",
}


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str


def sign_metadata(
    keys: Keys, method: str, host: str, *, date: str | None = None, secret: str | None = None
) -> list[tuple[str, str]]:
    """Signature metadata for a direct gRPC call, as the proto comment specifies."""
    date = date or auth.now_date()
    request = auth.SignedRequest(
        method="POST",
        rel_url=method,
        date=date,
        host=host,
        content_type="application/grpc",
        api_version=auth.API_VERSION,
    )
    signature = auth.sign(request, secret or keys.secret_key)
    return [
        ("authorization", auth.authorization_header(keys.access_key, signature)),
        (SIGN_DATE_KEY, date),
        (SIGN_VERSION_KEY, auth.API_VERSION),
        (SIGN_HOST_KEY, host),
    ]


class _Signer:
    def __init__(self, keys: Keys, host: str) -> None:
        self.keys, self.host = keys, host

    def _details(self, details: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        metadata = list(details.metadata or ()) + sign_metadata(self.keys, method, self.host)
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


class _UnarySigner(_Signer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamSigner(_Signer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


@dataclass
class Harness:
    running: RunningManager
    token: str
    admin: Keys
    user: Keys
    db_url: str
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.running.address

    def _channel(self, keys: Keys | None) -> grpc.aio.Channel:
        interceptors = [_UnarySigner(keys, self.address), _StreamSigner(keys, self.address)]
        channel = grpc.aio.insecure_channel(
            self.address, interceptors=interceptors if keys else None
        )
        self.channels.append(channel)
        return channel

    def sessions(self, keys: Keys | None = None) -> Any:
        """A SessionService stub whose calls are signed with ``keys`` (the user's by default)."""
        return session_service_pb2_grpc.SessionServiceStub(self._channel(keys or self.user))

    def images(self, keys: Keys | None = None) -> Any:
        return image_service_pb2_grpc.ImageServiceStub(self._channel(keys or self.user))

    def raw_sessions(self) -> Any:
        """Unsigned: the test adds its own metadata."""
        return session_service_pb2_grpc.SessionServiceStub(self._channel(None))

    def agent(self, agent_id: str | None = None, **kw: Any) -> ProtocolAgent:
        return ProtocolAgent(
            agent_id or "i-" + secrets.token_hex(3), self.address, self.token, **kw
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def prepare_db(db_url: str) -> tuple[Keys, Keys]:
    """Migrates and creates a superadmin and a plain user; returns their keys."""
    admin = Keys(*auth.generate_keypair())
    user = Keys(*auth.generate_keypair())
    db = Database(db_url)
    try:
        await run_migrations(db)
        await bootstrap_admin(db, admin.access_key, admin.secret_key)
        await create_user(
            db,
            email="user@localhost",
            access_key=user.access_key,
            secret_key=user.secret_key,
            role=Role.USER,
        )
    finally:
        await db.close()
    return admin, user


def manager_config(db_url: str, token: str, **kw: Any) -> ManagerConfig:
    defaults: dict[str, Any] = dict(
        listen="127.0.0.1:0",
        heartbeat_interval_ms=200,
        lost_timeout=1.5,
        scheduler_interval=0.2,
        create_wait_cap=10.0,
        agent_call_timeout=3.0,
        create_kernel_timeout=10.0,
        stop_grace=0.5,
    )
    defaults.update(kw)
    return ManagerConfig(service_token=token, db_url=db_url, **defaults)


# ---- an agent that speaks the protocols -----------------------------------------------------


class ProtocolAgent(apb_grpc.AgentServiceServicer):
    """AgentService over real gRPC plus the heartbeat stream; kernels are plain records."""

    def __init__(
        self,
        agent_id: str,
        manager_address: str,
        token: str,
        *,
        cpu: str = "4",
        mem: str = str(8 << 30),
        images: tuple[str, ...] = (IMAGE,),
        resource_group: str = "default",
    ) -> None:
        self.agent_id, self.manager_address, self.token = agent_id, manager_address, token
        self.capacity = {"cpu": cpu, "mem": mem}
        self.images, self.resource_group = images, resource_group
        self.kernels: dict[str, kernel_pb2.Kernel] = {}
        self.destroyed: list[str] = []
        self.directives: list[rpb.AgentDirective] = []
        self.acks: list[int] = []
        self.create_error: tuple[grpc.StatusCode, str] | None = None
        self.create_gate: asyncio.Event | None = None
        """When set, CreateKernel waits for it (to catch the manager mid-creation)."""
        self.create_calls = 0
        self.heartbeats = True
        self.registered = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self._outbox: asyncio.Queue[rpb.HeartbeatRequest | None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._channel: grpc.aio.Channel | None = None
        self.interval_ms = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- AgentService --------------------------------------------------------------------

    async def CreateKernel(self, request: apb.CreateKernelRequest, context: Any) -> Any:
        self.create_calls += 1
        if self.create_gate is not None:
            await self.create_gate.wait()
        if request.kernel_id in self.kernels:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "kernel exists")
        if request.image not in self.images:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"image {request.image} not present")
        if self.create_error is not None:
            await context.abort(*self.create_error)
        kernel = kernel_pb2.Kernel(
            kernel_id=request.kernel_id,
            session_id=request.session_id,
            state=kernel_pb2.Kernel.STATE_RUNNING,
            image=request.image,
            container_id="c" + uuid.uuid4().hex,
            slots=request.slots,
        )
        self.kernels[request.kernel_id] = kernel
        self.last_create = request
        return apb.CreateKernelResponse(kernel=kernel)

    async def DestroyKernel(self, request: apb.DestroyKernelRequest, context: Any) -> Any:
        self.destroyed.append(request.kernel_id)
        self.kernels.pop(request.kernel_id, None)
        return apb.DestroyKernelResponse(exit_code=0)

    async def RestartKernel(self, request: apb.RestartKernelRequest, context: Any) -> Any:
        kernel = self.kernels.get(request.kernel_id)
        if kernel is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such kernel")
        kernel.container_id = "c" + uuid.uuid4().hex
        return apb.RestartKernelResponse(kernel=kernel)

    async def Execute(self, request: apb.ExecuteRequest, context: Any) -> Any:
        if request.kernel_id not in self.kernels:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such kernel")
        run_id = request.run_id or "r-" + uuid.uuid4().hex[:8]
        yield apb.ExecuteResponse(run_id=run_id, stream="stdout", data=f"ran {request.code}\n")
        yield apb.ExecuteResponse(run_id=run_id, finished=True, exit_code=request.mode)

    async def InterruptKernel(self, request: apb.InterruptKernelRequest, context: Any) -> Any:
        if request.kernel_id not in self.kernels:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such kernel")
        return apb.InterruptKernelResponse()

    async def ListKernels(self, request: apb.ListKernelsRequest, context: Any) -> Any:
        return apb.ListKernelsResponse(kernels=list(self.kernels.values()))

    async def StreamKernelLogs(self, request: apb.StreamKernelLogsRequest, context: Any) -> Any:
        if request.kernel_id not in self.kernels:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such kernel")
        for line in ("line 1\n", "line 2\n"):
            yield apb.StreamKernelLogsResponse(data=line, stream="stdout")

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> ProtocolAgent:
        self._server = grpc.aio.server(interceptors=[ServiceTokenInterceptor(self.token)])
        apb_grpc.add_AgentServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        await self.connect()
        return self

    def registration(self) -> rpb.AgentRegistration:
        return rpb.AgentRegistration(
            agent_id=self.agent_id,
            address=self.address,
            capacity=self.capacity,
            architecture="x86_64",
            resource_group=self.resource_group,
            version="test",
            kernels=[
                rpb.KernelReport(
                    kernel_id=k.kernel_id,
                    session_id=k.session_id,
                    state=kernel_pb2.Kernel.State.Name(k.state).removeprefix("STATE_").lower(),
                    container_id=k.container_id,
                    exit_code=k.exit_code,
                )
                for k in self.kernels.values()
            ],
            images=[
                rpb.AgentImage(
                    ref=ref,
                    digest="sha256:" + "0" * 64,
                    labels=IMAGE_LABELS,
                    size_bytes=1000,
                    architecture="x86_64",
                )
                for ref in self.images
            ],
        )

    async def connect(self) -> None:
        """Opens a heartbeat stream and registers (a reconnect sends a fresh snapshot)."""
        await self.disconnect()
        self.registered.clear()
        self._channel = grpc.aio.insecure_channel(self.manager_address)
        stub = rpb_grpc.AgentRegistryServiceStub(self._channel)
        outbox: asyncio.Queue[rpb.HeartbeatRequest | None] = asyncio.Queue()
        self._outbox = outbox
        outbox.put_nowait(rpb.HeartbeatRequest(registration=self.registration()))

        async def requests() -> AsyncIterator[rpb.HeartbeatRequest]:
            while (message := await outbox.get()) is not None:
                yield message

        call = stub.Heartbeat(requests(), metadata=((SERVICE_TOKEN_KEY, self.token),))
        self._tasks = [
            asyncio.create_task(self._receive(call)),
            asyncio.create_task(self._beat(outbox)),
        ]
        await asyncio.wait_for(self.registered.wait(), 10)

    async def _receive(self, call: Any) -> None:
        async for response in call:
            kind = response.WhichOneof("message")
            if kind == "registration_ack":
                self.interval_ms = response.registration_ack.heartbeat_interval_ms
                self.registered.set()
            elif kind == "heartbeat_ack":
                self.acks.append(response.heartbeat_ack.sequence)
            elif kind == "directive":
                self.directives.append(response.directive)
                for kernel_id in response.directive.destroy_kernel_ids:
                    self.kernels.pop(kernel_id, None)

    async def _beat(self, outbox: asyncio.Queue[rpb.HeartbeatRequest | None]) -> None:
        await self.registered.wait()
        sequence = 0
        while True:
            await asyncio.sleep(self.interval_ms / 1000)
            if self.heartbeats:
                sequence += 1
                outbox.put_nowait(
                    rpb.HeartbeatRequest(
                        heartbeat=rpb.AgentHeartbeat(
                            sequence=sequence, kernels=self.registration().kernels
                        )
                    )
                )

    def send_exit(self, kernel_id: str, exit_code: int, reason: str = "ContainerExited") -> None:
        kernel = self.kernels[kernel_id]
        kernel.state, kernel.exit_code = kernel_pb2.Kernel.STATE_TERMINATED, exit_code
        assert self._outbox is not None
        self._outbox.put_nowait(
            rpb.HeartbeatRequest(
                event=rpb.KernelEvent(
                    kernel_id=kernel_id,
                    session_id=kernel.session_id,
                    kind=rpb.KernelEvent.KIND_TERMINATED,
                    exit_code=exit_code,
                    reason=reason,
                )
            )
        )

    async def disconnect(self) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def stop(self) -> None:
        await self.disconnect()
        if self._server is not None:
            await self._server.stop(0)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Polls ``check`` until it is true (fails after ``within`` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class InteractiveAgent(ProtocolAgent):
    """A protocol agent whose runs also stream over time and ask for input, as the real
    agent reports them: output events as they come, then ``waiting_input`` (with
    ``continued``, ending the call) carrying the prompt; INPUT resumes the run."""

    async def Execute(self, request: apb.ExecuteRequest, context: Any) -> Any:
        run_id = request.run_id or "r-" + uuid.uuid4().hex[:8]
        if request.mode == apb.EXECUTION_MODE_INPUT:
            yield apb.ExecuteResponse(
                run_id=run_id, stream="stdout", data=f"hello {request.code}\n"
            )
            yield apb.ExecuteResponse(run_id=run_id, finished=True, exit_code=0)
        elif request.code == "ask":
            yield apb.ExecuteResponse(run_id=run_id, stream="stdout", data="before\n")
            yield apb.ExecuteResponse(
                run_id=run_id, waiting_input=True, continued=True, data="name? "
            )
        elif request.code == "count":
            for i in range(3):
                yield apb.ExecuteResponse(run_id=run_id, stream="stdout", data=f"{i}\n")
                await asyncio.sleep(0.05)
            yield apb.ExecuteResponse(run_id=run_id, stream="stderr", data="done\n")
            yield apb.ExecuteResponse(run_id=run_id, finished=True, exit_code=7)
        else:
            async for event in super().Execute(request, context):
                yield event

"""The manager's CircuitService client against a real coordinator: frontend modes, the
session listing the orphan sweep reads, closing a session's circuits."""

from __future__ import annotations

import uuid

import pytest
from appproxy_support import TOKEN, Stack
from bai.common.errors import Unavailable
from bai.manager.adapters.appproxy_client import GrpcCircuitClient
from bai.manager.domain.apps import CircuitSpec


def _spec(stack: Stack, session: uuid.UUID, app: str, protocol: str) -> CircuitSpec:
    return CircuitSpec(session_id=session, kernel_id=uuid.uuid4(), app=app, protocol=protocol,
                       socket_path=str(stack.dir / f"{app}.sock"), owner_access_key="AKIATEST",
                       owner_user_id=None)


async def test_subdomain_frontend_for_http_and_port_for_tcp() -> None:
    stack = Stack(apps_domain="apps.example.test")
    coordinator = await stack.start_coordinator()
    client = GrpcCircuitClient(f"127.0.0.1:{coordinator.control_port}", TOKEN,
                               http_frontend="subdomain")
    try:
        one, two = uuid.uuid4(), uuid.uuid4()
        web = await client.create_circuit(_spec(stack, one, "web", "http"))
        assert web.host == f"{web.circuit_id}.apps.example.test"
        assert web.port == stack.frontends.subdomain_port
        assert web.url == f"http://{web.host}:{web.port}/?token={web.token}"
        ssh = await client.create_circuit(_spec(stack, one, "sshd", "tcp"))
        assert ssh.port != stack.frontends.subdomain_port and ssh.url.startswith("tcp://")
        await client.create_circuit(_spec(stack, two, "web", "http"))
        assert await client.session_ids() == {one, two}
        assert sorted(await client.delete_for_session(one)) == sorted(
            [web.circuit_id, ssh.circuit_id])
        assert await client.session_ids() == {two}
    finally:
        await client.close()
        await stack.stop_coordinator()
        await stack.close()


async def test_unreachable_coordinator_is_unavailable() -> None:
    stack = Stack()
    coordinator = await stack.start_coordinator()
    address = f"127.0.0.1:{coordinator.control_port}"
    await stack.close()
    client = GrpcCircuitClient(address, TOKEN, call_timeout=2)
    try:
        with pytest.raises(Unavailable):
            await client.session_ids()
    finally:
        await client.close()
    with pytest.raises(ValueError, match="subdomain"):
        GrpcCircuitClient(address, TOKEN, http_frontend="wildcard")

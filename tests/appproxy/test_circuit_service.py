"""CircuitService over a real grpc.aio server (the coordinator, without Envoy)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from appproxy_support import HTTP, PORT, SUBDOMAIN, TCP, TOKEN, Stack
from bai.common.rpc import SERVICE_TOKEN_KEY, error_from_rpc
from bai.pb.appproxy.v1 import circuit_service_pb2 as pb
from bai.pb.appproxy.v1 import circuit_service_pb2_grpc

AUTH = [(SERVICE_TOKEN_KEY, TOKEN)]


@pytest.fixture
async def service() -> AsyncIterator[tuple[Stack, circuit_service_pb2_grpc.CircuitServiceStub]]:
    stack = Stack(ports=3)
    await stack.start_coordinator()
    assert stack.stub is not None
    try:
        yield stack, stack.stub
    finally:
        await stack.close()


def _create(stack: Stack, **kw: object) -> pb.CreateCircuitRequest:
    fields: dict[str, object] = {
        "session_id": str(uuid.uuid4()),
        "kernel_id": str(uuid.uuid4()),
        "app": "jupyter",
        "protocol": HTTP,
        "upstream_socket_path": str(stack.dir / "jupyter.sock"),
        "frontend_mode": PORT,
        "owner_access_key": "AKIATEST",
        "owner_user_id": str(uuid.uuid4()),
    }
    fields.update(kw)
    return pb.CreateCircuitRequest(**fields)  # type: ignore[arg-type]


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call  # type: ignore[misc]
    return exc.value.code(), error_from_rpc(exc.value).reason


async def test_service_token_is_required(
    service: tuple[Stack, circuit_service_pb2_grpc.CircuitServiceStub],
) -> None:
    _, stub = service
    code, _ = await _code(stub.ListCircuits(pb.ListCircuitsRequest(), timeout=5))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    code, _ = await _code(
        stub.ListCircuits(pb.ListCircuitsRequest(), metadata=[(SERVICE_TOKEN_KEY, "x")], timeout=5)
    )
    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_create_get_list_delete(
    service: tuple[Stack, circuit_service_pb2_grpc.CircuitServiceStub],
) -> None:
    stack, stub = service
    request = _create(stack)
    created = await stub.CreateCircuit(request, metadata=AUTH, timeout=5)
    circuit = created.circuit
    assert not created.reused
    assert circuit.app == "jupyter" and circuit.owner_user_id == request.owner_user_id
    assert circuit.frontend_port == stack.config.port_range[0]
    assert circuit.url == f"http://127.0.0.1:{circuit.frontend_port}/?token={circuit.token}"
    assert circuit.create_time.seconds > 0
    again = await stub.CreateCircuit(request, metadata=AUTH, timeout=5)
    assert again.reused and again.circuit == circuit
    got = await stub.GetCircuit(
        pb.GetCircuitRequest(circuit_id=circuit.id), metadata=AUTH, timeout=5
    )
    assert got.circuit == circuit

    sub = (
        await stub.CreateCircuit(
            _create(stack, app="web", session_id=circuit.session_id, frontend_mode=SUBDOMAIN),
            metadata=AUTH,
            timeout=5,
        )
    ).circuit
    assert sub.frontend_hostname == f"{sub.id}.apps.localhost"
    assert (
        sub.url
        == f"http://{sub.id}.apps.localhost:{stack.frontends.subdomain_port}/?token={sub.token}"
    )
    first = await stub.ListCircuits(pb.ListCircuitsRequest(page_size=1), metadata=AUTH, timeout=5)
    assert [c.id for c in first.circuits] == [circuit.id] and first.next_page_token
    second = await stub.ListCircuits(
        pb.ListCircuitsRequest(page_size=1, page_token=first.next_page_token),
        metadata=AUTH,
        timeout=5,
    )
    assert [c.id for c in second.circuits] == [sub.id] and not second.next_page_token

    deleted = await stub.DeleteCircuitsForSession(
        pb.DeleteCircuitsForSessionRequest(session_id=circuit.session_id), metadata=AUTH, timeout=5
    )
    assert sorted(deleted.circuit_ids) == sorted([circuit.id, sub.id])
    missing = await stub.DeleteCircuit(
        pb.DeleteCircuitRequest(circuit_id=circuit.id, allow_missing=True), metadata=AUTH, timeout=5
    )
    assert not missing.deleted


async def test_errors_carry_codes_and_reasons(
    service: tuple[Stack, circuit_service_pb2_grpc.CircuitServiceStub],
) -> None:
    stack, stub = service
    cases = [
        (_create(stack, protocol=0), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (_create(stack, frontend_mode=0), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (
            _create(stack, protocol=TCP, frontend_mode=SUBDOMAIN),
            grpc.StatusCode.INVALID_ARGUMENT,
            "TCP_NEEDS_PORT_MODE",
        ),
        (
            _create(stack, upstream_socket_path="/var/run/docker.sock"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "UPSTREAM_OUTSIDE_ROOTS",
        ),
    ]
    for request, code, reason in cases:
        assert await _code(stub.CreateCircuit(request, metadata=AUTH, timeout=5)) == (code, reason)
    taken = _create(stack)
    await stub.CreateCircuit(taken, metadata=AUTH, timeout=5)
    conflict = _create(
        stack, kernel_id=taken.kernel_id, upstream_socket_path=str(stack.dir / "o.sock")
    )
    assert await _code(stub.CreateCircuit(conflict, metadata=AUTH, timeout=5)) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "CIRCUIT_EXISTS",
    )
    for _ in range(2):  # the range has 3 ports
        await stub.CreateCircuit(_create(stack, app="more"), metadata=AUTH, timeout=5)
    listed = await stub.ListCircuits(pb.ListCircuitsRequest(), metadata=AUTH, timeout=5)
    assert len(listed.circuits) == 3
    assert await _code(
        stub.CreateCircuit(_create(stack, app="full"), metadata=AUTH, timeout=5)
    ) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "NO_FREE_PORT",
    )
    unknown = str(uuid.uuid4())
    assert await _code(
        stub.GetCircuit(pb.GetCircuitRequest(circuit_id=unknown), metadata=AUTH, timeout=5)
    ) == (
        grpc.StatusCode.NOT_FOUND,
        "CIRCUIT_NOT_FOUND",
    )
    assert await _code(
        stub.DeleteCircuit(pb.DeleteCircuitRequest(circuit_id=unknown), metadata=AUTH, timeout=5)
    ) == (
        grpc.StatusCode.NOT_FOUND,
        "CIRCUIT_NOT_FOUND",
    )
    assert (
        await _code(
            stub.ListCircuits(pb.ListCircuitsRequest(page_size=-1), metadata=AUTH, timeout=5)
        )
    )[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert (
        await _code(
            stub.DeleteCircuitsForSession(
                pb.DeleteCircuitsForSessionRequest(), metadata=AUTH, timeout=5
            )
        )
    )[0] is grpc.StatusCode.INVALID_ARGUMENT

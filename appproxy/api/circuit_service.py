"""bai.appproxy.v1.CircuitService over the circuit registry."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from bai.appproxy.domain.circuits import CircuitRegistry
from bai.appproxy.domain.model import Circuit, CircuitSpec, FrontendMode, Frontends, Protocol
from bai.common.errors import InvalidArgument
from bai.pb.appproxy.v1 import circuit_pb2, circuit_service_pb2, circuit_service_pb2_grpc
from google.protobuf import timestamp_pb2

__all__ = ["ERROR_DOMAIN", "CircuitServicer", "spec_from_proto", "to_proto"]

ERROR_DOMAIN = "appproxy.bai"

_PROTOCOLS = {
    circuit_pb2.Circuit.PROTOCOL_HTTP: Protocol.HTTP,
    circuit_pb2.Circuit.PROTOCOL_TCP: Protocol.TCP,
}
_MODES = {
    circuit_pb2.Circuit.FRONTEND_MODE_PORT: FrontendMode.PORT,
    circuit_pb2.Circuit.FRONTEND_MODE_SUBDOMAIN: FrontendMode.SUBDOMAIN,
}
_PROTOCOL_PB = {v: k for k, v in _PROTOCOLS.items()}
_MODE_PB = {v: k for k, v in _MODES.items()}

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def spec_from_proto(req: circuit_service_pb2.CreateCircuitRequest) -> CircuitSpec:
    """The domain spec of a CreateCircuitRequest; InvalidArgument on an unset enum."""
    protocol = _PROTOCOLS.get(req.protocol)
    mode = _MODES.get(req.frontend_mode)
    if protocol is None:
        raise InvalidArgument("protocol is required (PROTOCOL_HTTP or PROTOCOL_TCP)")
    if mode is None:
        raise InvalidArgument("frontend_mode is required (FRONTEND_MODE_PORT or _SUBDOMAIN)")
    return CircuitSpec(
        session_id=req.session_id,
        kernel_id=req.kernel_id,
        app=req.app,
        protocol=protocol,
        upstream_socket_path=req.upstream_socket_path,
        frontend_mode=mode,
        owner_access_key=req.owner_access_key,
        owner_user_id=req.owner_user_id,
    )


def to_proto(circuit: Circuit, frontends: Frontends) -> circuit_pb2.Circuit:
    """The wire form of a circuit."""
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(circuit.create_time)
    spec = circuit.spec
    return circuit_pb2.Circuit(
        id=circuit.id,
        session_id=spec.session_id,
        kernel_id=spec.kernel_id,
        app=spec.app,
        protocol=_PROTOCOL_PB[spec.protocol],
        upstream_socket_path=spec.upstream_socket_path,
        frontend_mode=_MODE_PB[spec.frontend_mode],
        owner_access_key=spec.owner_access_key,
        owner_user_id=spec.owner_user_id,
        token=circuit.token,
        frontend_port=frontends.port(circuit),
        frontend_hostname=frontends.hostname(circuit),
        url=frontends.url(circuit),
        create_time=created,
    )


class CircuitServicer(circuit_service_pb2_grpc.CircuitServiceServicer):
    """Converts, calls the registry once, converts back.

    Domain errors propagate; :class:`~bai.common.rpc.DomainErrorInterceptor` turns
    them into statuses.
    """

    def __init__(self, registry: CircuitRegistry, frontends: Frontends) -> None:
        self._registry = registry
        self._frontends = frontends

    async def CreateCircuit(
        self, request: circuit_service_pb2.CreateCircuitRequest, context: Ctx
    ) -> circuit_service_pb2.CreateCircuitResponse:
        circuit, reused = await self._registry.create(spec_from_proto(request))
        return circuit_service_pb2.CreateCircuitResponse(
            circuit=to_proto(circuit, self._frontends), reused=reused
        )

    async def GetCircuit(
        self, request: circuit_service_pb2.GetCircuitRequest, context: Ctx
    ) -> circuit_service_pb2.GetCircuitResponse:
        circuit = self._registry.require(request.circuit_id)
        return circuit_service_pb2.GetCircuitResponse(circuit=to_proto(circuit, self._frontends))

    async def ListCircuits(
        self, request: circuit_service_pb2.ListCircuitsRequest, context: Ctx
    ) -> circuit_service_pb2.ListCircuitsResponse:
        page = self._registry.list_page(
            page_size=request.page_size,
            page_token=request.page_token,
            session_id=request.session_id,
            owner_access_key=request.owner_access_key,
        )
        return circuit_service_pb2.ListCircuitsResponse(
            circuits=[to_proto(c, self._frontends) for c in page.circuits],
            next_page_token=page.next_page_token,
        )

    async def DeleteCircuit(
        self, request: circuit_service_pb2.DeleteCircuitRequest, context: Ctx
    ) -> circuit_service_pb2.DeleteCircuitResponse:
        deleted = await self._registry.delete(
            request.circuit_id, allow_missing=request.allow_missing
        )
        return circuit_service_pb2.DeleteCircuitResponse(deleted=deleted)

    async def DeleteCircuitsForSession(
        self, request: circuit_service_pb2.DeleteCircuitsForSessionRequest, context: Ctx
    ) -> circuit_service_pb2.DeleteCircuitsForSessionResponse:
        ids = await self._registry.delete_for_session(request.session_id)
        return circuit_service_pb2.DeleteCircuitsForSessionResponse(circuit_ids=ids)

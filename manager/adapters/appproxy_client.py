"""Client of the app proxy coordinator's CircuitService (service token on every call)."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from bai.common.rpc import SERVICE_TOKEN_KEY, error_from_rpc
from bai.manager.domain.apps import AppEndpoint, CircuitSpec
from bai.pb.appproxy.v1 import circuit_pb2, circuit_service_pb2, circuit_service_pb2_grpc

__all__ = ["GrpcCircuitClient"]

_PROTOCOLS = {"http": circuit_pb2.Circuit.PROTOCOL_HTTP, "tcp": circuit_pb2.Circuit.PROTOCOL_TCP}
_MODES = {"port": circuit_pb2.Circuit.FRONTEND_MODE_PORT,
          "subdomain": circuit_pb2.Circuit.FRONTEND_MODE_SUBDOMAIN}


class GrpcCircuitClient:
    """Implements :class:`bai.manager.domain.apps.CircuitClient`."""

    def __init__(self, address: str, service_token: str, call_timeout: float = 10.0, *,
                 http_frontend: str = "port") -> None:
        if http_frontend not in _MODES:
            raise ValueError(f"http_frontend must be 'port' or 'subdomain', not {http_frontend!r}")
        self._http_mode = _MODES[http_frontend]
        self._channel = grpc.aio.insecure_channel(address)
        self._stub: Any = circuit_service_pb2_grpc.CircuitServiceStub(  # type: ignore[no-untyped-call]
            self._channel)
        self._metadata = ((SERVICE_TOKEN_KEY, service_token),)
        self._timeout = call_timeout

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, metadata=self._metadata,
                                                     timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def create_circuit(self, spec: CircuitSpec) -> AppEndpoint:
        request = circuit_service_pb2.CreateCircuitRequest(
            session_id=str(spec.session_id), kernel_id=str(spec.kernel_id), app=spec.app,
            protocol=_PROTOCOLS[spec.protocol], upstream_socket_path=spec.socket_path,
            # TCP (SSH) has no Host header to route by: always a port of its own.
            frontend_mode=(self._http_mode if spec.protocol == "http"
                           else circuit_pb2.Circuit.FRONTEND_MODE_PORT),
            owner_access_key=spec.owner_access_key, owner_user_id=str(spec.owner_user_id or ""))
        circuit = (await self._call("CreateCircuit", request)).circuit
        return AppEndpoint(url=circuit.url, host=circuit.frontend_hostname,
                           port=circuit.frontend_port, token=circuit.token,
                           protocol=spec.protocol, circuit_id=circuit.id)

    async def delete_for_session(self, session_id: uuid.UUID) -> list[str]:
        request = circuit_service_pb2.DeleteCircuitsForSessionRequest(session_id=str(session_id))
        return list((await self._call("DeleteCircuitsForSession", request)).circuit_ids)

    async def session_ids(self) -> set[uuid.UUID]:
        found: set[uuid.UUID] = set()
        token = ""
        while True:
            reply = await self._call("ListCircuits", circuit_service_pb2.ListCircuitsRequest(
                page_size=1000, page_token=token))
            found.update(uuid.UUID(c.session_id) for c in reply.circuits)
            token = reply.next_page_token
            if not token:
                return found

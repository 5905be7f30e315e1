"""The agent's gRPC server: AgentService behind the service-token check, health, reflection."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from bai.agent.api import AgentServicer
from bai.agent.domain.service import AgentService
from bai.common.rpc import ServiceTokenInterceptor, add_health_and_reflection, mark_serving
from bai.pb.agent.v1 import agent_service_pb2, agent_service_pb2_grpc
from grpc_health.v1 import health

__all__ = ["SERVICE_NAME", "AgentServer", "start_server"]

SERVICE_NAME: str = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name


@dataclass(frozen=True)
class AgentServer:
    server: grpc.aio.Server
    port: int
    """The bound port (useful with a listen port of 0)."""
    health: health.aio.HealthServicer


async def start_server(service: AgentService, *, listen: str, service_token: str) -> AgentServer:
    """Builds, binds and starts the server; SERVING once this returns."""
    server = grpc.aio.server(interceptors=[ServiceTokenInterceptor(service_token)])
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(  # type: ignore[no-untyped-call]
        AgentServicer(service), server
    )
    health_servicer = add_health_and_reflection(server, [SERVICE_NAME])
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    await mark_serving(health_servicer, [SERVICE_NAME])
    return AgentServer(server=server, port=port, health=health_servicer)

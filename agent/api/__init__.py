"""The agent's gRPC surface (AgentService)."""

from bai.agent.api.servicer import ERROR_DOMAIN, AgentServicer

__all__ = ["ERROR_DOMAIN", "AgentServicer"]

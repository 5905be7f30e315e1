"""Gateway configuration: one frozen object, built by ``__main__`` and handed to ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GatewayConfig"]


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """How the gateway reaches the manager and how long it waits for it."""

    manager_addr: str
    """``host:port`` of the manager's gRPC server."""
    service_token: str
    """Internal token (``x-bai-service-token``): lets the manager honour forwarded signatures."""
    call_timeout: float = 30.0
    """Deadline, in seconds, of ordinary unary calls."""
    create_timeout: float = 600.0
    """Deadline of CreateSession when the client sets no wait limit (the call waits for RUNNING)."""
    execute_wait: float = 15.0
    """``max_wait`` of one HTTP execute call: the run answers ``continued`` after this long."""
    logs_timeout: float = 60.0
    """Deadline of a non-following log read."""
    redis_url: str = ""
    """Redis URL shared by gateway replicas for rate-limit windows; empty keeps them in process."""
    rate_limit: int = 30_000
    """Requests per window for a keypair whose own ``rate_limit`` the manager does not report."""
    rate_limit_window: int = 900
    """Seconds of the sliding rate-limit window (Backend.AI's 15 minutes)."""
    rate_limit_cache_ttl: float = 30.0
    """Seconds a keypair's rate limit, once fetched from the manager, is reused."""
    opentelemetry: bool = False
    """FastAPI's native OpenTelemetry instrumentation. Off by default: the gateway configures no
    OpenTelemetry provider, and when on, FastAPI looks the global providers up (environment
    variables included) on every request, about 4% of the gateway's CPU on ``GET /session``."""

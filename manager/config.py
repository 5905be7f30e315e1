"""Manager configuration (one frozen object, built by ``__main__`` from flags and env vars)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_DB_URL", "DEFAULT_LISTEN", "ManagerConfig"]

DEFAULT_LISTEN = "127.0.0.1:8091"
DEFAULT_DB_URL = "sqlite+aiosqlite:///.bai/manager.db"


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    service_token: str
    """Shared internal token: agents and the gateway send it as x-bai-service-token."""
    listen: str = DEFAULT_LISTEN
    """host:port of the gRPC server (port 0 picks a free one)."""
    db_url: str = DEFAULT_DB_URL
    """Async SQLAlchemy URL: sqlite+aiosqlite:///PATH or postgresql+psycopg://..."""
    heartbeat_interval_ms: int = 3000
    """Heartbeat interval agents are told to keep."""
    lost_timeout: float | None = None
    """Seconds of agent silence before LOST; None means 3 intervals + 5 s."""
    resume_grace: float | None = None
    """Seconds after start that sessions caught mid-creation wait for their agent to come back
    before they fail with AgentUnavailable; None means lost_timeout + 5 s."""
    create_wait_cap: float = 60.0
    """Seconds CreateSession waits for RUNNING when the caller gave no max_wait."""
    scheduler_interval: float = 1.0
    expiry_interval: float = 5.0
    """Seconds between idle-timeout / max-lifetime sweeps (lifecycle engine)."""
    """Seconds between lifecycle steps when no event wakes it earlier."""
    agent_call_timeout: float = 10.0
    """Deadline of short agent calls (destroy, interrupt, list)."""
    create_kernel_timeout: float = 300.0
    """Deadline of CreateKernel / RestartKernel."""
    keypair_cache_ttl: float = 10.0
    """Seconds a keypair's secret and state are cached."""
    login_lockout_threshold: int = 5
    """Consecutive failed password logins that lock a user (AuthService.Authorize)."""
    login_lockout_seconds: float = 300.0
    """How long such a lock lasts."""
    appproxy: str = ""
    """host:port of the app proxy coordinator (CircuitService); empty = apps disabled."""
    appproxy_frontend: str = "port"
    """Frontend of HTTP apps: "port" (a port each) or "subdomain" (one shared port)."""
    stop_grace: float = 5.0
    """Seconds in-flight calls get to finish on shutdown."""
    storage_addr: str = ""
    """host:port of the storage proxy's StorageService; empty disables vfolders."""
    agent_listen: str = ""
    """host:port of a separate agent-registry process (``serve-agents``, started by ``serve``)
    serving the agents' Heartbeat streams on its own core; empty: this process serves them
    alone. Needs PostgreSQL and ``redis_url`` (see bai.manager.registry_worker)."""
    redis_url: str = ""
    """Redis URL (redis://HOST:PORT/DB) of the event bus shared by manager replicas (a Redis
    Stream); empty keeps the in-process bus (one manager only)."""

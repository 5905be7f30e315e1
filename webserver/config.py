"""Webserver configuration: one frozen object, built by ``__main__``, given to ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SESSION_COOKIE", "WebserverConfig"]

SESSION_COOKIE = "AIOHTTP_SESSION"
"""The cookie name Backend.AI's webserver uses (aiohttp_session's default), kept for clients."""


@dataclass(frozen=True, slots=True)
class WebserverConfig:
    """Where the gateway is, how long web sessions live, where they are kept."""

    gateway_url: str
    """Base URL of the REST gateway (``http://127.0.0.1:8090``; a path prefix is kept)."""
    redis_url: str = ""
    """Redis URL for web sessions shared by webserver replicas; empty keeps them in process."""
    session_max_age: int = 3600
    """Seconds a web session (and its cookie) lives after login or the last extension."""
    login_domain: str = ""
    """Domain sent with every password login; empty lets the user's own domain match."""
    connect_timeout: float = 10.0
    """Seconds to wait for a TCP connection to the gateway."""
    login_timeout: float = 30.0
    """Deadline, in seconds, of the ``/auth/authorize`` call behind ``/server/login``."""
    public_endpoint: str = ""
    """The URL clients are configured with (``BACKEND_ENDPOINT``), when a reverse proxy in front
    changes scheme or host: the key of ``X-BackendAI-Encoded`` bodies derives from it. Empty:
    ``<scheme>://<Host header>`` of each request."""

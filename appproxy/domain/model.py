"""Circuits and the frontends they are reached on."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath

from bai.common.errors import InvalidArgument

__all__ = [
    "COOKIE_PREFIX",
    "Circuit",
    "CircuitSpec",
    "FrontendMode",
    "Frontends",
    "Protocol",
    "validate_spec",
]

COOKIE_PREFIX = "bai_app_"
"""Name of a circuit's permit cookie: this prefix and the circuit id."""
MAX_SUN_PATH = 107
"""sun_path holds 108 bytes including the terminating NUL."""
_APP_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ACCESS_KEY_MAX = 128


class Protocol(StrEnum):
    """How an app speaks."""

    HTTP = "http"
    TCP = "tcp"


class FrontendMode(StrEnum):
    """Where clients reach a circuit."""

    PORT = "port"
    """A port of its own from the coordinator's range."""
    SUBDOMAIN = "subdomain"
    """``<id>.<apps domain>`` on the shared subdomain port."""


@dataclass(frozen=True, slots=True)
class CircuitSpec:
    """What the manager asks for; immutable, and what makes two creates "the same"."""

    session_id: str
    """Session id (UUID string)."""
    kernel_id: str
    """Kernel id (UUID string); with ``app`` it names the circuit."""
    app: str
    """App (service port) name."""
    protocol: Protocol
    """How the app speaks."""
    upstream_socket_path: str
    """Absolute path of the app's Unix socket on the Envoy host."""
    frontend_mode: FrontendMode
    """Where clients reach the circuit."""
    owner_access_key: str
    """Access key of the user the circuit is for."""
    owner_user_id: str = ""
    """User id of that user (UUID string), when known."""


@dataclass(frozen=True, slots=True)
class Circuit:
    """An open circuit."""

    id: str
    """Circuit id (UUID string); also the subdomain label."""
    spec: CircuitSpec
    """What was asked for."""
    token: str
    """Secret that admits HTTP requests as query parameter ``token``; empty for TCP."""
    permit: str
    """Value of the permit cookie handed out on the first admitted request; empty for TCP."""
    frontend_port: int | None
    """The circuit's own port (port mode); None in subdomain mode."""
    create_time: datetime
    """When the circuit was created (UTC)."""

    @property
    def cookie_name(self) -> str:
        """Name of this circuit's permit cookie (distinct per circuit: cookies ignore ports)."""
        return COOKIE_PREFIX + self.id


@dataclass(frozen=True, slots=True)
class Frontends:
    """How the Envoy frontends are reached from clients."""

    public_host: str = "127.0.0.1"
    """Host name or address clients use for port-mode frontends."""
    apps_domain: str = "apps.localhost"
    """Parent domain of subdomain-mode hostnames (``<id>.<apps_domain>``)."""
    subdomain_port: int = 10240
    """The shared port of subdomain-mode circuits."""

    def hostname(self, circuit: Circuit) -> str:
        """The hostname clients use for ``circuit``."""
        if circuit.spec.frontend_mode is FrontendMode.SUBDOMAIN:
            return f"{circuit.id}.{self.apps_domain}"
        return self.public_host

    def port(self, circuit: Circuit) -> int:
        """The TCP port clients use for ``circuit``."""
        if circuit.frontend_port is not None:
            return circuit.frontend_port
        return self.subdomain_port

    def url(self, circuit: Circuit) -> str:
        """Where to point a client: with the token for HTTP, ``tcp://`` for TCP."""
        host, port = self.hostname(circuit), self.port(circuit)
        if ":" in host:  # a bare IPv6 address
            host = f"[{host}]"
        if circuit.spec.protocol is Protocol.TCP:
            return f"tcp://{host}:{port}"
        return f"http://{host}:{port}/?token={circuit.token}"


def _require_uuid(value: str, field: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError as exc:
        raise InvalidArgument(f"{field} must be a UUID string, got {value!r}") from exc


def validate_spec(spec: CircuitSpec, upstream_roots: tuple[PurePosixPath, ...] = ()) -> None:
    """Raises InvalidArgument unless ``spec`` is complete and well-formed.

    ``upstream_roots``, when not empty, are the only directories app sockets may lie below
    (checked lexically: the path must be normalized, without ``..``).
    """
    _require_uuid(spec.session_id, "session_id")
    _require_uuid(spec.kernel_id, "kernel_id")
    if spec.owner_user_id:
        _require_uuid(spec.owner_user_id, "owner_user_id")
    if not _APP_RE.match(spec.app):
        raise InvalidArgument(
            f"app must be 1-64 letters, digits, '-', '_' or '.', got {spec.app!r}"
        )
    if not spec.owner_access_key or len(spec.owner_access_key) > _ACCESS_KEY_MAX:
        raise InvalidArgument("owner_access_key is required (at most 128 characters)")
    path = spec.upstream_socket_path
    if "\0" in path or not path.startswith("/"):
        raise InvalidArgument(f"upstream_socket_path must be an absolute path, got {path!r}")
    if len(path.encode()) > MAX_SUN_PATH:
        raise InvalidArgument(f"upstream_socket_path is longer than {MAX_SUN_PATH} bytes")
    pure = PurePosixPath(path)
    if ".." in pure.parts or str(pure) != path:
        raise InvalidArgument(f"upstream_socket_path must be normalized, got {path!r}")
    if upstream_roots and not any(pure.is_relative_to(root) for root in upstream_roots):
        raise InvalidArgument(
            f"upstream_socket_path {path!r} is outside the allowed upstream roots",
            reason="UPSTREAM_OUTSIDE_ROOTS",
        )
    if spec.protocol is Protocol.TCP and spec.frontend_mode is FrontendMode.SUBDOMAIN:
        raise InvalidArgument(
            "TCP circuits need the port frontend mode", reason="TCP_NEEDS_PORT_MODE"
        )

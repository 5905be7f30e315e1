"""The circuit registry: validates, allocates frontends, persists, and announces changes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from bai.appproxy.domain.model import Circuit, CircuitSpec, FrontendMode, Protocol, validate_spec
from bai.appproxy.domain.ports import CircuitStore, PortProbe
from bai.common.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted

__all__ = ["CircuitPage", "CircuitRegistry"]

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class CircuitPage:
    """One page of a listing."""

    circuits: list[Circuit]
    """Circuits, oldest first."""
    next_page_token: str
    """Token of the next page; empty on the last one."""


def _order_key(circuit: Circuit) -> tuple[str, str]:
    return (circuit.create_time.isoformat(), circuit.id)


def _encode_token(circuit: Circuit) -> str:
    raw = "\n".join(_order_key(circuit)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created, circuit_id = raw.split("\n")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument("malformed page_token", reason="INVALID_PAGE_TOKEN") from exc
    return created, circuit_id


class CircuitRegistry:
    """All open circuits. Every change is persisted before it is announced to listeners."""

    def __init__(
        self,
        *,
        store: CircuitStore,
        port_range: tuple[int, int],
        port_probe: PortProbe,
        upstream_roots: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._ports = range(port_range[0], port_range[1] + 1)
        self._probe = port_probe
        self._roots = tuple(PurePosixPath(r) for r in upstream_roots)
        self._circuits: dict[str, Circuit] = {}
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []

    async def start(self) -> None:
        """Loads the stored circuits (a restarted coordinator serves the same config)."""
        loaded = await self._store.load()
        self._circuits = {c.id: c for c in sorted(loaded, key=_order_key)}
        log.info("loaded %d circuit(s) from the state file", len(self._circuits))

    # ----- reading ---------------------------------------------------------------------

    def get(self, circuit_id: str) -> Circuit | None:
        """The circuit, or None."""
        return self._circuits.get(circuit_id)

    def require(self, circuit_id: str) -> Circuit:
        """The circuit; NotFound otherwise."""
        circuit = self._circuits.get(circuit_id)
        if circuit is None:
            raise NotFound(f"circuit {circuit_id!r} not found", reason="CIRCUIT_NOT_FOUND")
        return circuit

    def all(self) -> tuple[Circuit, ...]:
        """Every circuit, oldest first."""
        return tuple(self._circuits.values())

    def list_page(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        session_id: str = "",
        owner_access_key: str = "",
    ) -> CircuitPage:
        """A page of circuits, oldest first, optionally of one session or owner."""
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _decode_token(page_token) if page_token else None
        matches = [
            c
            for c in self._circuits.values()
            if (not session_id or c.spec.session_id == session_id)
            and (not owner_access_key or c.spec.owner_access_key == owner_access_key)
            and (after is None or _order_key(c) > after)
        ]
        page = matches[:size]
        more = len(matches) > size
        return CircuitPage(page, _encode_token(page[-1]) if more else "")

    # ----- changes ---------------------------------------------------------------------

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls ``callback`` after every persisted change; returns the unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def create(self, spec: CircuitSpec) -> tuple[Circuit, bool]:
        """Opens a circuit, or returns the identical one for (kernel_id, app) with True."""
        validate_spec(spec, self._roots)
        async with self._lock:
            existing = next(
                (
                    c
                    for c in self._circuits.values()
                    if c.spec.kernel_id == spec.kernel_id and c.spec.app == spec.app
                ),
                None,
            )
            if existing is not None:
                if existing.spec == spec:
                    return existing, True
                raise AlreadyExists(
                    f"kernel {spec.kernel_id} already has a different circuit for app "
                    f"{spec.app!r} ({existing.id})",
                    reason="CIRCUIT_EXISTS",
                    metadata={"circuit_id": existing.id},
                )
            is_http = spec.protocol is Protocol.HTTP
            circuit = Circuit(
                id=str(uuid.uuid4()),
                spec=spec,
                token=secrets.token_urlsafe(24) if is_http else "",
                permit=secrets.token_urlsafe(24) if is_http else "",
                frontend_port=(
                    self._free_port() if spec.frontend_mode is FrontendMode.PORT else None
                ),
                create_time=datetime.now(UTC),
            )
            await self._commit({**self._circuits, circuit.id: circuit})
        log.info(
            "opened circuit %s: %s %s of kernel %s (session %s) on %s",
            circuit.id,
            spec.protocol,
            spec.app,
            spec.kernel_id,
            spec.session_id,
            f"port {circuit.frontend_port}" if circuit.frontend_port else "its subdomain",
        )
        return circuit, False

    async def delete(self, circuit_id: str, *, allow_missing: bool = False) -> bool:
        """Closes a circuit; False when it did not exist and ``allow_missing`` is set."""
        async with self._lock:
            if circuit_id not in self._circuits:
                if allow_missing:
                    return False
                self.require(circuit_id)
            remaining = {k: v for k, v in self._circuits.items() if k != circuit_id}
            await self._commit(remaining)
        log.info("closed circuit %s", circuit_id)
        return True

    async def delete_for_session(self, session_id: str) -> list[str]:
        """Closes every circuit of a session; returns their ids."""
        if not session_id:
            raise InvalidArgument("session_id is required")
        async with self._lock:
            doomed = [c.id for c in self._circuits.values() if c.spec.session_id == session_id]
            if doomed:
                remaining = {k: v for k, v in self._circuits.items() if k not in doomed}
                await self._commit(remaining)
        if doomed:
            log.info("closed %d circuit(s) of session %s", len(doomed), session_id)
        return doomed

    def _free_port(self) -> int:
        taken = {c.frontend_port for c in self._circuits.values()}
        for port in self._ports:
            if port not in taken and self._probe(port):
                return port
        raise ResourceExhausted(
            f"no free frontend port in {self._ports.start}-{self._ports.stop - 1}",
            reason="NO_FREE_PORT",
        )

    async def _commit(self, circuits: dict[str, Circuit]) -> None:
        await self._store.save(list(circuits.values()))
        self._circuits = circuits
        for callback in list(self._listeners):
            callback()

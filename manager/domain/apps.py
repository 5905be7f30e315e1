"""Apps in sessions: start one in the main kernel (agent), open a circuit to it (app proxy),
and close a session's circuits when it ends.

A circuit dies with its session: the reaper closes a session's circuits on the event that it
is terminating. Events missed while the coordinator was unreachable (or while this manager
was down) are caught by a sweep: it lists the coordinator's circuits and closes those whose
session is gone or closing. The sweep runs at start, every ``sweep_interval_s``, and, after a
call to the coordinator failed, every ``retry_interval_s`` until one succeeds — so orphans
are gone within seconds of the coordinator coming back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

from bai.common.errors import BaiError, FailedPrecondition
from bai.manager.domain.errors import AgentUnavailable, NotAllowed, SessionNotRunning
from bai.manager.domain.events import SessionChanged
from bai.manager.domain.model import (
    TERMINAL_STATES,
    AgentStatus,
    Principal,
    Role,
    SessionState,
)
from bai.manager.domain.ports import (
    AccountRepository,
    AgentRepository,
    EventBus,
    SessionRepository,
)
from bai.manager.domain.sessions import SessionService

__all__ = ["AgentApp", "AppEndpoint", "AppService", "CircuitClient", "CircuitSpec"]

log = logging.getLogger(__name__)
_CLOSING = TERMINAL_STATES | {SessionState.TERMINATING}


@dataclass(frozen=True, slots=True)
class AgentApp:
    """An app the agent started: where it listens on the agent host."""

    socket_path: str
    protocol: str
    ssh_private_key: str = ""
    ssh_user: str = ""


@dataclass(frozen=True, slots=True)
class CircuitSpec:
    session_id: uuid.UUID
    kernel_id: uuid.UUID
    app: str
    protocol: str
    socket_path: str
    owner_access_key: str
    owner_user_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class AppEndpoint:
    """Where a user reaches an app."""

    url: str
    host: str
    port: int
    token: str
    protocol: str
    circuit_id: str
    ssh_private_key: str = ""
    ssh_user: str = ""


class AppAgentClient(Protocol):
    async def start_service(self, address: str, kernel_id: str, service: str,
                            environ: dict[str, str], arguments: list[str]) -> AgentApp: ...


class CircuitClient(Protocol):
    async def create_circuit(self, spec: CircuitSpec) -> AppEndpoint: ...

    async def delete_for_session(self, session_id: uuid.UUID) -> list[str]: ...

    async def session_ids(self) -> set[uuid.UUID]:
        """Sessions that have at least one open circuit."""
        ...


class AppService:
    def __init__(self, sessions: SessionService, agents: AgentRepository,
                 accounts: AccountRepository, agent_client: AppAgentClient,
                 circuits: CircuitClient | None, *,
                 session_repo: SessionRepository | None = None,
                 sweep_interval_s: float = 60.0, retry_interval_s: float = 3.0) -> None:
        self._sessions = sessions
        self._agents = agents
        self._accounts = accounts
        self._agent_client = agent_client
        self._circuits = circuits
        self._session_repo = session_repo
        """Without it the sweep is off (only events close circuits)."""
        self._sweep_interval_s = sweep_interval_s
        self._retry_interval_s = retry_interval_s

    async def start(self, who: Principal, ref: str, service: str, environ: dict[str, str],
                    arguments: list[str], *, raw_tcp: bool = False) -> AppEndpoint:
        """Starts ``service`` in the session's main kernel and opens a circuit to it.

        ``raw_tcp`` opens a TCP circuit even to an HTTP app, under the name ``<service>.tcp``
        (so it coexists with the app's HTTP circuit): byte tunnels that authenticated the user
        themselves use it, as the official client's ``app`` command does through the gateway.
        """
        if who.role is Role.MONITOR:
            raise NotAllowed("monitors have read-only access")
        if self._circuits is None:
            raise FailedPrecondition("apps need the app proxy: this manager runs without "
                                     "--appproxy", reason="NO_APP_PROXY")
        session = await self._sessions.get(who, ref)
        kernel = session.main_kernel
        if session.state is not SessionState.RUNNING or kernel is None or not kernel.agent_id:
            raise SessionNotRunning(f"session {session.name} is {session.state}, not RUNNING",
                                    metadata={"state": session.state.value})
        agent = await self._agents.get(kernel.agent_id)
        if agent is None or agent.status is not AgentStatus.ALIVE:
            raise AgentUnavailable(f"agent {kernel.agent_id} of kernel {kernel.id} is not alive")
        app = await self._agent_client.start_service(agent.address, str(kernel.id), service,
                                                     environ, arguments)
        self._sessions.note_activity(session.id)  # opening an app is use (idle timeout)
        # The circuit belongs to the session's owner, whoever (e.g. an admin) opened it.
        owner = await self._accounts.get_keypair(session.access_key)
        protocol, circuit_app = app.protocol, service
        if raw_tcp and app.protocol != "tcp":
            protocol, circuit_app = "tcp", f"{service}.tcp"
        endpoint = await self._circuits.create_circuit(CircuitSpec(
            session_id=session.id, kernel_id=kernel.id, app=circuit_app, protocol=protocol,
            socket_path=app.socket_path, owner_access_key=session.access_key,
            owner_user_id=owner.user_id if owner is not None else None))
        log.info("session %s: app %s at %s (circuit %s)", session.id, service,
                 endpoint.url.split("?", 1)[0], endpoint.circuit_id)
        return dataclasses.replace(endpoint, ssh_private_key=app.ssh_private_key,
                                   ssh_user=app.ssh_user)

    async def sweep_orphan_circuits(self) -> list[str]:
        """Closes the circuits of sessions that are gone or closing; returns their ids.

        Raises the coordinator's error (e.g. Unavailable) when it cannot be reached.
        """
        if self._circuits is None or self._session_repo is None:
            return []
        closed: list[str] = []
        for session_id in sorted(await self._circuits.session_ids()):
            record = await self._session_repo.get(session_id)
            if record is not None and record.state not in _CLOSING:
                continue
            ids = await self._circuits.delete_for_session(session_id)
            if ids:
                log.info("session %s is %s: swept its circuits %s", session_id,
                         record.state if record is not None else "gone", ", ".join(ids))
            closed += ids
        return closed

    async def run_circuit_reaper(self, bus: EventBus) -> None:
        """Closes a session's circuits once it terminates, and sweeps orphans (runs until
        cancelled)."""
        if self._circuits is None:
            return
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()  # at start: events may have been missed while we were down
        async with bus.subscribe() as events:
            while True:
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + await self._sweep_once()
                event = await events.next(max(next_sweep - loop.time(), 0.0))
                if not isinstance(event, SessionChanged) or event.state not in _CLOSING:
                    continue
                try:
                    closed = await self._circuits.delete_for_session(event.session_id)
                except BaiError as exc:
                    log.warning("session %s: closing its circuits failed (swept later): %s",
                                event.session_id, exc)
                    next_sweep = min(next_sweep, loop.time() + self._retry_interval_s)
                    continue
                if closed:
                    log.info("session %s: closed circuits %s", event.session_id,
                             ", ".join(closed))

    async def _sweep_once(self) -> float:
        """One sweep; the delay until the next (short after a failure)."""
        try:
            await self.sweep_orphan_circuits()
        except BaiError as exc:
            log.warning("sweeping orphan circuits failed (retrying in %.0f s): %s",
                        self._retry_interval_s, exc)
            return self._retry_interval_s
        except Exception:  # e.g. the database: the reaper must outlive it
            log.exception("sweeping orphan circuits failed (retrying in %.0f s)",
                          self._retry_interval_s)
            return self._retry_interval_s
        return self._sweep_interval_s

"""Apps in sessions: start one in the main kernel (agent), open a circuit to it (app proxy),
and close a session's circuits when it ends."""

from __future__ import annotations

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
from bai.manager.domain.ports import AccountRepository, AgentRepository, EventBus
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


class AppService:
    def __init__(self, sessions: SessionService, agents: AgentRepository,
                 accounts: AccountRepository, agent_client: AppAgentClient,
                 circuits: CircuitClient | None) -> None:
        self._sessions = sessions
        self._agents = agents
        self._accounts = accounts
        self._agent_client = agent_client
        self._circuits = circuits

    async def start(self, who: Principal, ref: str, service: str, environ: dict[str, str],
                    arguments: list[str]) -> AppEndpoint:
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
        # The circuit belongs to the session's owner, whoever (e.g. an admin) opened it.
        owner = await self._accounts.get_keypair(session.access_key)
        endpoint = await self._circuits.create_circuit(CircuitSpec(
            session_id=session.id, kernel_id=kernel.id, app=service, protocol=app.protocol,
            socket_path=app.socket_path, owner_access_key=session.access_key,
            owner_user_id=owner.user_id if owner is not None else None))
        log.info("session %s: app %s at %s (circuit %s)", session.id, service,
                 endpoint.url.split("?", 1)[0], endpoint.circuit_id)
        return dataclasses.replace(endpoint, ssh_private_key=app.ssh_private_key,
                                   ssh_user=app.ssh_user)

    async def run_circuit_reaper(self, bus: EventBus) -> None:
        """Closes a session's circuits once it terminates (runs until cancelled)."""
        if self._circuits is None:
            return
        async with bus.subscribe() as events:
            while True:
                event = await events.next(3600.0)
                if not isinstance(event, SessionChanged) or event.state not in _CLOSING:
                    continue
                try:
                    closed = await self._circuits.delete_for_session(event.session_id)
                except BaiError as exc:
                    log.warning("session %s: closing its circuits failed: %s",
                                event.session_id, exc)
                    continue
                if closed:
                    log.info("session %s: closed circuits %s", event.session_id,
                             ", ".join(closed))

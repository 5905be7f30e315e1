"""Sessions a previous manager process left mid-transition (PREPARING, CREATING, RESTARTING).

The agent is asked what it holds (ListKernels):
- the kernel runs → RUNNING (reason KernelRecovered), container id recorded;
- the agent is still creating it → look again later;
- it exited → handled like a kernel exit (batch result, or ERROR);
- it is absent → PREPARING/CREATING: the creation is issued again; RESTARTING: ERROR KernelLost.
While the agent is not ALIVE the session waits, at most ``grace`` seconds after this process
started; then it goes to ERROR with reason AgentUnavailable. Nothing is left silently stuck.
"""

from __future__ import annotations

import logging
import time
import uuid

from bai.common.errors import BaiError
from bai.manager.domain.errors import IllegalTransition
from bai.manager.domain.lifecycle.kernel_exit import KernelExitHandler
from bai.manager.domain.lifecycle.start import StartHandler
from bai.manager.domain.model import AgentStatus, SessionRecord, SessionState
from bai.manager.domain.ports import AgentClient, AgentRepository
from bai.manager.domain.transitions import Transitions

__all__ = ["ResumeHandler"]

log = logging.getLogger(__name__)
S = SessionState
_BEFORE_CREATING = frozenset({S.PREPARING, S.PULLING, S.PREPARED})


class ResumeHandler:
    consumes = frozenset({S.PREPARING, S.PULLING, S.PREPARED, S.CREATING, S.RESTARTING})

    def __init__(
        self,
        agents: AgentRepository,
        client: AgentClient,
        moves: Transitions,
        start: StartHandler,
        exits: KernelExitHandler,
        *,
        grace: float,
    ) -> None:
        self._agents = agents
        self._client = client
        self._moves = moves
        self._start = start
        self._exits = exits
        self._grace = grace
        self._since = time.monotonic()

    async def run(self, session: SessionRecord) -> None:
        kernel = session.main_kernel
        agent = await self._agents.get(kernel.agent_id) if kernel and kernel.agent_id else None
        held = None
        if kernel is not None and agent is not None and agent.status is AgentStatus.ALIVE:
            try:
                held = await self._client.list_kernels(agent.address)
            except BaiError as exc:
                log.info("resume of session %s: agent %s did not answer: %s",
                         session.id, agent.id, exc.message)
        if kernel is None or agent is None or held is None:
            await self._maybe_give_up(session)
            return
        on_agent = {k.kernel_id: k for k in held}
        found = {k.id: on_agent.get(str(k.id)) for k in session.kernels}
        states = {f.state if f is not None else "absent" for f in found.values()}
        if states == {"running"}:
            await self._settle(session, S.RUNNING, "KernelRecovered",
                               f"{len(found)} kernel(s) found running on agent {agent.id} "
                               "after a manager restart",
                               container_ids={kid: f.container_id
                                              for kid, f in found.items() if f is not None})
        elif "creating" in states:
            return
        elif states - {"running", "absent"}:  # some kernel exited
            exited = next(f for f in found.values()
                          if f is not None and f.state not in ("running", "creating"))
            if await self._exits.on_exit(agent.id, exited.kernel_id, exited.exit_code,
                                         "found exited after a manager restart") is None:
                await self._settle(session, S.ERROR, "KernelLost",
                                   f"kernel {exited.kernel_id} exited while the manager was down")
        elif session.state is S.RESTARTING:
            await self._settle(session, S.ERROR, "KernelLost",
                               f"agent {agent.id} no longer holds every kernel of the session")
        else:  # some kernels absent: issue the creation again (running ones are adopted)
            log.info("resuming creation of session %s on agent %s", session.id, agent.id)
            if session.state in (S.PULLING, S.PREPARED):
                session = await self._moves.move(session.id, session.state, S.CREATING,
                                                 "CreatingKernel", "resumed after a restart")
            await self._start.create(session)

    async def _maybe_give_up(self, session: SessionRecord) -> None:
        if time.monotonic() - self._since < self._grace:
            return
        kernel = session.main_kernel
        where = f"agent {kernel.agent_id}" if kernel and kernel.agent_id else "no agent"
        await self._settle(session, S.ERROR, "AgentUnavailable",
                           f"{where} did not come back within {self._grace:.0f} s of a "
                           f"manager restart while the session was {session.state}")

    async def _settle(
        self,
        session: SessionRecord,
        target: SessionState,
        reason: str,
        message: str,
        container_ids: dict[uuid.UUID, str] | None = None,
    ) -> None:
        try:
            if target is S.RUNNING and session.state in _BEFORE_CREATING:
                session = await self._moves.move(session.id, session.state, S.CREATING,
                                                 "CreatingKernel", "resumed after a restart")
            await self._moves.move(session.id, session.state, target, reason, message,
                                   container_ids=container_ids)
        except IllegalTransition:
            pass

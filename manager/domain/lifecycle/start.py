"""SCHEDULED → PREPARING → CREATING → RUNNING: creates the session's kernel on its agent.

Success: RUNNING (reason KernelStarted) with the container id recorded. Give-up: ERROR with
ImageNotFound (the agent lacks the image) or KernelCreationFailed (the agent's message); the
slots are released by the transition. If the session left CREATING meanwhile (deleted, or a
batch command already finished), the kernel just created is destroyed again.
"""

from __future__ import annotations

import logging

from bai.common.errors import AlreadyExists, BaiError, NotFound, Unavailable
from bai.manager.domain.errors import IllegalTransition
from bai.manager.domain.model import (
    AgentRecord,
    CreatedKernel,
    KernelCreation,
    KernelRecord,
    SessionRecord,
    SessionState,
)
from bai.manager.domain.ports import AgentClient, AgentRepository
from bai.manager.domain.transitions import Transitions

__all__ = ["StartHandler", "kernel_creation"]

log = logging.getLogger(__name__)
S = SessionState
CREATABLE = frozenset({S.PREPARING, S.CREATING})


def kernel_creation(session: SessionRecord, kernel: KernelRecord) -> KernelCreation:
    environ = {
        **session.spec.environ,
        "BACKENDAI_SESSION_ID": str(session.id),
        "BACKENDAI_SESSION_NAME": session.name,
        "BACKENDAI_KERNEL_ID": str(kernel.id),
        "BACKENDAI_ACCESS_KEY": session.access_key,
    }
    return KernelCreation(
        kernel_id=kernel.id,
        session_id=session.id,
        image=session.spec.image,
        slots=dict(kernel.occupied_slots or session.spec.resources),
        environ=environ,
        session_type=session.spec.session_type,
        startup_command=session.spec.startup_command,
        batch_timeout_seconds=session.spec.batch_timeout_seconds,
        cluster_role=kernel.cluster_role,
        cluster_idx=kernel.cluster_idx,
        mounts=session.spec.mounts,
    )


class StartHandler:
    consumes = frozenset({S.SCHEDULED})

    def __init__(self, agents: AgentRepository, client: AgentClient, moves: Transitions) -> None:
        self._agents = agents
        self._client = client
        self._moves = moves

    async def run(self, session: SessionRecord) -> None:
        kernel = session.main_kernel
        try:
            session = await self._moves.move(
                session.id, S.SCHEDULED, S.PREPARING, "Preparing",
                f"agent {kernel.agent_id if kernel else '?'} prepares the kernel",
            )
        except IllegalTransition:
            return  # somebody else moved it (cancelled, or another worker)
        await self.create(session)

    async def create(self, session: SessionRecord) -> None:
        """Creates the kernel of a PREPARING (or, when resumed, CREATING) session."""
        kernel = session.main_kernel
        agent = await self._agents.get(kernel.agent_id) if kernel and kernel.agent_id else None
        if kernel is None or agent is None:
            await self._fail(session, "AgentUnavailable", "the session has no placed kernel")
            return
        if session.state is S.PREPARING:
            try:
                session = await self._moves.move(
                    session.id, S.PREPARING, S.CREATING, "CreatingKernel",
                    f"creating kernel {kernel.id} on agent {agent.id}",
                )
            except IllegalTransition:
                return
        created = await self._create_on(agent, session, kernel)
        if created is None:
            return
        try:
            await self._moves.move(
                session.id, S.CREATING, S.RUNNING, "KernelStarted",
                f"kernel {kernel.id} runs in container {created.container_id[:12]} "
                f"on agent {agent.id}",
                container_ids={kernel.id: created.container_id},
            )
        except IllegalTransition as exc:
            log.info("session %s left CREATING while its kernel started (%s); destroying kernel %s",
                     session.id, exc.message, kernel.id)
            await self._discard(agent, kernel, "session no longer wants the kernel")

    async def _create_on(
        self, agent: AgentRecord, session: SessionRecord, kernel: KernelRecord
    ) -> CreatedKernel | None:
        try:
            return await self._client.create_kernel(agent.address, kernel_creation(session, kernel))
        except NotFound as exc:
            await self._fail(session, "ImageNotFound", f"agent {agent.id}: {exc.message}")
        except AlreadyExists:
            adopted = await self._adopt(agent, kernel)
            if adopted is not None:
                return adopted
            await self._fail(session, "KernelCreationFailed",
                             f"agent {agent.id} holds kernel {kernel.id} but it is not running")
        except BaiError as exc:
            await self._fail(session, "KernelCreationFailed", f"agent {agent.id}: {exc.message}")
            if isinstance(exc, Unavailable):  # it may still come up on the agent
                await self._discard(agent, kernel, "kernel creation failed")
        return None

    async def _adopt(self, agent: AgentRecord, kernel: KernelRecord) -> CreatedKernel | None:
        """The agent already has the kernel (a resumed creation): use it if it runs."""
        try:
            held = await self._client.list_kernels(agent.address)
        except BaiError:
            return None
        found = next((k for k in held if k.kernel_id == str(kernel.id)), None)
        if found is None or found.state != "running":
            return None
        return CreatedKernel(container_id=found.container_id)

    async def _fail(self, session: SessionRecord, reason: str, message: str) -> None:
        try:
            await self._moves.move(session.id, CREATABLE, S.ERROR, reason, message)
        except IllegalTransition:
            log.info("session %s already left creation; not marking %s", session.id, reason)

    async def _discard(self, agent: AgentRecord, kernel: KernelRecord, reason: str) -> None:
        try:
            await self._client.destroy_kernel(agent.address, str(kernel.id), reason)
        except BaiError as exc:
            log.warning("could not destroy kernel %s on agent %s: %s (it is reconciled when "
                        "the agent registers again)", kernel.id, agent.id, exc.message)

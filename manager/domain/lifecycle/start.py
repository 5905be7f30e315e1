"""SCHEDULED → PREPARING → CREATING → RUNNING: creates the session's kernels on their agent.

A cluster session (``cluster_size`` N, single-node) has N kernels on one agent: the main kernel
is created first with its own network namespace (no network) and the cluster hostnames in its
/etc/hosts; the sub kernels are then created concurrently, each joining the main kernel's
namespace, so every kernel reaches the others on 127.0.0.1. Every kernel gets the cluster's
layout in its environment (``BACKENDAI_CLUSTER_*``).

Creation is all-or-nothing. Success: RUNNING (reason KernelStarted) with every container id
recorded. Give-up: every kernel of the session is destroyed on the agent (also the ones that
did start, so no container is orphaned), then ERROR with ImageNotFound (the agent lacks the
image) or KernelCreationFailed (the agent's message); the slots are released by the transition.
If the session left CREATING meanwhile (deleted, or a batch command already finished), the
kernels just created are destroyed again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from bai.common.errors import AlreadyExists, BaiError, NotFound
from bai.manager.domain.errors import IllegalTransition
from bai.manager.domain.model import (
    AgentRecord,
    CreatedKernel,
    KernelCreation,
    KernelRecord,
    SessionRecord,
    SessionState,
    SessionType,
)
from bai.manager.domain.ports import AgentClient, AgentRepository
from bai.manager.domain.transitions import Transitions

__all__ = ["StartHandler", "cluster_hostname", "kernel_creation"]

log = logging.getLogger(__name__)
S = SessionState
CREATABLE = frozenset({S.PREPARING, S.CREATING})


def cluster_hostname(kernel: KernelRecord) -> str:
    """Backend.AI's kernel hostnames: main1, sub1, sub2, ..."""
    return f"{kernel.cluster_role}{kernel.cluster_idx}"


def _ordered(session: SessionRecord) -> list[KernelRecord]:
    """Main kernel first, then the subs by index."""
    return sorted(session.kernels, key=lambda k: (k.cluster_role != "main", k.cluster_idx))


def kernel_creation(session: SessionRecord, kernel: KernelRecord) -> KernelCreation:
    kernels = _ordered(session)
    hosts = [cluster_hostname(k) for k in kernels]
    main = session.main_kernel
    is_sub = main is not None and kernel.id != main.id
    environ = {
        **session.spec.environ,
        "BACKENDAI_SESSION_ID": str(session.id),
        "BACKENDAI_SESSION_NAME": session.name,
        "BACKENDAI_KERNEL_ID": str(kernel.id),
        "BACKENDAI_ACCESS_KEY": session.access_key,
        "BACKENDAI_CLUSTER_MODE": session.spec.cluster_mode,
        "BACKENDAI_CLUSTER_SIZE": str(len(kernels)),
        "BACKENDAI_CLUSTER_ROLE": kernel.cluster_role,
        "BACKENDAI_CLUSTER_IDX": str(kernel.cluster_idx),
        "BACKENDAI_CLUSTER_HOST": cluster_hostname(kernel),
        "BACKENDAI_CLUSTER_HOSTS": ",".join(hosts),
    }
    return KernelCreation(
        kernel_id=kernel.id,
        session_id=session.id,
        image=session.spec.image,
        slots=dict(kernel.occupied_slots or session.spec.resources),
        environ=environ,
        # A batch session's command runs in its main kernel; the subs just serve it.
        session_type=SessionType.INTERACTIVE if is_sub else session.spec.session_type,
        startup_command=session.spec.startup_command if not is_sub else "",
        batch_timeout_seconds=session.spec.batch_timeout_seconds,
        cluster_role=kernel.cluster_role,
        cluster_idx=kernel.cluster_idx,
        mounts=session.spec.mounts,
        network_kernel_id=main.id if is_sub and main is not None else None,
        cluster_hostnames=tuple(hosts) if len(kernels) > 1 and not is_sub else (),
    )


class _CreationFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


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
                f"agent {kernel.agent_id if kernel else '?'} prepares "
                f"{len(session.kernels)} kernel(s)",
            )
        except IllegalTransition:
            return  # somebody else moved it (cancelled, or another worker)
        await self.create(session)

    async def create(self, session: SessionRecord) -> None:
        """Creates the kernels of a PREPARING (or, when resumed, CREATING) session."""
        main = session.main_kernel
        agent = await self._agents.get(main.agent_id) if main and main.agent_id else None
        if main is None or agent is None:
            await self._fail(session, "AgentUnavailable", "the session has no placed kernel")
            return
        if any(k.agent_id != agent.id for k in session.kernels):
            await self._fail(session, "PlacementInconsistent",
                             "the kernels of a single-node cluster session are on several agents")
            return
        if session.state is S.PREPARING:
            try:
                session = await self._moves.move(
                    session.id, S.PREPARING, S.CREATING, "CreatingKernel",
                    f"creating {len(session.kernels)} kernel(s) on agent {agent.id}",
                )
            except IllegalTransition:
                return
        try:
            created = await self._create_all(agent, session)
        except _CreationFailed as exc:
            await self._discard(agent, session, "kernel creation failed")
            await self._fail(session, exc.reason, exc.message)
            return
        hosts = {k.id: cluster_hostname(k) for k in session.kernels}
        where = ", ".join(f"{hosts[k]} ({k}) in container {c[:12]}" for k, c in created.items())
        try:
            await self._moves.move(
                session.id, S.CREATING, S.RUNNING, "KernelStarted",
                f"on agent {agent.id}: {where}", container_ids=created,
            )
        except IllegalTransition as exc:
            log.info("session %s left CREATING while its kernels started (%s); destroying them",
                     session.id, exc.message)
            await self._discard(agent, session, "session no longer wants the kernels")

    async def _create_all(self, agent: AgentRecord, session: SessionRecord) -> dict[uuid.UUID, str]:
        """Main kernel, then the subs concurrently; raises _CreationFailed on the first error
        (after every started call has returned, so that none is still creating)."""
        main, *subs = _ordered(session)
        created = {main.id: (await self._create_one(agent, session, main)).container_id}
        results = await asyncio.gather(*(self._create_one(agent, session, k) for k in subs),
                                       return_exceptions=True)
        for kernel, result in zip(subs, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            created[kernel.id] = result.container_id
        return created

    async def _create_one(
        self, agent: AgentRecord, session: SessionRecord, kernel: KernelRecord
    ) -> CreatedKernel:
        try:
            return await self._client.create_kernel(agent.address, kernel_creation(session, kernel))
        except NotFound as exc:
            raise _CreationFailed("ImageNotFound", f"agent {agent.id}: {exc.message}") from exc
        except AlreadyExists as exc:
            adopted = await self._adopt(agent, kernel)
            if adopted is not None:
                return adopted
            raise _CreationFailed("KernelCreationFailed", f"agent {agent.id} holds kernel "
                                  f"{kernel.id} but it is not running") from exc
        except BaiError as exc:
            raise _CreationFailed("KernelCreationFailed",
                                  f"agent {agent.id}: kernel {kernel.id} "
                                  f"({cluster_hostname(kernel)}): {exc.message}") from exc

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

    async def _discard(self, agent: AgentRecord, session: SessionRecord, reason: str) -> None:
        """Destroys every kernel of the session on the agent (unknown ones are no error)."""
        kernels = [(str(k.id), reason) for k in _ordered(session)]
        try:
            results = await self._client.destroy_kernels(agent.address, kernels)
        except BaiError as exc:
            log.warning("could not destroy the kernels of session %s on agent %s: %s (they are "
                        "reconciled when the agent reports its kernels)", session.id, agent.id,
                        exc.message)
            return
        for kernel_id, _, error in results:
            if error:
                log.warning("could not destroy kernel %s on agent %s: %s", kernel_id, agent.id,
                            error)

"""Domain events. An event only says "look again": handlers re-read state from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bai.manager.domain.model import AgentStatus, SessionState

__all__ = ["AgentChanged", "CredentialsChanged", "Event", "SessionChanged"]


@dataclass(frozen=True, slots=True)
class SessionChanged:
    """A session entered ``state`` (or, for PENDING, was enqueued)."""

    session_id: uuid.UUID
    state: SessionState
    reason: str


@dataclass(frozen=True, slots=True)
class AgentChanged:
    """An agent registered, came back, or was marked LOST: capacity may have changed."""

    agent_id: str
    status: AgentStatus


@dataclass(frozen=True, slots=True)
class CredentialsChanged:
    """Users, keypairs or memberships changed: every replica drops its cached credentials."""


Event = SessionChanged | AgentChanged | CredentialsChanged

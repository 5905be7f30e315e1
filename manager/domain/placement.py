"""A placement decision: one session onto one agent with the slots it reserves there."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bai.manager.domain.model import Slots

__all__ = ["Placement"]


@dataclass(frozen=True, slots=True)
class Placement:
    session_id: uuid.UUID
    agent_id: str
    slots: Slots
    """Everything the session reserves on the agent (all its kernels together)."""
    kernel_slots: Slots | None = None
    """What each kernel reserves (None: ``slots``, a single-kernel session)."""

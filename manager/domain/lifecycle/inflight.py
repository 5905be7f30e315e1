"""Which sessions this process is working on right now (so no two handlers race on one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["InFlight"]


class InFlight:
    def __init__(self) -> None:
        self._ids: set[uuid.UUID] = set()

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._ids

    def try_claim(self, session_id: uuid.UUID) -> bool:
        if session_id in self._ids:
            return False
        self._ids.add(session_id)
        return True

    def release(self, session_id: uuid.UUID) -> None:
        self._ids.discard(session_id)

    @contextmanager
    def hold(self, session_id: uuid.UUID) -> Iterator[None]:
        """Marks the session busy for the block (re-entrant claims by others are not checked)."""
        added = self.try_claim(session_id)
        try:
            yield
        finally:
            if added:
                self.release(session_id)

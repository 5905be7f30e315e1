"""Helpers for the manager's long-running loops."""

from __future__ import annotations

import asyncio

__all__ = ["stop_requested"]


def stop_requested() -> bool:
    """True once the current task was cancelled, even if a library swallowed the
    CancelledError (a loop that checks this still stops)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

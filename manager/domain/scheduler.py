"""The scheduler (kept at this path for existing imports): see :mod:`bai.manager.domain.scheduling`.

``FifoScheduler`` is the name the composition root and tests used before resource groups had a
choice of scheduler plugins; it is the same :class:`SessionScheduler`, whose default queue order
is still FIFO.
"""

from __future__ import annotations

from bai.manager.domain.scheduling.dispatcher import INSUFFICIENT, SessionScheduler

__all__ = ["INSUFFICIENT", "FifoScheduler", "SessionScheduler"]

FifoScheduler = SessionScheduler

"""Session lifecycle: one reconcile handler per file, driven by :class:`LifecycleEngine`.

Each handler re-reads the session from the database and moves it with a state-checked
transition; an event only means "look again".
"""

from bai.manager.domain.lifecycle.batched_moves import BatchedMoves
from bai.manager.domain.lifecycle.destroyer import KernelDestroyer
from bai.manager.domain.lifecycle.engine import EngineConfig, LifecycleEngine
from bai.manager.domain.lifecycle.expiry import ActivityTracker, ExpiryHandler
from bai.manager.domain.lifecycle.inflight import InFlight
from bai.manager.domain.lifecycle.kernel_exit import KernelExitHandler
from bai.manager.domain.lifecycle.resume import ResumeHandler
from bai.manager.domain.lifecycle.start import StartHandler
from bai.manager.domain.lifecycle.terminate import TerminateHandler

__all__ = [
    "ActivityTracker",
    "BatchedMoves",
    "EngineConfig",
    "ExpiryHandler",
    "InFlight",
    "KernelDestroyer",
    "KernelExitHandler",
    "LifecycleEngine",
    "ResumeHandler",
    "StartHandler",
    "TerminateHandler",
]

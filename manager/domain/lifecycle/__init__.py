"""Session lifecycle: one reconcile handler per file, driven by :class:`LifecycleEngine`.

Each handler re-reads the session from the database and moves it with a state-checked
transition; an event only means "look again".
"""

from bai.manager.domain.lifecycle.engine import EngineConfig, LifecycleEngine
from bai.manager.domain.lifecycle.inflight import InFlight
from bai.manager.domain.lifecycle.kernel_exit import KernelExitHandler
from bai.manager.domain.lifecycle.resume import ResumeHandler
from bai.manager.domain.lifecycle.start import StartHandler
from bai.manager.domain.lifecycle.terminate import TerminateHandler

__all__ = [
    "EngineConfig",
    "InFlight",
    "KernelExitHandler",
    "LifecycleEngine",
    "ResumeHandler",
    "StartHandler",
    "TerminateHandler",
]

"""Manager domain: use cases, lifecycle handlers, scheduler, registry, ports and errors.

Imports no transport and no database library (checked by tests/manager/domain/test_layering.py).
"""

from bai.manager.domain.auth import Authenticator, SignedCall
from bai.manager.domain.images import ImageCatalog
from bai.manager.domain.registry import AgentRegistry, Registered, RegistryConfig
from bai.manager.domain.requests import CreateRequest
from bai.manager.domain.scheduling import SessionScheduler
from bai.manager.domain.sessions import Created, SessionsConfig, SessionService
from bai.manager.domain.transitions import Transitions

__all__ = [
    "AgentRegistry",
    "Authenticator",
    "CreateRequest",
    "Created",
    "ImageCatalog",
    "Registered",
    "RegistryConfig",
    "SessionScheduler",
    "SessionService",
    "SessionsConfig",
    "SignedCall",
    "Transitions",
]

"""gRPC servicers (thin) and the manager's interceptor."""

from bai.manager.api.images import ImageServicer
from bai.manager.api.interceptor import ManagerInterceptor, principal
from bai.manager.api.registry import AgentRegistryServicer
from bai.manager.api.sessions import SessionServicer

__all__ = [
    "AgentRegistryServicer",
    "ImageServicer",
    "ManagerInterceptor",
    "SessionServicer",
    "principal",
]

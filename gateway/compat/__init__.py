"""Backend.AI-compatible REST routes (what the official client 26.9.6 calls)."""

from bai.gateway.compat.apps import router as apps_router
from bai.gateway.compat.folders import router as folders_router
from bai.gateway.compat.sessions import router as sessions_router
from bai.gateway.compat.system import router as system_router

__all__ = ["apps_router", "folders_router", "sessions_router", "system_router"]

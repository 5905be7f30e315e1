"""Backend.AI-compatible REST routes (what the official client 26.9.6 calls)."""

from bai.gateway.compat.sessions import router as sessions_router
from bai.gateway.compat.system import router as system_router

__all__ = ["sessions_router", "system_router"]

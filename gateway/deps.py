"""FastAPI dependencies shared by the route modules."""

from __future__ import annotations

from typing import Annotated

from bai.gateway.upstream import Upstream
from fastapi import Depends
from starlette.requests import HTTPConnection

__all__ = ["UpstreamDep", "get_upstream"]


def get_upstream(conn: HTTPConnection) -> Upstream:
    """The app's manager connection (opened by the lifespan)."""
    upstream: Upstream = conn.app.state.upstream
    return upstream


UpstreamDep = Annotated[Upstream, Depends(get_upstream)]

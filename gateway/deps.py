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


async def _upstream_dependency(conn: HTTPConnection) -> Upstream:
    # ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in a worker
    # thread, which cost every request two thread hand-offs (found profiling P7).
    return get_upstream(conn)


UpstreamDep = Annotated[Upstream, Depends(_upstream_dependency)]

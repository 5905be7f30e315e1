"""FastAPI dependencies shared by the route modules."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Annotated, Any

from bai.gateway.upstream import Upstream
from fastapi import Depends
from starlette.requests import HTTPConnection

__all__ = ["UpstreamDep", "get_upstream", "upstream_of"]


def get_upstream(conn: HTTPConnection) -> Upstream:
    """The app's manager connection (opened by the lifespan)."""
    return upstream_of(conn.scope)


def upstream_of(scope: MutableMapping[str, Any]) -> Upstream:
    """:func:`get_upstream` from an ASGI scope (Starlette puts the app in ``scope["app"]``)."""
    upstream: Upstream = scope["app"].state.upstream
    return upstream


async def _upstream_dependency(conn: HTTPConnection) -> Upstream:
    # ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in a worker
    # thread, which cost every request two thread hand-offs (found profiling P7).
    return get_upstream(conn)


UpstreamDep = Annotated[Upstream, Depends(_upstream_dependency)]

"""What every handler needs (config, session store, gateway client) and the session cookie."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web
from bai.webserver.config import SESSION_COOKIE, WebserverConfig
from bai.webserver.sessions import SessionStore, WebSession
from bai.webserver.upstream import GatewayTarget

__all__ = ["CONTEXT", "WebContext", "clear_cookie", "current_session", "set_cookie"]


@dataclass(frozen=True, slots=True)
class WebContext:
    """The process's shared parts, built once by the app's cleanup context."""

    config: WebserverConfig
    target: GatewayTarget
    store: SessionStore
    http: aiohttp.ClientSession
    """One pooled client for every request to the gateway."""
    stream_timeout: aiohttp.ClientTimeout
    """For proxied requests: a connect limit only (SSE and downloads may last for hours)."""


CONTEXT = web.AppKey("bai.webserver.context", WebContext)


async def current_session(request: web.Request) -> tuple[str, WebSession] | None:
    """The request's live web session and its id, or None (no, forged or expired cookie)."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    # A token_urlsafe(32) id is 43 characters; anything far off is not ours (skip the lookup).
    if not 20 <= len(session_id) <= 128:
        return None
    session = await request.app[CONTEXT].store.get(session_id)
    return None if session is None else (session_id, session)


def set_cookie(request: web.Request, response: web.StreamResponse, session_id: str,
               max_age: int) -> None:
    """The httponly session cookie (``Secure`` when the request came over TLS)."""
    response.set_cookie(SESSION_COOKIE, session_id, max_age=max_age, path="/", httponly=True,
                        samesite="Lax", secure=request.secure)


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")

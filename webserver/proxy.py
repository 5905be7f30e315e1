"""``/func/{path}``: the gateway's API for cookie-session clients, re-signed per request.

Every method, bodies streamed both ways (uploads, downloads, SSE under ``/func/events/...``):
nothing is buffered beyond aiohttp's read chunks, and bytes pass untouched (no decompression).
The client's ``Cookie`` and any ``Authorization``/``Date`` it sent are dropped; the request is
signed with the session user's keypair (:func:`.upstream.signed_headers`) and the client's
address goes along in ``X-Forwarded-For``. WebSocket upgrades are handed to :mod:`.wsproxy`.

Without a live web session the answer is 401 in Backend.AI's JSON error shape; only the version
probe ``GET /func/`` is anonymous (the official client sends it before logging in).
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from bai.common.auth import API_VERSION
from bai.webserver.context import CONTEXT, current_session
from bai.webserver.problems import bad_gateway, unauthenticated
from bai.webserver.upstream import HOP_BY_HOP, signed_headers
from bai.webserver.wsproxy import is_websocket, proxy_websocket
from multidict import CIMultiDict

__all__ = ["routes"]

log = logging.getLogger(__name__)

_PREFIX = "/func"
_DROPPED_REQUEST = HOP_BY_HOP | {"host", "cookie", "authorization", "date", "x-backendai-date",
                                 "x-backendai-version", "expect"}
_DROPPED_RESPONSE = HOP_BY_HOP | {"set-cookie"}


def tail_of(request: web.Request) -> str:
    """The gateway-relative raw path and query: ``/func/session?x=1`` → ``/session?x=1``."""
    raw = request.raw_path
    tail = raw[len(_PREFIX):] if raw.startswith(_PREFIX) else raw
    return tail if tail.startswith("/") else "/" + tail


def _forwarded_for(request: web.Request) -> str:
    prior = request.headers.get("X-Forwarded-For")
    remote = request.remote or ""
    return f"{prior}, {remote}" if prior else remote


def forward_headers(request: web.Request) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop and credentials, plus X-Forwarded-For."""
    headers = CIMultiDict((k, v) for k, v in request.headers.items()
                          if k.lower() not in _DROPPED_REQUEST
                          and not k.lower().startswith("sec-websocket-"))
    headers["X-Forwarded-For"] = _forwarded_for(request)
    return headers


async def func(request: web.Request) -> web.StreamResponse:
    tail = tail_of(request)
    found = await current_session(request)
    anonymous_probe = request.method in ("GET", "HEAD") and tail.split("?", 1)[0] == "/"
    websocket = is_websocket(request)
    if found is None and (websocket or not anonymous_probe):
        return unauthenticated("log in first: POST /server/login")
    if websocket and found is not None:
        return await proxy_websocket(request, tail, found[1])
    ctx = request.app[CONTEXT]
    headers = forward_headers(request)
    version = request.headers.get("X-BackendAI-Version", API_VERSION)
    if found is not None:
        session = found[1]
        headers.update(signed_headers(
            ctx.target, method=request.method, tail=tail,
            content_type=request.headers.get("Content-Type"), api_version=version,
            access_key=session.access_key, secret_key=session.secret_key))
    body = request.content if request.body_exists else None
    response: web.StreamResponse | None = None
    try:
        async with ctx.http.request(request.method, ctx.target.url(tail), headers=headers,
                                    data=body, timeout=ctx.stream_timeout,
                                    allow_redirects=False) as reply:
            response = web.StreamResponse(status=reply.status, reason=reply.reason)
            for name, value in reply.headers.items():
                if name.lower() not in _DROPPED_RESPONSE:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in reply.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("%s %s: the gateway failed: %s", request.method, tail, exc)
        if response is not None and response.prepared:
            # Too late for an error response: cutting the connection tells the client the
            # body is incomplete (a short Content-Length or a missing last chunk).
            raise
        return bad_gateway(f"{request.method} {tail}: {exc}")


routes = [web.route("*", "/func{tail:(/.*)?}", func)]

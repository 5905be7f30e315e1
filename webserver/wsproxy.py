"""WebSockets under ``/func/stream/...``: the browser's socket spliced onto a signed one.

The gateway's handshake is made first, signed with the session user's keypair (WebSocket
requests sign ``application/octet-stream``: they carry no Content-Type). When the gateway
refuses the upgrade (bad session reference, permission), its HTTP answer (Backend.AI's JSON
error) is relayed as is and the client's socket is never accepted. Otherwise both sockets are
accepted and frames are copied both ways, text as text and binary as binary, until either side
closes; the close code travels to the other side.

The upstream side uses the ``websockets`` client because, unlike aiohttp's, it keeps the body of
a refused handshake, which is what makes the relayed error precise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web
from bai.common.auth import API_VERSION
from bai.webserver.context import CONTEXT
from bai.webserver.problems import bad_gateway
from bai.webserver.sessions import WebSession
from bai.webserver.upstream import HOP_BY_HOP, signed_headers
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

__all__ = ["is_websocket", "proxy_websocket"]

log = logging.getLogger(__name__)

_NOT_FORWARDED = HOP_BY_HOP | {"host", "cookie", "authorization", "date", "x-backendai-date",
                               "x-backendai-version", "user-agent", "origin", "content-length"}
_NORMAL = 1000
_INTERNAL_ERROR = 1011
_RESERVED_CODES = {1005, 1006, 1015}
"""Close codes that describe a close but may never be sent in a close frame (RFC 6455 §7.4.1)."""


def is_websocket(request: web.Request) -> bool:
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


def _sendable(code: int | None, fallback: int) -> int:
    return fallback if code is None or code in _RESERVED_CODES else code


def _subprotocols(request: web.Request) -> list[Subprotocol]:
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return [Subprotocol(p.strip()) for p in offered.split(",") if p.strip()]


async def proxy_websocket(request: web.Request, tail: str, session: WebSession
                          ) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in _NOT_FORWARDED and not k.lower().startswith("sec-websocket-")}
    headers["X-Forwarded-For"] = request.remote or ""
    headers.update(signed_headers(
        ctx.target, method="GET", tail=tail, content_type=None,
        api_version=request.headers.get("X-BackendAI-Version", API_VERSION),
        access_key=session.access_key, secret_key=session.secret_key))
    try:
        upstream = await connect(
            str(ctx.target.url(tail, websocket=True)), additional_headers=headers,
            subprotocols=_subprotocols(request) or None, compression=None, proxy=None,
            user_agent_header=request.headers.get("User-Agent"), max_size=None,
            open_timeout=ctx.config.connect_timeout, ping_interval=None)
    except InvalidStatus as exc:
        refused = exc.response
        log.info("websocket %s: the gateway refused the upgrade (%d)", tail, refused.status_code)
        return web.Response(status=refused.status_code, body=refused.body,
                            content_type=(refused.headers.get("Content-Type") or
                                          "application/json").split(";")[0])
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        log.warning("websocket %s: the gateway failed: %s", tail, exc)
        return bad_gateway(f"websocket {tail}: {exc}")
    async with upstream:
        downstream = web.WebSocketResponse(
            protocols=[upstream.subprotocol] if upstream.subprotocol else (),
            autoping=True, max_msg_size=0)
        await downstream.prepare(request)
        await _splice(downstream, upstream)
    return downstream


async def _splice(downstream: web.WebSocketResponse, upstream: ClientConnection) -> None:
    to_gateway = asyncio.create_task(_client_to_gateway(downstream, upstream))
    to_client = asyncio.create_task(_gateway_to_client(upstream, downstream))
    try:
        await asyncio.wait({to_gateway, to_client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_gateway, to_client):
            task.cancel()
        for task in (to_gateway, to_client):
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed,
                                     ConnectionError):
                await task
    if to_client.done() and not to_client.cancelled() and to_client.exception() is None:
        code = _sendable(upstream.close_code, _INTERNAL_ERROR)
        await downstream.close(code=code, message=(upstream.close_reason or "").encode())
    else:
        await upstream.close(code=_sendable(downstream.close_code, _NORMAL))
        await downstream.close()


async def _client_to_gateway(downstream: web.WebSocketResponse,
                             upstream: ClientConnection) -> None:
    async for message in downstream:
        if message.type == WSMsgType.TEXT:
            await upstream.send(message.data)
        elif message.type == WSMsgType.BINARY:
            await upstream.send(message.data)
        elif message.type == WSMsgType.ERROR:
            return


async def _gateway_to_client(upstream: ClientConnection,
                             downstream: web.WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in upstream:
            if isinstance(message, str):
                await downstream.send_str(message)
            else:
                await downstream.send_bytes(message)

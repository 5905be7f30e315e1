"""The webserver's aiohttp application: routes, and the lifespan of its shared parts.

aiohttp rather than FastAPI (the gateway's choice): the webserver is a reverse proxy, and
aiohttp is one library for both of its sides, server and client, with streamed bodies and
WebSockets on each, already a project dependency (the storage proxy's transfer endpoint), and
the framework of Backend.AI's own webserver, whose cookie (``AIOHTTP_SESSION``) and answers the
official client expects.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from bai.webserver import login, proxy
from bai.webserver.config import WebserverConfig
from bai.webserver.context import CONTEXT, WebContext
from bai.webserver.sessions import build_store
from bai.webserver.upstream import GatewayTarget

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(config: WebserverConfig) -> web.Application:
    """Builds the app; its cleanup context opens (and finally closes) the gateway client and the
    session store.

    Raises:
        ValueError: the gateway URL is not ``http(s)://host[:port][/path]``.
    """
    target = GatewayTarget.parse(config.gateway_url)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        http = aiohttp.ClientSession(
            # Bytes pass through untouched: no decompression, no cookies kept between users.
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0), trust_env=False)
        store = build_store(config.redis_url)
        app[CONTEXT] = WebContext(
            config=config, target=target, store=store, http=http,
            stream_timeout=aiohttp.ClientTimeout(total=None,
                                                 sock_connect=config.connect_timeout))
        log.info("webserver forwarding to the gateway at %s; web sessions %s", target.base,
                 "in Redis" if config.redis_url else "in process")
        try:
            yield
        finally:
            await http.close()
            await store.close()
            log.info("webserver closed its gateway client and session store")

    app = web.Application()
    app.cleanup_ctx.append(lifespan)
    app.add_routes(login.routes)
    app.add_routes(proxy.routes)
    return app

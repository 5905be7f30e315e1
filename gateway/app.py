"""The gateway's ASGI application: composition of routes, error handling and the manager channel.

The gateway is stateless and holds no permissions: every request's signature is forwarded to the
manager, which verifies it and decides.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bai.gateway import admin, compat, native, openapi
from bai.gateway.compat.scaling_groups import router as scaling_groups_router
from bai.gateway.compat.sessions import SessionInfoFastPath
from bai.gateway.compat.system import MANAGER_VERSION
from bai.gateway.config import GatewayConfig
from bai.gateway.errors import EXCEPTION_HANDLERS
from bai.gateway.ratelimit import build_windows, rate_limit_middleware
from bai.gateway.upstream import SERVICES, Upstream
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from google.protobuf.descriptor import Descriptor

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _documented_messages() -> list[Descriptor]:
    return [
        message
        for service in SERVICES
        for method in service.methods
        for message in (method.input_type, method.output_type)
    ]


_NO_TELEMETRY = TelemetryConfig(tracing=False, metrics=False, logs=False)
"""FastAPI's telemetry settings when ``GatewayConfig.opentelemetry`` is off."""


def create_app(config: GatewayConfig) -> FastAPI:
    """Builds the app; its lifespan opens (and finally closes) the channel to the manager."""
    windows = build_windows(config.redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstream = Upstream(config)
        app.state.upstream = upstream
        log.info("gateway forwarding to manager at %s", config.manager_addr)
        try:
            yield
        finally:
            await upstream.close()
            await windows.close()
            log.info("gateway closed its channel to the manager")

    app = FastAPI(
        title="bai gateway",
        version=MANAGER_VERSION,
        description="Backend.AI-compatible REST API and the manager's gRPC API as REST/JSON.",
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        telemetry=None if config.opentelemetry else _NO_TELEMETRY,
    )
    app.include_router(compat.system_router)
    app.include_router(compat.sessions_router)
    app.include_router(compat.apps_router)
    app.include_router(compat.folders_router)
    app.include_router(scaling_groups_router)  # GET /scaling-groups (compat/scaling_groups.py)
    app.include_router(admin.graphql_router)
    app.include_router(admin.events_router)
    app.include_router(admin.login_router)
    app.include_router(admin.subscriptions_router)
    app.include_router(native.build_router(SERVICES))
    messages = _documented_messages()

    def schema() -> dict[str, Any]:
        return openapi.build_schema(app, messages)

    app.openapi = schema  # type: ignore[method-assign]
    # Added first so that it sits inside the rate limiter (the last added is the outermost).
    app.add_middleware(SessionInfoFastPath)
    app.add_middleware(rate_limit_middleware, windows=windows,
                       default_limit=config.rate_limit, window=config.rate_limit_window,
                       cache_ttl=config.rate_limit_cache_ttl)
    return app

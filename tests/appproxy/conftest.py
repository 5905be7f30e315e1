"""Fixtures of the app proxy tests (real Envoy, real gRPC, real apps on Unix sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from appproxy_support import Stack


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """A started coordinator and Envoy (connected over ADS), torn down afterwards."""
    started = await Stack().start()
    try:
        yield started
    finally:
        await started.close()

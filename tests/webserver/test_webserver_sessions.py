"""Both session stores (in process, and a real redis-server) keep the same contract."""

from __future__ import annotations

import contextlib

import pytest
from bai.webserver.sessions import WebSession, build_store, new_session_id
from redis_server import start_redis


@pytest.mark.parametrize("kind", ["in-process", "redis"])
async def test_store_contract(kind: str) -> None:
    with contextlib.ExitStack() as resources:
        url = resources.enter_context(start_redis()).url if kind == "redis" else ""
        store = build_store(url)
        try:
            sid, other = new_session_id(), new_session_id()
            session = WebSession(access_key="AKIATEST", secret_key="s" * 40, role="user",
                                 user={"email": "u@example.com"})
            stored = await store.put(sid, session, 60)
            assert stored.expires_at > 0
            assert await store.get(sid) == stored
            assert await store.get(other) is None
            extended = await store.extend(sid, 120)
            assert extended is not None and extended.expires_at > stored.expires_at
            assert "secret_key" not in extended.public() and extended.public()["role"] == "user"
            await store.delete(sid)
            assert await store.get(sid) is None
            # Extending a logged-out session must not bring it back.
            assert await store.extend(sid, 60) is None
            assert await store.get(sid) is None
        finally:
            await store.close()

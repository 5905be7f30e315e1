"""Keypair signature checks on SessionService/ImageService over a real gRPC server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from bai.common import auth
from bai.common.rpc import (
    SERVICE_TOKEN_KEY,
    SIGN_CONTENT_TYPE_KEY,
    SIGN_DATE_KEY,
    SIGN_HOST_KEY,
    SIGN_METHOD_KEY,
    SIGN_PATH_KEY,
    SIGN_VERSION_KEY,
)
from bai.manager.adapters.db import Database
from bai.manager.adapters.db.accounts import create_user
from bai.manager.domain.model import Role
from bai.pb.manager.v1 import agent_registry_pb2_grpc
from bai.pb.manager.v1 import image_service_pb2 as ipb
from bai.pb.manager.v1 import session_service_pb2 as pb
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from manager_harness import Harness, Keys, sign_metadata

LIST = "/bai.manager.v1.SessionService/ListSessions"


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return info.reason


async def _list(manager: Harness, metadata: list[tuple[str, str]]) -> Any:
    return await manager.raw_sessions().ListSessions(
        pb.ListSessionsRequest(), metadata=metadata, timeout=10
    )


async def _denied(manager: Harness, metadata: list[tuple[str, str]]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _list(manager, metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return _reason(err.value)


async def test_valid_signature_is_accepted(manager: Harness) -> None:
    reply = await _list(manager, sign_metadata(manager.user, LIST, manager.address))
    assert list(reply.sessions) == []
    images = await manager.images().ListImages(ipb.ListImagesRequest())
    assert list(images.images) == []


async def test_wrong_secret_stale_date_unknown_key_and_missing_parts(manager: Harness) -> None:
    host = manager.address
    assert await _denied(manager, sign_metadata(manager.user, LIST, host, secret="nope")) == (
        "INVALID_SIGNATURE"
    )
    stale = (datetime.now(UTC) - timedelta(minutes=6)).isoformat()
    assert await _denied(manager, sign_metadata(manager.user, LIST, host, date=stale)) == (
        "CLOCK_SKEW"
    )
    future = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    assert await _denied(manager, sign_metadata(manager.user, LIST, host, date=future)) == (
        "CLOCK_SKEW"
    )
    within = (datetime.now(UTC) - timedelta(minutes=4)).isoformat()
    await _list(manager, sign_metadata(manager.user, LIST, host, date=within))
    stranger = Keys(*auth.generate_keypair())
    assert await _denied(manager, sign_metadata(stranger, LIST, host)) == "UNKNOWN_ACCESS_KEY"
    # signed for another method, another host
    other = sign_metadata(manager.user, "/bai.manager.v1.SessionService/GetSession", host)
    assert await _denied(manager, other) == "INVALID_SIGNATURE"
    other_host = [
        (k, host if k == SIGN_HOST_KEY else v)
        for k, v in sign_metadata(manager.user, LIST, "elsewhere:1")
    ]
    assert await _denied(manager, other_host) == "INVALID_SIGNATURE"
    assert await _denied(manager, []) == "MISSING_CREDENTIALS"
    no_date = [m for m in sign_metadata(manager.user, LIST, host) if m[0] != SIGN_DATE_KEY]
    assert await _denied(manager, no_date) == "MISSING_CREDENTIALS"
    garbled = [("authorization", "Bearer x"), *sign_metadata(manager.user, LIST, host)[1:]]
    assert await _denied(manager, garbled) == "MALFORMED_AUTHORIZATION"


async def test_inactive_keypair_is_rejected(manager: Harness) -> None:
    keys = Keys(*auth.generate_keypair())
    db = Database(manager.db_url)
    try:
        await create_user(
            db,
            email="off@localhost",
            access_key=keys.access_key,
            secret_key=keys.secret_key,
            role=Role.USER,
            is_active=False,
        )
    finally:
        await db.close()
    assert await _denied(manager, sign_metadata(keys, LIST, manager.address)) == (
        "INACTIVE_KEYPAIR"
    )


def _forwarded(keys: Keys, token: str | None) -> list[tuple[str, str]]:
    """What the gateway sends: the signature of the client's HTTP request."""
    date = auth.now_date()
    signed = auth.SignedRequest(
        method="GET",
        rel_url="/session?x=1",
        date=date,
        host="127.0.0.1:8090",
        content_type="text/plain",
        api_version=auth.API_VERSION,
    )
    metadata = [
        (
            "authorization",
            auth.authorization_header(keys.access_key, auth.sign(signed, keys.secret_key)),
        ),
        (SIGN_DATE_KEY, date),
        (SIGN_VERSION_KEY, auth.API_VERSION),
        (SIGN_HOST_KEY, "127.0.0.1:8090"),
        (SIGN_METHOD_KEY, "GET"),
        (SIGN_PATH_KEY, "/session?x=1"),
        (SIGN_CONTENT_TYPE_KEY, "text/plain"),
    ]
    if token is not None:
        metadata.append((SERVICE_TOKEN_KEY, token))
    return metadata


async def test_forwarded_signature_needs_the_service_token(manager: Harness) -> None:
    await _list(manager, _forwarded(manager.user, manager.token))
    assert await _denied(manager, _forwarded(manager.user, None)) == "UNTRUSTED_FORWARD"
    assert await _denied(manager, _forwarded(manager.user, "wrong")) == "UNTRUSTED_FORWARD"
    tampered = [
        (k, "/session?x=2" if k == SIGN_PATH_KEY else v)
        for k, v in _forwarded(manager.user, manager.token)
    ]
    assert await _denied(manager, tampered) == "INVALID_SIGNATURE"


async def test_internal_services_need_the_service_token(manager: Harness) -> None:
    channel = grpc.aio.insecure_channel(manager.address)
    try:
        stub = agent_registry_pb2_grpc.AgentRegistryServiceStub(channel)

        async def nothing() -> Any:
            if False:
                yield

        call = stub.Heartbeat(
            nothing(),
            metadata=sign_metadata(
                manager.admin, "/bai.manager.v1.AgentRegistryService/Heartbeat", manager.address
            ),
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close()

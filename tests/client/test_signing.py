"""The CLI's signing interceptor: what reaches a real gRPC server verifies with bai.common.auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from bai.client.auth import GRPC_CONTENT_TYPE, signature_metadata, signing_interceptors
from bai.client.client import ClientConfig, ManagerClient
from bai.common import auth, errors, rpc
from bai.pb.manager.v1 import session_pb2 as session_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb

AK, SK = "AKIACLIENTTEST", "client-secret"
SERVICE = "bai.manager.v1.SessionService"


def _verify(metadata: dict[str, str], method: str) -> None:
    """The check the manager applies to a directly signed gRPC call."""
    access_key, signature = auth.parse_authorization(metadata["authorization"])
    assert access_key == AK
    request = auth.SignedRequest(
        method="POST",
        rel_url=method,
        date=metadata[rpc.SIGN_DATE_KEY],
        host=metadata[rpc.SIGN_HOST_KEY],
        content_type=GRPC_CONTENT_TYPE,
        api_version=metadata[rpc.SIGN_VERSION_KEY],
    )
    auth.verify(request, signature, SK)


class _Recorder:
    """Handlers that check each call's signature and remember the metadata seen."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def _check(self, context: Any, method: str) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.seen.append((method, metadata))
        try:
            _verify(metadata, method)
        except auth.AuthError as exc:
            await rpc.abort_with(
                context, errors.Unauthenticated(exc.message, reason=exc.reason), "t"
            )

    async def get_session(self, request: Any, context: Any) -> sessions_pb.GetSessionResponse:
        await self._check(context, f"/{SERVICE}/GetSession")
        return sessions_pb.GetSessionResponse(
            session=session_pb.Session(id="id-1", name=request.session_ref)
        )

    async def logs(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self._check(context, f"/{SERVICE}/StreamSessionLogs")
        for data in ("a\n", "b\n"):
            yield sessions_pb.StreamSessionLogsResponse(data=data)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, _Recorder]]:
    recorder = _Recorder()
    handlers = {
        "GetSession": grpc.unary_unary_rpc_method_handler(
            recorder.get_session,
            request_deserializer=sessions_pb.GetSessionRequest.FromString,
            response_serializer=sessions_pb.GetSessionResponse.SerializeToString,
        ),
        "StreamSessionLogs": grpc.unary_stream_rpc_method_handler(
            recorder.logs,
            request_deserializer=sessions_pb.StreamSessionLogsRequest.FromString,
            response_serializer=sessions_pb.StreamSessionLogsResponse.SerializeToString,
        ),
    }
    srv = grpc.aio.server()
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        await srv.stop(None)


async def test_unary_and_streaming_calls_are_signed(server: tuple[str, _Recorder]) -> None:
    addr, recorder = server
    async with ManagerClient(ClientConfig(manager_addr=addr, access_key=AK, secret_key=SK)) as c:
        assert (await c.get_session("s1")).name == "s1"
        assert [chunk async for chunk in c.logs("s1")] == ["a\n", "b\n"]
    methods = [method for method, _ in recorder.seen]
    assert methods == [f"/{SERVICE}/GetSession", f"/{SERVICE}/StreamSessionLogs"]
    for _, metadata in recorder.seen:
        assert metadata[rpc.SIGN_HOST_KEY] == addr
        assert metadata[rpc.SIGN_VERSION_KEY] == auth.API_VERSION
        assert rpc.SERVICE_TOKEN_KEY not in metadata


async def test_a_wrong_secret_surfaces_as_the_servers_reason(server: tuple[str, _Recorder]) -> None:
    addr, _ = server
    config = ClientConfig(manager_addr=addr, access_key=AK, secret_key="wrong")
    async with ManagerClient(config) as c:
        with pytest.raises(errors.Unauthenticated) as err:
            await c.get_session("s1")
        assert err.value.reason == "INVALID_SIGNATURE"
        with pytest.raises(errors.Unauthenticated):
            [chunk async for chunk in c.logs("s1")]


def test_each_call_kind_gets_its_own_interceptor() -> None:
    # grpc.aio files an interceptor under the first call kind it implements only.
    unary, stream = signing_interceptors(AK, SK, "h:1")
    assert isinstance(unary, grpc.aio.UnaryUnaryClientInterceptor)
    assert isinstance(stream, grpc.aio.UnaryStreamClientInterceptor)
    assert not isinstance(unary, grpc.aio.UnaryStreamClientInterceptor)


def test_signature_metadata_verifies_for_the_named_method_only() -> None:
    date = auth.now_date()
    method = f"/{SERVICE}/CreateSession"
    metadata = dict(signature_metadata(method, "127.0.0.1:8091", AK, SK, date))
    assert metadata[rpc.SIGN_DATE_KEY] == date
    _verify(metadata, method)
    with pytest.raises(auth.AuthError):
        _verify(metadata, f"/{SERVICE}/DeleteSession")


def test_missing_credentials_fail_before_dialling() -> None:
    with pytest.raises(errors.Unauthenticated) as err:
        ManagerClient(ClientConfig(manager_addr="127.0.0.1:1"))
    assert err.value.reason == "MISSING_CREDENTIALS"

"""SessionService.StartService on a manager without an app proxy (--appproxy unset)."""

from __future__ import annotations

import grpc
import pytest
from bai.pb.manager.v1 import session_service_pb2 as pb
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from manager_harness import Harness


async def test_start_service_needs_the_app_proxy(manager: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await manager.sessions().StartService(
            pb.StartServiceRequest(session_ref="any", service="jupyter"), timeout=10)
    err = caught.value
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--appproxy" in (err.details() or "")
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == "NO_APP_PROXY"

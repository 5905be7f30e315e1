"""Backend.AI's session routes (wire doc §6, §8), each a thin adapter onto one manager call.

``{ref}`` is a session id (dashed UUID) or name; the manager resolves it.
"""

from __future__ import annotations

from typing import Annotated, Any

from bai.gateway import convert
from bai.gateway.compat import stream
from bai.gateway.compat.models import CreateSessionBody, ExecuteBody
from bai.gateway.deps import UpstreamDep
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["router"]

router = APIRouter(tags=["backend.ai"])
router.add_api_websocket_route("/stream/session/{ref}/execute", stream.execute)

_CREATE_GRACE = 30.0
"""Seconds granted on top of the client's wait limit for the manager to answer."""


@router.post("/session", status_code=201, summary="Create (or reuse) a session")
async def create_session(body: CreateSessionBody, request: Request, up: UpstreamDep) -> Response:
    metadata = up.metadata(request)
    message = body.to_proto()
    deadline = up.config.call_timeout
    if not body.enqueue_only:
        deadline = (body.max_wait_seconds or up.config.create_timeout) + _CREATE_GRACE
    response = await up.create_session(message, metadata=metadata, deadline=deadline)
    return JSONResponse(
        convert.create_response(response), status_code=201 if response.created else 200
    )


@router.get("/session/{ref}", summary="Session information")
async def get_info(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    response = await up.get_session(
        sessions_pb.GetSessionRequest(session_ref=ref),
        metadata=up.metadata(request),
        deadline=up.config.call_timeout,
    )
    return convert.session_info(response.session)


@router.post("/session/{ref}", summary="Execute code (query/batch/continue/input)")
async def execute(ref: str, body: ExecuteBody, request: Request, up: UpstreamDep) -> dict[str, Any]:
    metadata = up.metadata(request)
    wait = up.config.execute_wait
    with convert.proto_input("invalid execute parameters"):
        message = sessions_pb.ExecuteSessionRequest(
            session_ref=ref,
            mode=convert.EXECUTION_MODES[body.mode],
            code=body.command(),
            run_id=body.run_id or "",
            max_wait=convert.duration(wait),
        )
    result = convert.RunResult(run_id=body.run_id or "")
    async with up.execute.open(
        message, metadata=metadata, deadline=wait + up.config.call_timeout
    ) as events:
        async for event in events:
            if result.add(event):
                break
    return {"result": result.to_dict()}


@router.delete("/session/{ref}", summary="Destroy a session")
async def destroy(
    ref: str, request: Request, up: UpstreamDep, forced: Annotated[bool, Query()] = False
) -> dict[str, Any]:
    await up.delete_session(
        sessions_pb.DeleteSessionRequest(session_ref=ref, forced=forced),
        metadata=up.metadata(request),
        deadline=up.config.call_timeout,
    )
    return {"stats": {}}


@router.patch("/session/{ref}", status_code=204, summary="Restart a session's kernels")
async def restart(ref: str, request: Request, up: UpstreamDep) -> Response:
    await up.restart_session(
        sessions_pb.RestartSessionRequest(session_ref=ref),
        metadata=up.metadata(request),
        deadline=up.config.create_timeout,
    )
    return Response(status_code=204)


@router.post("/session/{ref}/interrupt", status_code=204, summary="Interrupt the running code")
async def interrupt(ref: str, request: Request, up: UpstreamDep) -> Response:
    await up.interrupt_session(
        sessions_pb.InterruptSessionRequest(session_ref=ref),
        metadata=up.metadata(request),
        deadline=up.config.call_timeout,
    )
    return Response(status_code=204)


@router.get("/session/{ref}/logs", summary="Container logs of the main kernel")
async def logs(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    chunks: list[str] = []
    async with up.logs.open(
        sessions_pb.StreamSessionLogsRequest(session_ref=ref, follow=False),
        metadata=up.metadata(request),
        deadline=up.config.logs_timeout,
    ) as events:
        async for event in events:
            chunks.append(event.data)
    return {"result": {"logs": "".join(chunks)}}


@router.get("/session/{ref}/status-history", summary="When the session entered each state")
async def status_history(ref: str, request: Request, up: UpstreamDep) -> dict[str, Any]:
    response = await up.get_session(
        sessions_pb.GetSessionRequest(session_ref=ref),
        metadata=up.metadata(request),
        deadline=up.config.call_timeout,
    )
    return {"result": convert.status_history(response.session)}

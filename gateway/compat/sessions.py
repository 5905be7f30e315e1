"""Backend.AI's session routes (wire doc §6, §8), each a thin adapter onto one manager call.

``{ref}`` is a session id (dashed UUID) or name; the manager resolves it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from bai.gateway import convert
from bai.gateway.compat import stream
from bai.gateway.compat.models import CreateSessionBody, ExecuteBody
from bai.gateway.deps import UpstreamDep, upstream_of
from bai.gateway.errors import problem_for_exception
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["SessionInfoFastPath", "router"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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
    # Requests normally never get here: SessionInfoFastPath answers them first. This route
    # documents the operation in the OpenAPI schema and serves apps built without the fast path.
    response = await up.get_session(
        sessions_pb.GetSessionRequest(session_ref=ref),
        metadata=up.metadata(request),
        deadline=up.config.call_timeout,
    )
    return convert.session_info(response.session)


_INFO_PREFIX = "/session/"


def _info_ref(scope: Scope) -> str | None:
    """The ``{ref}`` of a ``GET /session/{ref}`` request (as the route above matches it)."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(_INFO_PREFIX):
        return None
    ref = path[len(_INFO_PREFIX):]
    return ref if ref and "/" not in ref else None


class SessionInfoFastPath:
    """ASGI middleware answering ``GET /session/{ref}`` (P7's hot path) without FastAPI.

    It does exactly what :func:`get_info` does — the same signature forwarding, the same
    manager call, the same body, failures through the same :func:`problem_for_exception` —
    but skips what adds nothing on this route and cost about a third of the gateway's CPU per
    request (py-spy under ``bench/gateway.py``): matching against every route of the app, the
    dependency solver, and pydantic re-serializing a dict that is already JSON-ready. The
    body comes from :class:`~bai.gateway.convert.SessionInfoBodies`: converted and encoded once
    per distinct manager reply (a polled session's replies are byte-identical until it
    changes), with ``age`` computed per request. Every request still makes the manager call:
    the manager authenticates and authorizes each one (a deactivated keypair is refused on
    its next request). Install it inside the rate limiter, so that requests are counted and
    get their headers. Every other request goes to ``app`` untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._bodies = convert.SessionInfoBodies()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ref = _info_ref(scope)
        if ref is None:
            await self._app(scope, receive, send)
            return
        try:
            up = upstream_of(scope)
            reply = await up.get_session_raw(
                sessions_pb.GetSessionRequest(session_ref=ref),
                metadata=up.scope_metadata(scope),
                deadline=up.config.call_timeout,
            )
            body = self._bodies.render(reply)
        except Exception as exc:  # what the app's exception handlers would answer
            await problem_for_exception(exc).response()(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


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

"""``GET /events/session``: a session's lifecycle events as Server-Sent Events (wire doc §9).

``sessionName`` (the client always sends it, even for a UUID) or ``sessionId`` names the session;
the manager resolves it and checks the caller may read it. A failure before the stream is
subscribed (unknown session, bad signature) is a normal error response; afterwards each manager
event becomes ``event: NAME`` + ``data: JSON``, and the end of the session's lifecycle (or of
the manager stream) is announced with a final ``server_close`` event, which ends the client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from bai.common import errors
from bai.gateway.admin.calls import admin_calls
from bai.gateway.errors import problem_for_exception
from bai.pb.manager.v1 import event_service_pb2 as events_pb
from fastapi import APIRouter, Query
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

__all__ = ["frame", "router"]

router = APIRouter(tags=["backend.ai"])

_SCOPES = frozenset({"*", "session", "kernel"})


def frame(name: str, data: dict[str, Any]) -> str:
    """One SSE frame."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _data(event: events_pb.SessionEvent) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sessionId": event.session_id,
        "sessionName": event.session_name,
        "ownerAccessKey": event.access_key,
        "reason": event.reason,
    }
    if event.kernel_id:
        data["kernelId"] = event.kernel_id
    if event.name in ("session_success", "session_failure", "session_terminated"):
        data["exitCode"] = event.exit_code
    return data


def _wanted(scopes: frozenset[str], name: str) -> bool:
    return "*" in scopes or name.split("_", 1)[0] in scopes


def _scopes(scope: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in scope.split(",") if s.strip()) or frozenset({"*"})
    unknown = scopes - _SCOPES
    if unknown:
        raise errors.InvalidArgument(f"unknown event scope(s): {', '.join(sorted(unknown))}",
                                     reason="INVALID_EVENT_SCOPE")
    return scopes


@router.get("/events/session", summary="Session lifecycle events (Server-Sent Events)")
async def session_events(
    request: Request,
    session_name: Annotated[str | None, Query(alias="sessionName")] = None,
    session_id: Annotated[str | None, Query(alias="sessionId")] = None,
    scope: Annotated[str, Query()] = "*",
) -> Response:
    up, calls = admin_calls(request)
    metadata = up.metadata(request)
    ref = session_name or session_id
    if not ref:
        raise errors.InvalidArgument("sessionName or sessionId is required",
                                     reason="MISSING_SESSION")
    scopes = _scopes(scope)
    call = calls.watch_session.start(events_pb.WatchSessionEventsRequest(session_ref=ref),
                                     metadata=metadata, deadline=None)
    iterator = aiter(call)
    try:  # the first message says the session was found: errors before it get a status
        async with asyncio.timeout(up.config.call_timeout):
            first = await anext(iterator, None)
    except BaseException:
        call.cancel()
        raise
    if first is None or not first.HasField("subscribed"):
        call.cancel()
        raise errors.Unavailable("the manager ended the event stream before subscribing",
                                 reason="EVENT_STREAM_FAILED")

    async def frames() -> AsyncIterator[str]:
        try:
            async for message in iterator:
                if message.HasField("event") and _wanted(scopes, message.event.name):
                    yield frame(message.event.name, _data(message.event))
        except Exception as exc:  # the stream broke: say why, then close
            yield frame("error", {"error": problem_for_exception(exc).body()})
        finally:
            call.cancel()
        yield frame("server_close", {})

    return StreamingResponse(
        frames(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(call.cancel))

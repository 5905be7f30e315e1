"""``GET /stream/session/{ref}/execute``: the WebSocket the official ``backend.ai run`` uses.

Protocol (wire doc §8): the client sends one text frame ``{"code", "mode", "options"}``; the
gateway sends text frames shaped like the HTTP execute result, one per output event, as they
arrive. On ``waiting-input`` the client's next text frame is the input line. The last frame has
``status: "finished"`` and ``exitCode``, then the gateway closes. A failure is sent as a frame
with ``status: "error"`` (plus the problem body, and the message on ``stderr`` so the official
CLI shows it) before closing.

The handshake is signed. The gateway first asks the manager for the session with the forwarded
signature, so a bad signature or an unknown session refuses the upgrade with the problem as an
HTTP response, like every other route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from bai.common import errors
from bai.gateway import convert
from bai.gateway.auth import Metadata
from bai.gateway.deps import UpstreamDep
from bai.gateway.errors import Problem, problem_for_exception
from bai.gateway.upstream import StreamCall, Upstream
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["execute"]

log = logging.getLogger(__name__)

_FIRST_MODES = {
    "query": sessions_pb.EXECUTION_MODE_QUERY,
    "batch": sessions_pb.EXECUTION_MODE_BATCH,
}
_POLICY_VIOLATION = 1008
_INTERNAL_ERROR = 1011


async def execute(websocket: WebSocket, ref: str, up: UpstreamDep) -> None:
    """Streams one execution over the WebSocket (see the module docstring)."""
    try:
        metadata = up.metadata(websocket)
        await up.get_session(
            sessions_pb.GetSessionRequest(session_ref=ref),
            metadata=metadata,
            deadline=up.config.call_timeout,
        )
    except Exception as exc:
        await _deny(websocket, problem_for_exception(exc))
        return
    await websocket.accept()
    inputs: asyncio.Queue[str] = asyncio.Queue()
    pump = asyncio.create_task(_pump(websocket, up, metadata, ref, inputs))
    reader = asyncio.create_task(_read_frames(websocket, inputs))
    try:
        await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, reader):
            task.cancel()
        for task in (pump, reader):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
    if pump.done() and not pump.cancelled() and pump.exception() is None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=pump.result())


async def _deny(websocket: WebSocket, problem: Problem) -> None:
    try:
        await websocket.send_denial_response(problem.response())
    except RuntimeError:  # the server lacks the websocket.http.response extension
        await websocket.close(code=_POLICY_VIOLATION, reason=problem.title[:120])


async def _read_frames(websocket: WebSocket, inputs: asyncio.Queue[str]) -> None:
    """Queues every text frame until the client goes away (binary frames are ignored)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            inputs.put_nowait(text)


def _first_request(text: str, ref: str) -> sessions_pb.ExecuteSessionRequest:
    try:
        frame = json.loads(text)
    except ValueError as exc:
        raise errors.InvalidArgument("the first frame must be JSON") from exc
    if not isinstance(frame, dict):
        raise errors.InvalidArgument("the first frame must be a JSON object")
    mode, code, options = frame.get("mode", "query"), frame.get("code", ""), frame.get("options")
    if mode not in _FIRST_MODES or not isinstance(code, str):
        raise errors.InvalidArgument("expected {'code': str, 'mode': 'query'|'batch'}")
    if mode == "batch" and not code and isinstance(options, dict):
        command = options.get("exec")
        code = command if isinstance(command, str) and command != "*" else ""
    with convert.proto_input("invalid first frame"):
        return sessions_pb.ExecuteSessionRequest(
            session_ref=ref, mode=_FIRST_MODES[mode], code=code
        )


async def _pump(
    websocket: WebSocket,
    up: Upstream,
    metadata: Metadata,
    ref: str,
    inputs: asyncio.Queue[str],
) -> int:
    """Runs the execution, forwarding events; returns the close code."""
    run_id = ""
    try:
        request = _first_request(await inputs.get(), ref)
        while True:
            async with up.execute.open(request, metadata=metadata, deadline=None) as events:
                status, run_id = await _forward(websocket, events, run_id)
            if status == "finished":
                return 1000
            if status == "waiting-input":
                line = await inputs.get()
                mode = sessions_pb.EXECUTION_MODE_INPUT
                with convert.proto_input("invalid input line"):
                    request = sessions_pb.ExecuteSessionRequest(
                        session_ref=ref, mode=mode, code=line, run_id=run_id
                    )
            elif status == "continued" and run_id:
                mode = sessions_pb.EXECUTION_MODE_CONTINUE
                request = sessions_pb.ExecuteSessionRequest(
                    session_ref=ref, mode=mode, run_id=run_id
                )
            else:
                raise errors.InternalError("the execution ended without finishing")
    except WebSocketDisconnect:
        raise
    except Exception as exc:
        problem = problem_for_exception(exc)
        log.info("execution in session %s failed: %s (%s)", ref, problem.msg, problem.reason)
        frame = {
            **problem.body(),
            "status": "error",
            "runId": run_id,
            "console": [["stderr", f"error: {problem.msg} ({problem.reason})\n"]],
            "exitCode": None,
        }
        await websocket.send_json(frame)
        return _POLICY_VIOLATION if problem.status < 500 else _INTERNAL_ERROR


async def _forward(
    websocket: WebSocket, events: StreamCall[sessions_pb.ExecuteSessionResponse], run_id: str
) -> tuple[str, str]:
    """Sends one frame per event of one call; returns (how the call ended, run id)."""
    async for event in events:
        frame = convert.RunResult(run_id=run_id)
        ended = frame.add(event)
        run_id = frame.run_id
        if frame.console or ended:
            await websocket.send_json(frame.to_dict())
        if ended:
            return frame.status, run_id
    return "", run_id

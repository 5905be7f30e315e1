"""``GET /stream/session/{ref}/tcpproxy?app=NAME``: the WebSocket the official client's
``backend.ai app`` command bridges a local TCP port through, and ``GET /stream/session/{ref}/apps``,
the app list it checks first.

The gateway starts the app (manager StartService, with the forwarded signature) and relays
binary frames to and from the app proxy's TCP frontend of its circuit. HTTP apps (Jupyter,
ttyd, custom ones) are bridged too: an HTTP circuit admits requests only with its token, which a
raw byte relay cannot add, so the gateway asks for a raw TCP circuit (``raw_tcp``, named
``<app>.tcp``) — this websocket already proved the caller's keypair. The frontend must be a
loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any

from bai.common import errors
from bai.common.service_ports import SERVICE_PORTS_LABEL, parse_service_ports
from bai.gateway.compat.stream import _deny
from bai.gateway.deps import UpstreamDep
from bai.gateway.errors import problem_for_exception
from bai.pb.manager.v1 import image_service_pb2 as images_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from starlette.requests import Request
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["APPS", "apps_of", "arguments_argv", "list_apps", "tcpproxy"]

log = logging.getLogger(__name__)

APPS: list[dict[str, Any]] = [
    {"name": "jupyter", "protocol": "http", "ports": [8081]},
    {"name": "ttyd", "protocol": "http", "ports": [7681]},
    {"name": "sshd", "protocol": "tcp", "ports": [2200]},
]
"""The built-in apps the agent can start (see agent/domain/apps.py), as Backend.AI lists
service ports; an image adds its own in the ``ai.backend.service-ports`` label."""
_METHOD = "bai.manager.v1.SessionService.StartService"
_LIST_IMAGES = "bai.manager.v1.ImageService.ListImages"
_CHUNK = 64 * 1024


def apps_of(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The built-in apps plus those the image's service-ports label declares (a malformed label
    adds none here; starting one of its apps reports the label's fault)."""
    found = {a["name"]: a for a in APPS}
    try:
        declared = parse_service_ports(labels.get(SERVICE_PORTS_LABEL, ""))
    except errors.FailedPrecondition:
        declared = []
    for port in declared:
        found.setdefault(port.name, {"name": port.name, "protocol": port.protocol,
                                     "ports": list(port.ports)})
    return list(found.values())


def arguments_argv(value: Any) -> list[str]:
    """Command-line arguments from a list, Backend.AI's option map, or JSON text of either."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError as exc:
            raise errors.InvalidArgument("arguments is not valid JSON") from exc
    if value is None:
        return []
    if isinstance(value, list):
        return [str(a) for a in value]
    if not isinstance(value, dict):
        raise errors.InvalidArgument("arguments must be a JSON list or object")
    argv: list[str] = []
    for option, given in value.items():
        if given is None:
            argv.append(str(option))
        elif isinstance(given, list):
            argv += [str(option), *(str(g) for g in given)]
        else:
            argv += [str(option), str(given)]
    return argv


async def list_apps(ref: str, request: Request, up: UpstreamDep) -> list[dict[str, Any]]:
    """The session's apps (the session must be visible to the caller)."""
    metadata = up.metadata(request)
    reply = await up.get_session(sessions_pb.GetSessionRequest(session_ref=ref),
                                 metadata=metadata, deadline=up.config.call_timeout)
    images = await up.unary[_LIST_IMAGES](images_pb.ListImagesRequest(), metadata=metadata,
                                          deadline=up.config.call_timeout)
    assert isinstance(images, images_pb.ListImagesResponse)
    ref_of_image = reply.session.spec.image
    labels: Mapping[str, str] = next(
        (i.labels for i in images.images if i.ref == ref_of_image), {})
    return apps_of(labels)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def tcpproxy(websocket: WebSocket, ref: str, up: UpstreamDep) -> None:
    app_name = websocket.query_params.get("app", "")
    try:
        envs = json.loads(websocket.query_params.get("envs") or "{}")
        if not isinstance(envs, dict):
            raise errors.InvalidArgument("envs must be a JSON object")
        reply = await up.unary[_METHOD](
            sessions_pb.StartServiceRequest(
                session_ref=ref, service=app_name,
                environ={str(k): str(v) for k, v in envs.items()},
                arguments=arguments_argv(websocket.query_params.get("arguments")),
                # The websocket is keypair-authenticated: HTTP apps are tunnelled as bytes too.
                raw_tcp=True),
            metadata=up.metadata(websocket),
            deadline=up.config.call_timeout + 60.0,
        )
        assert isinstance(reply, sessions_pb.StartServiceResponse)
        if reply.protocol != "tcp":  # a manager that predates raw_tcp
            raise errors.FailedPrecondition(
                f"the manager opened a {reply.protocol} circuit for {app_name}, not a TCP one",
                reason="NOT_A_TCP_APP")
        if not _loopback(reply.host):
            raise errors.FailedPrecondition(f"the app frontend {reply.host} is not local")
        reader, writer = await asyncio.open_connection(reply.host, reply.port)
        sock = writer.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (ValueError, OSError) as exc:
        await _deny(websocket, problem_for_exception(errors.Unavailable(str(exc))))
        return
    except Exception as exc:
        await _deny(websocket, problem_for_exception(exc))
        return
    await websocket.accept()
    log.info("tcpproxy: session %s app %s via %s:%d", ref, app_name, reply.host, reply.port)
    up_task = asyncio.create_task(_upstream(websocket, writer))
    down_task = asyncio.create_task(_downstream(websocket, reader))
    try:
        await asyncio.wait({up_task, down_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up_task, down_task):
            task.cancel()
        for task in (up_task, down_task):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError):
                await task
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()


async def _upstream(websocket: WebSocket, writer: asyncio.StreamWriter) -> None:
    """Client frames → the app (until the client goes away)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            break
        data = message.get("bytes") or (message.get("text") or "").encode()
        if data:
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _downstream(websocket: WebSocket, reader: asyncio.StreamReader) -> None:
    """The app's bytes → binary frames (until the app closes)."""
    while data := await reader.read(_CHUNK):
        await websocket.send_bytes(data)

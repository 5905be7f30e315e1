"""Backend.AI's ``POST /session/{ref}/start-service`` onto the manager's StartService.

Backend.AI answers it with ``{"token", "wsproxy_addr"}`` (the official client's
``StartServiceResponse`` requires both); bai has no wsproxy, so ``wsproxy_addr`` is the app
proxy frontend's origin and ``token`` the circuit token, and the answer adds the rest of the
frontend (``url`` with the token, ``host``/``port``, and for ``sshd`` a private key). The
official client's ``app`` command routes (``/stream/session/{ref}/apps`` and the ``tcpproxy``
WebSocket) are in :mod:`.tcpproxy`.
"""

from __future__ import annotations

import json
from typing import Any

from bai.common import errors
from bai.gateway.compat import tcpproxy
from bai.gateway.deps import UpstreamDep
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb
from fastapi import APIRouter
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from starlette.requests import Request

__all__ = ["StartServiceBody", "router"]

router = APIRouter(tags=["backend.ai"])
router.add_api_route("/stream/session/{ref}/apps", tcpproxy.list_apps, methods=["GET"],
                     summary="Apps a session offers (for the official client's app command)")
router.add_api_websocket_route("/stream/session/{ref}/tcpproxy", tcpproxy.tcpproxy)
_METHOD = "bai.manager.v1.SessionService.StartService"


class StartServiceBody(BaseModel):
    """Body of ``POST /session/{ref}/start-service``."""

    model_config = ConfigDict(extra="ignore")

    app: str = Field(validation_alias=AliasChoices("app", "service"))
    """App (service port) name, e.g. "jupyter" or "sshd" (also accepted as ``service``)."""
    port: int | None = None
    """Preferred local port (Backend.AI's wsproxy); ignored: the app proxy assigns ports."""
    envs: str | dict[str, str] | None = None
    """Environment variables for the app: an object, or its JSON text (as the client sends)."""
    arguments: str | list[str] | dict[str, Any] | None = None
    """Extra command-line arguments: a list, or Backend.AI's option map (``{"--opt": value}``,
    value None for a flag, a list to repeat the option's values), or the JSON text of either
    (the official client sends the map as JSON text)."""


def _decoded(value: Any, kind: type, what: str) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else kind()
        except ValueError as exc:
            raise errors.InvalidArgument(f"{what} is not valid JSON") from exc
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise errors.InvalidArgument(f"{what} must be a JSON {kind.__name__}")
    return value


@router.post("/session/{ref}/start-service", summary="Start an app and open a route to it")
async def start_service(
    ref: str, body: StartServiceBody, request: Request, up: UpstreamDep
) -> dict[str, Any]:
    envs = _decoded(body.envs, dict, "envs")
    arguments = tcpproxy.arguments_argv(body.arguments)
    envs = {str(k): str(v) for k, v in envs.items()}
    reply = await up.unary[_METHOD](
        sessions_pb.StartServiceRequest(
            session_ref=ref, service=body.app, environ=envs, arguments=arguments
        ),
        metadata=up.metadata(request),
        deadline=up.config.call_timeout + 60.0,
    )
    assert isinstance(reply, sessions_pb.StartServiceResponse)
    return {
        "token": reply.token,
        "wsproxy_addr": reply.url.split("/?", 1)[0].rstrip("/"),
        "url": reply.url,
        "host": reply.host,
        "port": reply.port,
        "protocol": reply.protocol,
        "circuit_id": reply.circuit_id,
        "ssh_user": reply.ssh_user,
        "ssh_private_key": reply.ssh_private_key,
    }

"""Envoy's external authorization (envoy.service.auth.v3.Authorization) for HTTP circuits.

Every route carries the circuit id as the context extension ``circuit_id``; the decision itself
is :func:`bai.appproxy.domain.access.decide`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from bai.appproxy.domain.access import TOKEN_PARAM, AccessDecision, decide
from bai.appproxy.domain.model import Circuit
from bai.appproxy.xds.resources import CONTEXT_CIRCUIT_ID
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

__all__ = ["AuthorizationServer", "to_check_response"]

log = logging.getLogger(__name__)

_DENY_CODES = {401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED}
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def to_check_response(decision: AccessDecision) -> external_auth_pb2.CheckResponse:
    """The CheckResponse that carries out ``decision``."""
    if decision.allowed:
        ok = external_auth_pb2.OkHttpResponse()
        if decision.set_cookie:
            header = base_pb2.HeaderValue(key="set-cookie", value=decision.set_cookie)
            ok.response_headers_to_add.append(
                base_pb2.HeaderValueOption(header=header, append_action=_APPEND)
            )
        if decision.strip_token:
            ok.query_parameters_to_remove.append(TOKEN_PARAM)
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK), ok_response=ok
        )
    content_type = base_pb2.HeaderValue(key="content-type", value="text/plain; charset=utf-8")
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=decision.status),
        headers=[base_pb2.HeaderValueOption(header=content_type)],
        body=decision.reason + "\n",
    )
    code = _DENY_CODES.get(decision.status, code_pb2.NOT_FOUND)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=decision.reason), denied_response=denied
    )


class AuthorizationServer(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """Answers Envoy's checks from the circuit registry (``lookup``: id -> circuit or None)."""

    def __init__(self, lookup: Callable[[str], Circuit | None]) -> None:
        self._lookup = lookup

    async def Check(
        self,
        request: external_auth_pb2.CheckRequest,
        context: grpc.aio.ServicerContext[
            external_auth_pb2.CheckRequest, external_auth_pb2.CheckResponse
        ],
    ) -> external_auth_pb2.CheckResponse:
        attributes = request.attributes
        circuit_id = attributes.context_extensions.get(CONTEXT_CIRCUIT_ID, "")
        http = attributes.request.http
        decision = decide(self._lookup(circuit_id), http.path, http.headers.get("cookie", ""))
        if not decision.allowed:
            log.info(
                "refused %s %s on circuit %s: %d %s",
                http.method,
                http.path.partition("?")[0],
                circuit_id or "-",
                decision.status,
                decision.reason,
            )
        return to_check_response(decision)

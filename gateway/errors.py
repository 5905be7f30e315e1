"""The one place where failures become HTTP responses in Backend.AI's problem shape.

Every error leaving the gateway is ``{"type": "https://api.backend.ai/probs/<slug>", "title",
"msg", "data", "reason"}`` (wire doc §5: the official CLI reads ``title`` and ``type`` and dies on
FastAPI's default ``{"detail": ...}``). ``reason`` is the UPPER_SNAKE ``google.rpc.ErrorInfo``
reason, an RFC 7807 extension member. The status comes from the gRPC code, refined by the reason
where Backend.AI distinguishes cases (e.g. a missing session vs. another missing object).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from bai.common import auth, errors, rpc
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = [
    "EXCEPTION_HANDLERS",
    "PROBLEM_BASE",
    "Problem",
    "problem_for_code",
    "problem_for_exception",
]

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://api.backend.ai/probs/"
_DOMAIN = "bai.gateway"


@dataclass(frozen=True, slots=True)
class _Kind:
    status: int
    slug: str
    title: str


_INTERNAL = _Kind(500, "internal-server-error", "Internal server error.")
_UNAVAILABLE = _Kind(503, "service-unavailable", "Service unavailable.")
_INVALID = _Kind(400, "invalid-api-params", "Missing or invalid API parameters.")
_CONFLICT = _Kind(409, "invalid-state", "The target is not in a state that allows this operation.")

_BY_CODE: Mapping[grpc.StatusCode, _Kind] = {
    grpc.StatusCode.CANCELLED: _INTERNAL,
    grpc.StatusCode.UNKNOWN: _INTERNAL,
    grpc.StatusCode.INVALID_ARGUMENT: _INVALID,
    grpc.StatusCode.DEADLINE_EXCEEDED: _UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND: _Kind(404, "object-not-found", "No such object."),
    grpc.StatusCode.ALREADY_EXISTS: _Kind(
        409,
        "session-already-exists",
        "The session already exists but you requested not to reuse existing one.",
    ),
    grpc.StatusCode.PERMISSION_DENIED: _Kind(403, "forbidden", "Forbidden operation."),
    grpc.StatusCode.RESOURCE_EXHAUSTED: _Kind(
        429, "too-many-requests", "You have reached your API query rate limit."
    ),
    grpc.StatusCode.FAILED_PRECONDITION: _CONFLICT,
    grpc.StatusCode.ABORTED: _CONFLICT,
    grpc.StatusCode.OUT_OF_RANGE: _INVALID,
    grpc.StatusCode.UNIMPLEMENTED: _Kind(501, "not-implemented", "Not implemented."),
    grpc.StatusCode.INTERNAL: _INTERNAL,
    grpc.StatusCode.UNAVAILABLE: _UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: _INTERNAL,
    grpc.StatusCode.UNAUTHENTICATED: _Kind(
        401, "auth-failed", "Credential/permission check failed."
    ),
}
"""Every gRPC status code (OK included, as a server bug) to its default problem."""

_QUOTA = _Kind(412, "quota-exceeded", "You have reached your resource limit.")
_BY_REASON: Mapping[str, _Kind] = {
    "SESSION_NOT_FOUND": _Kind(404, "session-not-found", "No such session."),
    "KERNEL_NOT_FOUND": _Kind(404, "kernel-not-found", "No such kernel."),
    "IMAGE_NOT_FOUND": _Kind(404, "image-not-found", "No such environment image."),
    "QUOTA_EXCEEDED": _QUOTA,
    "CONCURRENCY_LIMIT_EXCEEDED": _QUOTA,
    "TOO_MANY_SESSIONS": _QUOTA,
    "RESOURCE_LIMIT_EXCEEDED": _QUOTA,
    "INSUFFICIENT_RESOURCES": _Kind(
        503, "instance-not-available", "There is no available instance."
    ),
    "SESSION_NOT_RUNNING": _Kind(409, "invalid-session-state", "The session is not running."),
    "INVALID_SESSION_STATE": _Kind(409, "invalid-session-state", "The session is not running."),
    "MALFORMED_REQUEST": _Kind(400, "generic-bad-request", "Bad request."),
    "VFOLDER_NOT_FOUND": _Kind(404, "vfolder-not-found", "Virtual folder not found."),
    "VFOLDER_ALREADY_EXISTS": _Kind(
        409, "vfolder-already-exists", "A virtual folder with the same name already exists."
    ),
    "FILE_ALREADY_EXISTS": _Kind(409, "vfolder-already-exists", "The path already exists."),
}
"""ErrorInfo reasons that Backend.AI reports with their own problem type."""

_ROUTE_NOT_FOUND = _Kind(404, "generic-not-found", "Unknown URL path.")
_METHOD_NOT_ALLOWED = _Kind(405, "method-not-allowed", "Unsupported HTTP method.")


@dataclass(frozen=True, slots=True)
class Problem:
    """One error response."""

    status: int
    """HTTP status."""
    slug: str
    """Last part of the problem type URL."""
    title: str
    """Human-readable summary of the kind of problem."""
    msg: str
    """Detail of this occurrence."""
    reason: str
    """UPPER_SNAKE reason (google.rpc.ErrorInfo)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Structured detail: per-field errors, ``existingSessionId``..."""

    def body(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "msg": self.msg,
            "data": self.data,
            "reason": self.reason,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _problem(kind: _Kind, msg: str, reason: str, data: dict[str, Any] | None = None) -> Problem:
    return Problem(kind.status, kind.slug, kind.title, msg, reason, data or {})


def problem_for_code(
    code: grpc.StatusCode, reason: str, message: str, metadata: Mapping[str, str] | None = None
) -> Problem:
    """The problem for a gRPC status with its ErrorInfo reason and metadata."""
    kind = _BY_REASON.get(reason) or _BY_CODE.get(code, _INTERNAL)
    data: dict[str, Any] = {}
    if kind.slug == "session-already-exists":
        existing = (metadata or {}).get("session_id") or (metadata or {}).get("existing_session_id")
        if existing:
            data["existingSessionId"] = existing
    return _problem(kind, message, reason, data)


def _from_bai_error(exc: errors.BaiError) -> Problem:
    code_value = rpc.status_for(exc, _DOMAIN).code
    code = next((c for c in grpc.StatusCode if c.value[0] == code_value), grpc.StatusCode.INTERNAL)
    return problem_for_code(code, exc.reason, exc.message, exc.metadata)


def _from_rpc_error(exc: grpc.aio.AioRpcError) -> Problem:
    err = rpc.error_from_rpc(exc)
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        log.warning("manager call failed: %s: %s", exc.code().name, exc.details())
    return problem_for_code(exc.code(), err.reason, err.message, err.metadata)


def _field_errors(exc: RequestValidationError) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            fields["body"] = "the body is not valid JSON"
            continue
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        fields[".".join(loc) or "body"] = error.get("msg", "invalid")
    return fields


def problem_for_exception(exc: BaseException) -> Problem:
    """The problem for anything a handler raised (unknown exceptions are logged, 500)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return _from_rpc_error(exc)
    if isinstance(exc, errors.BaiError):
        return _from_bai_error(exc)
    if isinstance(exc, auth.AuthError):
        return problem_for_code(grpc.StatusCode.UNAUTHENTICATED, exc.reason, exc.message)
    if isinstance(exc, RequestValidationError):
        fields = _field_errors(exc)
        msg = "; ".join(f"{k}: {v}" for k, v in fields.items())
        return _problem(_INVALID, msg, "INVALID_ARGUMENT", fields)
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return _problem(_ROUTE_NOT_FOUND, "no route for this path", "NOT_FOUND")
        if exc.status_code == 405:
            return _problem(_METHOD_NOT_ALLOWED, "method not allowed here", "METHOD_NOT_ALLOWED")
        kind = _Kind(exc.status_code, "generic-bad-request", "Bad request.")
        if exc.status_code >= 500:
            kind = _INTERNAL
        return _problem(kind, str(exc.detail), "HTTP_ERROR")
    log.error("unhandled error in the gateway", exc_info=exc)
    return _problem(_INTERNAL, "unexpected error in the gateway", "INTERNAL")


async def _handle(request: Request, exc: Exception) -> Response:
    return problem_for_exception(exc).response()


Handler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]

EXCEPTION_HANDLERS: dict[int | type[Exception], Handler] = {
    grpc.aio.AioRpcError: _handle,
    errors.BaiError: _handle,
    auth.AuthError: _handle,
    RequestValidationError: _handle,
    HTTPException: _handle,
    Exception: _handle,
}
"""Passed to ``FastAPI(exception_handlers=...)``; ``Exception`` covers unexpected failures."""

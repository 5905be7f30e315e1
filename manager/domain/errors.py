"""Manager domain errors: bai.common.errors subclasses with stable UPPER_SNAKE reasons.

The transport maps the base class to a gRPC status (:func:`bai.common.rpc.abort_with`) and
sends the reason in ``google.rpc.ErrorInfo(domain="bai.manager")``.
"""

from __future__ import annotations

from bai.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AgentUnavailable",
    "AuthFailed",
    "DuplicateRequest",
    "IllegalTransition",
    "InvalidSessionRequest",
    "InvalidSlots",
    "NotAllowed",
    "SessionNameTaken",
    "SessionNotFound",
    "SessionNotRunning",
]


class InvalidSessionRequest(InvalidArgument):
    default_reason = "INVALID_SESSION_REQUEST"


class InvalidSlots(InvalidArgument):
    default_reason = "INVALID_RESOURCE_SLOTS"


class SessionNotFound(NotFound):
    default_reason = "SESSION_NOT_FOUND"


class SessionNameTaken(AlreadyExists):
    """A live session of the owner already has this name (metadata: existing_session_id)."""

    default_reason = "SESSION_ALREADY_EXISTS"


class DuplicateRequest(AlreadyExists):
    """A session with this request_id exists (metadata: existing_session_id)."""

    default_reason = "REQUEST_ID_TAKEN"


class IllegalTransition(FailedPrecondition):
    """The session is not in a state the operation starts from; nothing was changed."""

    default_reason = "INVALID_SESSION_STATE"


class SessionNotRunning(FailedPrecondition):
    default_reason = "SESSION_NOT_RUNNING"


class NotAllowed(PermissionDenied):
    default_reason = "PERMISSION_DENIED"


class AuthFailed(Unauthenticated):
    default_reason = "UNAUTHENTICATED"


class AgentUnavailable(Unavailable):
    default_reason = "AGENT_UNAVAILABLE"

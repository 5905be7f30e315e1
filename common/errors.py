"""Domain errors shared by every component.

Each error carries a stable UPPER_SNAKE ``reason`` (AIP-193) and a message. Transports map the
class to a status: :mod:`bai.common.rpc` to a gRPC code with ``google.rpc.ErrorInfo``, the gateway
to an HTTP status with Backend.AI's ``{type, title, msg}`` body. Domain code never imports a
transport and never matches on message text.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyExists",
    "BaiError",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class BaiError(Exception):
    """Base of all domain errors."""

    default_reason = "INTERNAL"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})

    def __reduce__(self) -> tuple[Any, ...]:  # keep picklable with keyword-only args
        return (_rebuild, (type(self), self.message, self.reason, self.metadata))


def _rebuild(cls: type[BaiError], message: str, reason: str, metadata: dict[str, str]) -> BaiError:
    return cls(message, reason=reason, metadata=metadata)


class InvalidArgument(BaiError):
    default_reason = "INVALID_ARGUMENT"


class NotFound(BaiError):
    default_reason = "NOT_FOUND"


class AlreadyExists(BaiError):
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(BaiError):
    default_reason = "FAILED_PRECONDITION"


class Unauthenticated(BaiError):
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(BaiError):
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(BaiError):
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(BaiError):
    default_reason = "UNAVAILABLE"


class InternalError(BaiError):
    default_reason = "INTERNAL"

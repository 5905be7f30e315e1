"""The storage proxy's domain errors: :mod:`bai.common.errors` classes with stable reasons.

Backends raise these at their border (never a botocore or azure exception); the gRPC servicer
maps them to status codes with ``ErrorInfo(domain="bai.storage")`` and the HTTP transfer
endpoint to Backend.AI's ``{type, title, msg}`` problems.
"""

from __future__ import annotations

from bai.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "DOMAIN",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "backend_unavailable",
    "directory_not_empty",
    "file_exists",
    "file_not_found",
    "folder_exists",
    "folder_not_found",
    "invalid_folder_id",
    "invalid_path",
    "invalid_range",
    "is_a_directory",
    "not_a_directory",
    "path_escapes",
    "quota_exceeded",
    "token_expired",
    "token_invalid",
    "upload_in_progress",
    "upload_offset_mismatch",
    "upload_size_mismatch",
    "volume_not_found",
]

DOMAIN = "bai.storage"
"""ErrorInfo domain of every error the storage proxy reports."""


def volume_not_found(volume: str) -> NotFound:
    return NotFound(f"no volume named {volume!r}", reason="VOLUME_NOT_FOUND")


def folder_not_found(folder: str) -> NotFound:
    return NotFound(f"folder {folder} does not exist", reason="FOLDER_NOT_FOUND")


def folder_exists(folder: str) -> AlreadyExists:
    return AlreadyExists(f"folder {folder} already exists", reason="FOLDER_ALREADY_EXISTS")


def invalid_folder_id(value: str) -> InvalidArgument:
    return InvalidArgument(f"folder id {value!r} is not a UUID", reason="INVALID_FOLDER_ID")


def file_not_found(path: str) -> NotFound:
    return NotFound(f"{path!r} does not exist", reason="FILE_NOT_FOUND", metadata={"path": path})


def file_exists(path: str) -> AlreadyExists:
    return AlreadyExists(
        f"{path!r} already exists", reason="FILE_ALREADY_EXISTS", metadata={"path": path}
    )


def path_escapes(path: str) -> InvalidArgument:
    return InvalidArgument(
        f"path {path!r} escapes the folder", reason="PATH_ESCAPES_FOLDER", metadata={"path": path}
    )


def invalid_path(path: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid path {path!r}: {why}", reason="INVALID_PATH", metadata={"path": path}
    )


def not_a_directory(path: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{path!r} is not a directory", reason="NOT_A_DIRECTORY", metadata={"path": path}
    )


def is_a_directory(path: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{path!r} is a directory", reason="IS_A_DIRECTORY", metadata={"path": path}
    )


def directory_not_empty(path: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"directory {path!r} is not empty (delete recursively)",
        reason="DIRECTORY_NOT_EMPTY",
        metadata={"path": path},
    )


def quota_exceeded(quota: int, needed: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"folder quota of {quota} bytes exceeded: the write needs {needed} bytes in all;"
        " the partial upload was discarded",
        reason="QUOTA_EXCEEDED",
        metadata={"quota_bytes": str(quota), "needed_bytes": str(needed)},
    )


def upload_offset_mismatch(requested: int, actual: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"upload offset {requested} does not match the {actual} bytes received so far",
        reason="UPLOAD_OFFSET_MISMATCH",
        metadata={"offset": str(actual)},
    )


def upload_size_mismatch(size: int, received: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"upload declared {size} bytes but {received} arrived",
        reason="UPLOAD_SIZE_MISMATCH",
        metadata={"size": str(size), "offset": str(received)},
    )


def backend_unavailable(backend: str, detail: str) -> Unavailable:
    return Unavailable(f"{backend} backend failed: {detail}", reason="BACKEND_UNAVAILABLE")


def token_invalid(why: str) -> Unauthenticated:
    return Unauthenticated(f"invalid transfer token: {why}", reason="TRANSFER_TOKEN_INVALID")


def token_expired() -> Unauthenticated:
    return Unauthenticated("the transfer token has expired", reason="TRANSFER_TOKEN_EXPIRED")


def invalid_range(offset: int, size: int) -> InvalidArgument:
    return InvalidArgument(
        f"offset {offset} is beyond the end of the file ({size} bytes)", reason="INVALID_RANGE"
    )


def upload_in_progress(path: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"another upload of {path!r} is in progress", reason="UPLOAD_IN_PROGRESS"
    )

"""The client-facing HTTP transfer endpoint (Starlette), authorized by transfer tokens only.

- ``OPTIONS /upload``: tus.io discovery (``Tus-Version: 1.0.0``, no extensions).
- ``HEAD /upload?token=``: ``Upload-Offset`` (bytes the proxy holds, kept on disk or in the
  bucket, so it survives a restart of the proxy) and ``Upload-Length``.
- ``PATCH /upload?token=`` with ``Upload-Offset`` and ``Content-Type:
  application/offset+octet-stream``: appends the body; ``204`` with the new ``Upload-Offset``;
  the file is published when the offset reaches the token's size. A wrong offset is ``409``.
- ``GET|HEAD /download?token=``: the file with ``Content-Length``; ``Range: bytes=a-b`` (one
  range; ``a-``, ``-n`` too) gives ``206`` with ``Content-Range``; an unsatisfiable one ``416``.

This is the subset Backend.AI's official client (aiotusclient / aiohttp) speaks (wire doc §7).
Every error is Backend.AI's problem JSON ``{type, title, msg, data, reason}``; an expired or
forged token is ``401``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

from bai.common.errors import (
    AlreadyExists,
    BaiError,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from bai.storage import errors
from bai.storage.backends import FileType, ReadStream
from bai.storage.domain import StorageService, TransferClaims
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["PROBLEM_BASE", "problem_response", "transfer_app"]

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://api.backend.ai/probs/"
TUS_VERSION = "1.0.0"
TUS_CONTENT_TYPE = "application/offset+octet-stream"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_TUS_HEADERS = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}

# class -> (status, slug, title); refined by reason below
_PROBLEMS: list[tuple[type[BaiError], int, str, str]] = [
    (Unauthenticated, 401, "auth-failed", "Credential/permission check failed."),
    (NotFound, 404, "object-not-found", "No such object."),
    (InvalidArgument, 400, "invalid-api-params", "Missing or invalid API parameters."),
    (AlreadyExists, 409, "object-already-exists", "The object already exists."),
    (FailedPrecondition, 409, "invalid-state", "The target is not in a state for this."),
    (ResourceExhausted, 412, "quota-exceeded", "You have reached your resource limit."),
    (Unavailable, 503, "service-unavailable", "Service unavailable."),
]
_BY_REASON = {
    "FOLDER_NOT_FOUND": (404, "vfolder-not-found", "No such virtual folder."),
    "FILE_NOT_FOUND": (404, "vfolder-file-not-found", "No such file in the virtual folder."),
    "UPLOAD_OFFSET_MISMATCH": (409, "upload-offset-mismatch", "Upload offset mismatch."),
}


def problem_response(exc: BaiError) -> JSONResponse:
    """Backend.AI's error body for a domain error."""
    status, slug, title = 500, "internal-server-error", "Internal server error."
    for cls, *kind in _PROBLEMS:
        if isinstance(exc, cls):
            status, slug, title = kind  # type: ignore[assignment]
            break
    status, slug, title = _BY_REASON.get(exc.reason, (status, slug, title))
    body: dict[str, object] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "msg": exc.message,
        "data": dict(exc.metadata),
        "reason": exc.reason,
    }
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _claims(storage: StorageService, request: Request, op: str) -> TransferClaims:
    token = request.query_params.get("token", "")
    if not token:
        raise errors.token_invalid("missing ?token=")
    return storage.tokens.verify(token, op)


async def _upload_options(request: Request) -> Response:
    return Response(
        status_code=204,
        headers={**_TUS_HEADERS, "Tus-Version": TUS_VERSION, "Tus-Extension": ""},
    )


def _parse_offset(value: str | None) -> int:
    if value is None or not value.isdigit():
        raise InvalidArgument("Upload-Offset must be a non-negative integer", reason="BAD_OFFSET")
    return int(value)


class _TransferEndpoints:
    def __init__(self, storage: StorageService) -> None:
        self._storage = storage

    async def _held(self, claims: TransferClaims) -> int:
        """Bytes of the upload the proxy holds (the full size once it is published)."""
        held = await self._storage.upload_offset(claims.volume, claims.folder, claims.path)
        if held == 0 and claims.size:
            with contextlib.suppress(NotFound, FailedPrecondition):
                entry = await self._storage.get_file(claims.volume, claims.folder, claims.path)
                if entry.type is FileType.FILE and entry.size == claims.size:
                    return claims.size
        return held

    async def upload_head(self, request: Request) -> Response:
        claims = _claims(self._storage, request, "upload")
        held = await self._held(claims)
        headers = {**_TUS_HEADERS, "Upload-Offset": str(held), "Upload-Length": str(claims.size)}
        return Response(status_code=200, headers=headers)

    async def upload_patch(self, request: Request) -> Response:
        claims = _claims(self._storage, request, "upload")
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != TUS_CONTENT_TYPE:
            raise InvalidArgument(
                f"Content-Type must be {TUS_CONTENT_TYPE}", reason="UNSUPPORTED_MEDIA_TYPE"
            )
        offset = _parse_offset(request.headers.get("upload-offset"))
        try:
            result = await self._storage.upload(
                claims.volume,
                claims.folder,
                claims.path,
                offset=offset,
                total_size=claims.size,
                chunks=_body(request),
            )
        except ClientDisconnect:
            log.info("upload of %s interrupted by the client; bytes kept", claims.path)
            return Response(status_code=400)
        return Response(
            status_code=204, headers={**_TUS_HEADERS, "Upload-Offset": str(result.offset)}
        )

    async def download(self, request: Request) -> Response:
        claims = _claims(self._storage, request, "download")
        entry, probe = await self._storage.open_download(
            claims.volume, claims.folder, claims.path, offset=0, length=0
        )  # the size of the file itself, through an in-folder symlink too
        await probe.aclose()
        size = entry.size
        start, end, status = 0, size, 200
        if (spec := request.headers.get("range")) is not None:
            bounds = _parse_range(spec, size)
            if bounds is None:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
            start, end, status = *bounds, 206
        entry, stream = await self._storage.open_download(
            claims.volume, claims.folder, claims.path, offset=start, length=end - start
        )
        name = claims.path.rsplit("/", 1)[-1]
        headers = {
            "Content-Length": str(end - start),
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "Cache-Control": "no-store",
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
        if request.method == "HEAD":
            await stream.aclose()
            return Response(status_code=status, headers=headers)
        return StreamingResponse(
            _stream(stream),
            status_code=status,
            headers=headers,
            media_type="application/octet-stream",
        )


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of one ``bytes=`` range, ``None`` when unsatisfiable (RFC 9110 14.1)."""
    match = _RANGE.fullmatch(spec.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last n bytes
        length = int(last)
        return (max(0, size - length), size) if length and size else None
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or end <= start:
        return None
    return start, end


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def _stream(stream: ReadStream) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            yield chunk


Endpoint = Callable[[Request], Awaitable[Response]]


def _errors(endpoint: Endpoint) -> Endpoint:
    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except BaiError as exc:
            log.info("%s %s: %s: %s", request.method, request.url.path, exc.reason, exc.message)
            return problem_response(exc)

    return handle


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status >= 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem_response(InternalError("unexpected error in the storage proxy"))
    body: dict[str, object] = {
        "type": PROBLEM_BASE + ("generic-not-found" if status == 404 else "generic-bad-request"),
        "title": "Unknown URL path." if status == 404 else "Bad request.",
        "msg": str(getattr(exc, "detail", "")),
        "data": {},
        "reason": "HTTP_ERROR",
    }
    return JSONResponse(body, status_code=status)


def transfer_app(storage: StorageService) -> Starlette:
    """The transfer endpoint over ``storage``."""
    ep = _TransferEndpoints(storage)
    routes = [
        Route("/upload", _errors(_upload_options), methods=["OPTIONS"]),
        Route("/upload", _errors(ep.upload_head), methods=["HEAD"]),
        Route("/upload", _errors(ep.upload_patch), methods=["PATCH"]),
        Route("/download", _errors(ep.download), methods=["GET", "HEAD"]),
    ]
    cors = Middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "HEAD", "PATCH", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Upload-Offset", "Upload-Length", "Tus-Resumable", "Content-Range"],
    )
    handlers = {HTTPException: _http_error, Exception: _http_error}
    return Starlette(routes=routes, middleware=[cors], exception_handlers=handlers)

"""The client-facing HTTP transfer endpoint (aiohttp.web), authorized by transfer tokens only.

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

Why aiohttp.web and not an ASGI stack: this is the data path, and it must move a file at disk
speed on a busy machine. aiohttp exposes the connection's transport and socket, so on ``fs``
volumes neither direction passes the bytes through Python: a PATCH body goes socket -> pipe ->
file with ``splice(2)`` (:class:`_SocketBody`; the connection is closed afterwards) and a
download is sent with ``loop.sendfile`` (``sendfile(2)``). Other bodies are read block by block
as the C parser received them. Measured proxy CPU (see storage/README.md): ~0.8 s per uploaded
GiB instead of ~4.6, ~0.2 s per downloaded GiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import select
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any
from urllib.parse import quote

from aiohttp import web
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
from bai.storage.backends import FileType, LocalFileStream
from bai.storage.domain import StorageService, TransferClaims

__all__ = ["PROBLEM_BASE", "problem_response", "transfer_app"]

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://api.backend.ai/probs/"
TUS_VERSION = "1.0.0"
TUS_CONTENT_TYPE = "application/offset+octet-stream"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_TUS_HEADERS = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Upload-Offset, Upload-Length, Tus-Resumable, Content-Range",
}
_CORS_METHODS = "GET, HEAD, PATCH, OPTIONS"

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


def problem_response(exc: BaiError) -> web.Response:
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
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _claims(storage: StorageService, request: web.Request, op: str) -> TransferClaims:
    token = request.query.get("token", "")
    if not token:
        raise errors.token_invalid("missing ?token=")
    return storage.tokens.verify(token, op)


async def _upload_options(request: web.Request) -> web.StreamResponse:
    headers = {**_TUS_HEADERS, "Tus-Version": TUS_VERSION, "Tus-Extension": ""}
    if request.headers.get("Access-Control-Request-Method"):  # a browser's CORS preflight
        headers["Access-Control-Allow-Methods"] = _CORS_METHODS
        headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "*"
        )
    return web.Response(status=204, headers=headers)


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

    async def upload_head(self, request: web.Request) -> web.StreamResponse:
        claims = _claims(self._storage, request, "upload")
        held = await self._held(claims)
        headers = {**_TUS_HEADERS, "Upload-Offset": str(held), "Upload-Length": str(claims.size)}
        return web.Response(status=200, headers=headers)

    async def upload_patch(self, request: web.Request) -> web.StreamResponse:
        claims = _claims(self._storage, request, "upload")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != TUS_CONTENT_TYPE:
            raise InvalidArgument(
                f"Content-Type must be {TUS_CONTENT_TYPE}", reason="UNSUPPORTED_MEDIA_TYPE"
            )
        offset = _parse_offset(request.headers.get("Upload-Offset"))
        socket_body = _SocketBody.of(request)
        try:
            result = await self._storage.upload(
                claims.volume,
                claims.folder,
                claims.path,
                offset=offset,
                total_size=claims.size,
                chunks=_body(request),
                socket_body=socket_body,
            )
        except (ConnectionError, asyncio.IncompleteReadError, web.HTTPException) as exc:
            log.info("upload of %s interrupted by the client (%s); bytes kept", claims.path, exc)
            response = web.Response(status=400)
        else:
            response = web.Response(
                status=204, headers={**_TUS_HEADERS, "Upload-Offset": str(result.offset)}
            )
        if socket_body is not None and socket_body.taken:
            # the parser never saw the spliced bytes: this connection cannot carry another
            # request. The client reconnects for its next PATCH (one per 16 MiB or so).
            request.content.feed_eof()
            response.force_close()
        return response

    async def download(self, request: web.Request) -> web.StreamResponse:
        claims = _claims(self._storage, request, "download")
        entry, probe = await self._storage.open_download(
            claims.volume, claims.folder, claims.path, offset=0, length=0
        )  # the size of the file itself, through an in-folder symlink too
        await probe.aclose()
        size = entry.size
        start, end, status = 0, size, 200
        if (spec := request.headers.get("Range")) is not None:
            bounds = _parse_range(spec, size)
            if bounds is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            start, end, status = *bounds, 206
        entry, stream = await self._storage.open_download(
            claims.volume, claims.folder, claims.path, offset=start, length=end - start
        )
        async with contextlib.aclosing(stream):
            name = claims.path.rsplit("/", 1)[-1]
            headers = {
                "Content-Length": str(end - start),
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
                "Cache-Control": "no-store",
            }
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
            response = web.StreamResponse(status=status, headers=headers)
            if request.method == "HEAD":
                return response
            await response.prepare(request)
            if isinstance(stream, LocalFileStream):
                await _sendfile(request, response, stream)
            else:
                async for chunk in stream:
                    await response.write(chunk)
            await response.write_eof()
            return response


async def _sendfile(
    request: web.Request, response: web.StreamResponse, stream: LocalFileStream
) -> None:
    """Sends a local file's range with ``sendfile(2)``: the bytes never enter Python."""
    fd, start, end = stream.file_region()
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    file: IO[Any] = open(fd, "rb", buffering=0, closefd=False)  # noqa: ASYNC230 (wraps an fd)
    with file:
        if end > start:
            # asyncio pauses the protocol, flushes the headers, then loops over sendfile(2)
            # with backpressure (or reads and writes when the transport cannot sendfile)
            await asyncio.get_running_loop().sendfile(transport, file, start, end - start)


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


class _SocketBody:
    """A PATCH body handed over whole from the connection's socket (see :class:`SocketBody`).

    Taking it pauses the transport, pulls what the HTTP parser already buffered (written
    first), then moves the rest from the socket to the file with ``splice(2)`` through a pipe
    in a worker thread: the bytes never enter Python, which is what lets an upload approach
    disk speed. Only for plain ``Content-Length`` bodies on a TCP socket.
    """

    def __init__(self, request: web.Request, transport: asyncio.Transport, sock_fd: int) -> None:
        self._request = request
        self._transport = transport
        self._sock_fd = sock_fd
        self.length = request.content_length or 0
        self.taken = False

    @classmethod
    def of(cls, request: web.Request) -> _SocketBody | None:
        transport = request.transport
        if (
            not _CAN_SPLICE
            or not isinstance(transport, asyncio.Transport)
            or not request.content_length
            or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        ):
            return None
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        if transport.get_extra_info("sslcontext") is not None:
            return None  # the socket carries ciphertext
        return cls(request, transport, sock.fileno())

    async def splice_to(self, fd: int, offset: int) -> None:
        self.taken = True
        self._transport.pause_reading()
        buffered: list[bytes] = []
        while chunk := self._request.content.read_nowait(-1):  # may resume the transport
            buffered.append(chunk)
        self._transport.pause_reading()  # no await since the first pause: nothing slipped in
        prefix = b"".join(buffered)
        if len(prefix) > self.length:
            raise InvalidArgument("body longer than Content-Length", reason="BAD_BODY")
        await asyncio.to_thread(
            _splice_body, self._sock_fd, fd, offset, prefix, self.length - len(prefix)
        )


_CAN_SPLICE = hasattr(os, "splice")
_PIPE_BYTES = 1 << 20
_IDLE_TIMEOUT_MS = 60_000


def _splice_body(sock_fd: int, fd: int, offset: int, prefix: bytes, remaining: int) -> None:
    """``prefix`` then ``remaining`` bytes from a non-blocking socket into ``fd`` at ``offset``:
    socket -> pipe -> file, all inside the kernel. Raises ConnectionError on EOF or an idle
    minute (the bytes moved so far stay in the file)."""
    view = memoryview(prefix)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    try:
        while remaining > 0:
            try:
                moved = os.splice(
                    sock_fd,
                    write_end,
                    min(remaining, _PIPE_BYTES),
                    flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK,
                )
            except BlockingIOError:
                if not poller.poll(_IDLE_TIMEOUT_MS):
                    raise ConnectionResetError("the client stalled for a minute") from None
                continue
            if moved == 0:
                raise ConnectionResetError("the client closed the connection mid-body")
            remaining -= moved
            while moved:  # drain the pipe into the file before taking more
                written = os.splice(read_end, fd, moved, offset_dst=offset)
                moved, offset = moved - written, offset + written
    finally:
        os.close(read_end)
        os.close(write_end)


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    # each block as the parser received it: no re-buffering, no copy
    async for chunk in request.content.iter_any():
        if chunk:
            yield chunk


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_and_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except BaiError as exc:
        log.info("%s %s: %s: %s", request.method, request.path, exc.reason, exc.message)
        response = problem_response(exc)
    except web.HTTPException as exc:
        response = _http_problem(exc.status, exc.reason)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as exc:
        log.error("%s %s failed", request.method, request.path, exc_info=exc)
        response = problem_response(InternalError("unexpected error in the storage proxy"))
    return response


def _http_problem(status: int, detail: str) -> web.Response:
    body: dict[str, object] = {
        "type": PROBLEM_BASE + ("generic-not-found" if status == 404 else "generic-bad-request"),
        "title": "Unknown URL path." if status == 404 else "Bad request.",
        "msg": detail,
        "data": {},
        "reason": "HTTP_ERROR",
    }
    return web.json_response(body, status=status)


async def _add_cors(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_CORS_HEADERS)


def transfer_app(storage: StorageService) -> web.Application:
    """The transfer endpoint over ``storage``."""
    ep = _TransferEndpoints(storage)
    # no body size limit here: uploads are streamed, sizes are bound by the token and quota
    app = web.Application(middlewares=[_errors_and_cors], client_max_size=1 << 62)
    app.router.add_route("OPTIONS", "/upload", _upload_options)
    app.router.add_route("HEAD", "/upload", ep.upload_head)
    app.router.add_route("PATCH", "/upload", ep.upload_patch)
    app.router.add_route("GET", "/download", ep.download)  # also answers HEAD
    app.on_response_prepare.append(_add_cors)
    return app

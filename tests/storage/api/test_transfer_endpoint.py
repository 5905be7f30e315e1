"""The HTTP transfer endpoint: tus.io uploads and ranged downloads, authorized by tokens.

The resume test runs the proxy as ``python -m bai.storage serve`` and kills it with SIGKILL in
the middle of an upload.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.storage.v1 import storage_service_pb2 as pb
from bai.pb.storage.v1 import storage_service_pb2_grpc as pb_grpc
from bai.storage.config import StorageConfig, VolumeConfig
from bai.storage.domain import TransferClaims, TransferTokens
from bai.storage.server import RunningProxy, running_proxy

TOKEN = "svc-token"
SECRET = "transfer-secret"
MD = ((SERVICE_TOKEN_KEY, TOKEN),)
T = 10
TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
async def proxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningProxy]:
    root = tmp_path_factory.mktemp("transfer-vol")
    config = StorageConfig(
        service_token=TOKEN,
        listen="127.0.0.1:0",
        transfer_listen="127.0.0.1:0",
        transfer_secret=SECRET,
        volumes=(VolumeConfig("local", "fs", {"path": str(root)}),),
    )
    async with running_proxy(config) as running:
        yield running


async def grant(
    port: int, folder_id: str, path: str, op: int, size: int = 0, create: bool = False
) -> tuple[str, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.StorageServiceStub(channel)
        if create:
            req = pb.CreateFolderRequest(volume="local", folder_id=folder_id)
            await stub.CreateFolder(req, metadata=MD, timeout=T)
        resp = await stub.CreateTransferToken(
            pb.CreateTransferTokenRequest(
                volume="local", folder_id=folder_id, path=path, operation=op, size_bytes=size
            ),
            metadata=MD,
            timeout=T,
        )
    return resp.url, resp.token


def assert_problem(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body: dict[str, object] = resp.json()
    assert str(body["type"]).startswith("https://api.backend.ai/probs/")
    assert body["title"] and "msg" in body
    return body


async def test_tus_upload_and_ranged_download(proxy: RunningProxy) -> None:
    folder_id = str(uuid.uuid4())
    data = os.urandom(300_000)
    url, token = await grant(
        proxy.grpc_port, folder_id, "dir/f.bin", pb.TRANSFER_OPERATION_UPLOAD, len(data), True
    )
    async with httpx.AsyncClient(timeout=T) as http:
        options = await http.options(url)
        assert options.status_code == 204 and options.headers["Tus-Version"] == "1.0.0"
        head = await http.head(url, params={"token": token})
        assert head.headers["Upload-Offset"] == "0"
        assert head.headers["Upload-Length"] == str(len(data))
        offset = 0
        for size in (100_000, 100_000, 100_000):
            resp = await http.patch(
                url,
                params={"token": token},
                headers={**TUS, "Upload-Offset": str(offset)},
                content=data[offset : offset + size],
            )
            assert resp.status_code == 204, resp.text
            offset += size
            assert resp.headers["Upload-Offset"] == str(offset)
        head = await http.head(url, params={"token": token})
        assert head.headers["Upload-Offset"] == str(len(data))  # done: the full size
        stale = await http.patch(
            url, params={"token": token}, headers={**TUS, "Upload-Offset": "5"}, content=b"x"
        )
        body = assert_problem(stale, 409)
        assert body["reason"] == "UPLOAD_OFFSET_MISMATCH"

        durl, dtoken = await grant(
            proxy.grpc_port, folder_id, "dir/f.bin", pb.TRANSFER_OPERATION_DOWNLOAD
        )
        full = await http.get(durl, params={"token": dtoken})
        assert full.status_code == 200 and full.content == data
        assert full.headers["Content-Length"] == str(len(data))
        assert "f.bin" in full.headers["Content-Disposition"]
        part = await http.get(durl, params={"token": dtoken}, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        assert part.headers["Content-Length"] == "10"
        tail = await http.get(durl, params={"token": dtoken}, headers={"Range": "bytes=-7"})
        assert tail.status_code == 206 and tail.content == data[-7:]
        resume = await http.get(durl, params={"token": dtoken}, headers={"Range": "bytes=299990-"})
        assert resume.content == data[299_990:]
        bad = await http.get(durl, params={"token": dtoken}, headers={"Range": "bytes=400000-"})
        assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(data)}"
        # an upload token does not download, nor a download token upload
        assert_problem(await http.get(durl, params={"token": token}), 401)
        wrong = await http.patch(
            url, params={"token": dtoken}, headers={**TUS, "Upload-Offset": "0"}, content=b"x"
        )
        assert_problem(wrong, 401)


async def test_expired_forged_and_missing_tokens(proxy: RunningProxy) -> None:
    folder_id = str(uuid.uuid4())
    url, token = await grant(
        proxy.grpc_port, folder_id, "a.txt", pb.TRANSFER_OPERATION_UPLOAD, 1, True
    )
    base = url.rsplit("/", 1)[0]
    expired = TransferTokens(SECRET).issue(
        TransferClaims("download", "local", folder_id, "a.txt", 0, int(time.time()) - 1)
    )
    forged = TransferTokens("not-the-secret").issue(
        TransferClaims("download", "local", folder_id, "a.txt", 0, int(time.time()) + 60)
    )
    header, payload, sig = token.split(".")
    tampered = f"{header}.{payload[:-2]}AA.{sig}"
    async with httpx.AsyncClient(timeout=T) as http:
        body = assert_problem(await http.get(f"{base}/download", params={"token": expired}), 401)
        assert body["reason"] == "TRANSFER_TOKEN_EXPIRED"
        body = assert_problem(await http.get(f"{base}/download", params={"token": forged}), 401)
        assert body["reason"] == "TRANSFER_TOKEN_INVALID"
        assert (await http.head(url, params={"token": tampered})).status_code == 401  # no body
        tampered_patch = await http.patch(
            url, params={"token": tampered}, headers={**TUS, "Upload-Offset": "0"}, content=b"x"
        )
        assert_problem(tampered_patch, 401)
        assert_problem(await http.get(f"{base}/download"), 401)
        patch = await http.patch(url, params={"token": token}, content=b"x")  # no tus headers
        assert_problem(patch, 400)
        assert_problem(await http.get(f"{base}/nowhere"), 404)


async def test_empty_file_needs_no_patch(proxy: RunningProxy) -> None:
    folder_id = str(uuid.uuid4())
    await grant(proxy.grpc_port, folder_id, "empty", pb.TRANSFER_OPERATION_UPLOAD, 0, True)
    url, token = await grant(proxy.grpc_port, folder_id, "empty", pb.TRANSFER_OPERATION_DOWNLOAD)
    async with httpx.AsyncClient(timeout=T) as http:
        resp = await http.get(url, params={"token": token})
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["Content-Length"] == "0"


# the proxy as a process, killed mid-upload ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_proxy(cwd: Path, grpc_port: int, http_port: int) -> subprocess.Popen[bytes]:
    config = cwd / "volumes.toml"
    log = (cwd / "proxy.log").open("ab")
    cmd = [
        sys.executable, "-m", "bai.storage", "serve",
        "--listen", f"127.0.0.1:{grpc_port}",
        "--transfer-listen", f"127.0.0.1:{http_port}",
        "--service-token", TOKEN,
        "--volumes-config", str(config),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stderr=log,
        env={**os.environ, "BAI_STORAGE_TRANSFER_SECRET": SECRET},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, (cwd / "proxy.log").read_text()
        try:
            with socket.create_connection(("127.0.0.1", grpc_port), timeout=0.2):
                pass
            with socket.create_connection(("127.0.0.1", http_port), timeout=0.2):
                log.close()
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the storage proxy did not start")


async def test_upload_resumes_after_the_proxy_is_killed(tmp_path: Path) -> None:
    (tmp_path / "volumes.toml").write_text(
        '[[volumes]]\nname = "local"\nbackend = "fs"\noptions = { path = "vfroot/local" }\n'
    )
    grpc_port, http_port = _free_port(), _free_port()
    chunks = [os.urandom(256 << 10) for _ in range(3)]
    data = b"".join(chunks)
    folder_id = str(uuid.uuid4())
    proc = _start_proxy(tmp_path, grpc_port, http_port)
    try:
        url, token = await grant(
            grpc_port, folder_id, "big.bin", pb.TRANSFER_OPERATION_UPLOAD, len(data), True
        )
        assert url == f"http://127.0.0.1:{http_port}/upload"
        half = len(chunks[1]) // 2
        streamed = asyncio.Event()

        async def second_chunk() -> AsyncIterator[bytes]:
            yield chunks[1][:half]
            streamed.set()
            await asyncio.sleep(3600)  # the rest never comes: the proxy dies first
            yield chunks[1][half:]

        async with httpx.AsyncClient(timeout=T) as http:
            first = await http.patch(
                url, params={"token": token}, headers={**TUS, "Upload-Offset": "0"},
                content=chunks[0],
            )  # fmt: skip
            assert first.status_code == 204
            pending = asyncio.create_task(
                http.patch(
                    url,
                    params={"token": token},
                    headers={**TUS, "Upload-Offset": first.headers["Upload-Offset"]},
                    content=second_chunk(),
                )
            )
            await streamed.wait()
            await asyncio.sleep(0.3)  # let the proxy write what it got
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            pending.cancel()  # the client would notice at its next write
            with pytest.raises(asyncio.CancelledError):
                await pending
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    proc = _start_proxy(tmp_path, grpc_port, http_port)
    try:
        async with httpx.AsyncClient(timeout=T) as http:
            head = await http.head(url, params={"token": token})
            assert head.status_code == 200
            offset = int(head.headers["Upload-Offset"])
            assert len(chunks[0]) <= offset <= len(chunks[0]) + half
            while offset < len(data):
                resp = await http.patch(
                    url, params={"token": token}, headers={**TUS, "Upload-Offset": str(offset)},
                    content=data[offset : offset + (256 << 10)],
                )  # fmt: skip
                assert resp.status_code == 204, resp.text
                offset = int(resp.headers["Upload-Offset"])
            durl, dtoken = await grant(
                grpc_port, folder_id, "big.bin", pb.TRANSFER_OPERATION_DOWNLOAD
            )
            got = await http.get(durl, params={"token": dtoken})
            assert got.status_code == 200 and got.content == data
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(10) == 0  # a graceful stop on SIGTERM
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_download_through_an_in_folder_symlink(proxy: RunningProxy) -> None:
    folder_id = str(uuid.uuid4())
    url, token = await grant(
        proxy.grpc_port, folder_id, "real.txt", pb.TRANSFER_OPERATION_UPLOAD, 5, True
    )
    async with httpx.AsyncClient(timeout=T) as http:
        resp = await http.patch(
            url, params={"token": token}, headers={**TUS, "Upload-Offset": "0"}, content=b"hello"
        )
        assert resp.status_code == 204
        mount = proxy.storage.backend("local").mount_path(uuid.UUID(folder_id))
        assert mount is not None
        os.symlink("real.txt", os.path.join(mount, "alias.txt"))
        durl, dtoken = await grant(
            proxy.grpc_port, folder_id, "alias.txt", pb.TRANSFER_OPERATION_DOWNLOAD
        )
        got = await http.get(durl, params={"token": dtoken})
        assert got.content == b"hello" and got.headers["Content-Length"] == "5"


async def test_a_client_that_leaves_mid_patch_keeps_what_it_sent(proxy: RunningProxy) -> None:
    # PATCH bodies go socket -> file with splice(2): a body cut short must still count, and
    # the next PATCH (on a new connection: a spliced one is closed) continues from there
    folder_id = str(uuid.uuid4())
    data = os.urandom(3 << 20)
    url, token = await grant(
        proxy.grpc_port, folder_id, "cut.bin", pb.TRANSFER_OPERATION_UPLOAD, len(data), True
    )
    sent = 1 << 20
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.transfer_port)
    writer.write(
        (
            f"PATCH /upload?token={token} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: {TUS['Content-Type']}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:sent]
    )
    await writer.drain()
    async with httpx.AsyncClient(timeout=T) as http:
        for _ in range(500):  # the proxy writes what arrives, while the request is still open
            held = int((await http.head(url, params={"token": token})).headers["Upload-Offset"])
            if held == sent:
                break
            await asyncio.sleep(0.01)
        assert held == sent
        writer.close()  # the client goes away mid-body
        await writer.wait_closed()
        assert await reader.read() == b""  # no response: the request never completed
        for _ in range(500):
            head = await http.head(url, params={"token": token})
            if int(head.headers["Upload-Offset"]) == sent:
                break
            await asyncio.sleep(0.01)
        resp = await http.patch(
            url,
            params={"token": token},
            headers={**TUS, "Upload-Offset": str(sent)},
            content=data[sent:],
        )
        assert resp.status_code == 204, resp.text
        assert resp.headers["Upload-Offset"] == str(len(data))
        assert resp.headers.get("Connection", "").lower() == "close"
        durl, dtoken = await grant(proxy.grpc_port, folder_id, "cut.bin", 2)
        assert (await http.get(durl, params={"token": dtoken})).content == data

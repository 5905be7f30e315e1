"""vfolder transfers through the storage proxy: throughput vs ``cp``, resume after a kill, batches.

Starts a real storage proxy process (one fs volume in a temp dir on ``--dir``) and measures, in
one run:

1. **upload**: a random file through the tus.io endpoint, with three clients: aiohttp (16 MiB
   PATCHes, as Backend.AI's official client sends them), curl and a raw-socket "zero-copy"
   client (one PATCH of the whole file; C / sendfile(2), so the figure is the proxy's own
   speed, not the client's); the proxy fsyncs the file once before
   publishing it. Against ``cp`` of the same file to the same disk followed by ``sync``;
2. **download**: one ``GET`` written to a file and fsynced (aiohttp; a raw-socket "zero-copy"
   client that splices the body into the file) or synced (curl), against ``cp`` + ``sync``;
3. **resume**: the same upload, with the proxy killed (SIGKILL) in the middle of a PATCH once
   half the file is there; the proxy is restarted, the client asks ``HEAD`` for the offset and
   finishes; the downloaded file must match the source's SHA-256;
4. **batch**: 1,000 small files uploaded at once (32 in flight), each with its own token and
   PATCH; every one must succeed and the folder must then list 1,000 files.

The headline uses the faster client of each direction. The machine is shared: run it a
few times and read the ratios with that noise in mind (each figure is the best of ``--repeat``
alternating rounds, the same rule for ``cp`` and the proxy). Last line:
``upload_vs_cp=<x> download_vs_cp=<y>`` (throughput ratios; 1.0 = as fast as cp).

    .venv/bin/python bench/vfolder.py [--size-mib 1024] [--dir /tmp] [--files 1000]
                                      [--repeat 3] [--profile proxy.pstats]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import grpc
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.storage.v1 import storage_service_pb2 as pb
from bai.pb.storage.v1 import storage_service_pb2_grpc as pb_grpc

CHUNK = 16 << 20
TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
VOLUME = "local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """The storage proxy as a child process, restartable on the same ports and secret."""

    def __init__(self, work: Path, profile: str | None) -> None:
        self.token = secrets.token_hex(8)
        self.grpc_addr = f"127.0.0.1:{_free_port()}"
        self.transfer_addr = f"127.0.0.1:{_free_port()}"
        self.config = work / "volumes.toml"
        self.config.write_text(
            f'transfer_secret = "{secrets.token_hex(16)}"\n'
            f'[[volumes]]\nname = "{VOLUME}"\nbackend = "fs"\n'
            f'options = {{ path = "{work / "vol"}" }}\n'
        )
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, *, profile: bool = False) -> None:
        cprofile = ["-m", "cProfile", "-o", self.profile] if profile and self.profile else []
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            [sys.executable, *cprofile, "-m", "bai.storage", "serve",
             "--listen", self.grpc_addr, "--transfer-listen", self.transfer_addr,
             "--service-token", self.token, "--volumes-config", str(self.config),
             "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"storage proxy exited {self.proc.returncode}")
            async with grpc.aio.insecure_channel(self.grpc_addr) as ch:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ch.channel_ready(), 0.5)
                    host, port = self.transfer_addr.split(":")
                    _, writer = await asyncio.open_connection(host, int(port))
                    writer.close()
                    return
        raise RuntimeError("storage proxy did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((SERVICE_TOKEN_KEY, self.token),)


async def _token(
    proxy: Proxy, stub: pb_grpc.StorageServiceStub, folder: str, path: str, *, size: int = 0
) -> tuple[str, str]:
    op = pb.TRANSFER_OPERATION_UPLOAD if size else pb.TRANSFER_OPERATION_DOWNLOAD
    resp = await stub.CreateTransferToken(
        pb.CreateTransferTokenRequest(
            volume=VOLUME, folder_id=folder, path=path, size_bytes=size, operation=op
        ),
        metadata=proxy.metadata,
        wait_for_ready=True,
    )
    return resp.url, resp.token


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left > 0:
            block = os.urandom(min(left, CHUNK))
            digest.update(block)
            f.write(block)
            left -= len(block)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def _cp(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    subprocess.run(["sync", str(dst)], check=False)
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


async def _patch(http: aiohttp.ClientSession, url: str, token: str, offset: int,
                 body: bytes | AsyncIterator[bytes]) -> int:
    async with http.patch(url, params={"token": token}, data=body,
                          headers={**TUS, "Upload-Offset": str(offset)}) as r:
        if r.status != 204:
            raise RuntimeError(f"PATCH at {offset}: {r.status} {await r.text()}")
        return int(r.headers["Upload-Offset"])


async def _upload(http: aiohttp.ClientSession, url: str, token: str, src: Path, size: int,
                  offset: int = 0, *, stop_at: int | None = None) -> int:
    """PATCHes ``src`` from ``offset``; returns the offset reached (``stop_at`` ends early)."""
    with src.open("rb", buffering=0) as f:
        while offset < size and (stop_at is None or offset < stop_at):
            f.seek(offset)
            offset = await _patch(http, url, token, offset, f.read(CHUNK))
    return offset


async def _download(http: aiohttp.ClientSession, url: str, token: str, target: Path) -> None:
    """GETs a file into ``target`` and fsyncs it."""
    async with http.get(url, params={"token": token}) as r:
        if r.status != 200:
            raise RuntimeError(f"GET: {r.status} {await r.text()}")
        with target.open("wb", buffering=0) as out:
            async for block in r.content.iter_any():
                out.write(block)
            os.fsync(out.fileno())


async def _curl(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("curl", "-sS", "-f", "-H", "Expect:", *args)
    if await proc.wait() != 0:
        raise RuntimeError(f"curl {' '.join(args)} failed")


async def _curl_upload(url: str, token: str, src: Path) -> None:
    """One tus PATCH with the whole file (a valid tus client; curl streams it from disk)."""
    await _curl("-X", "PATCH", "-T", str(src), "-H", "Tus-Resumable: 1.0.0",
                "-H", f"Content-Type: {TUS['Content-Type']}", "-H", "Upload-Offset: 0",
                f"{url}?token={token}")


async def _curl_download(url: str, token: str, target: Path) -> None:
    await _curl("-o", str(target), f"{url}?token={token}")
    proc = await asyncio.create_subprocess_exec("sync", str(target))  # as cp's baseline does
    await proc.wait()


def _splice_download_sync(url: str, token: str, target: Path) -> None:
    """A minimal HTTP/1.1 GET whose body goes socket -> pipe -> file with splice(2) (a client
    that costs nothing, so the figure is the proxy's), then fsync, as the other clients."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80)) as sock:
        sock.sendall(f"GET {parts.path}?token={token} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Connection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise RuntimeError("no response headers")
            head += data
        head, prefix = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise RuntimeError(f"GET: {status.decode()}")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                      if line.lower().startswith(b"content-length:"))
        read_end, write_end = os.pipe()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            offset = os.write(fd, prefix)
            while offset < length:
                moved = os.splice(sock.fileno(), write_end, min(length - offset, 1 << 20))
                if not moved:
                    raise RuntimeError("the body ended early")
                while moved:
                    written = os.splice(read_end, fd, moved)
                    moved, offset = moved - written, offset + written
            os.fsync(fd)
        finally:
            os.close(fd)
            os.close(read_end)
            os.close(write_end)


def _sendfile_upload_sync(url: str, token: str, src: Path, size: int) -> None:
    """One tus PATCH of the whole file whose body leaves with sendfile(2): the mirror of the
    splice download client, so the figure is the proxy's."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80)) as sock, \
            src.open("rb", buffering=0) as f:
        sock.sendall(f"PATCH {parts.path}?token={token} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"Tus-Resumable: 1.0.0\r\nContent-Type: {TUS['Content-Type']}\r\n"
                     f"Upload-Offset: 0\r\nContent-Length: {size}\r\n\r\n".encode())
        offset = 0
        while offset < size:
            sent = os.sendfile(sock.fileno(), f.fileno(), offset, size - offset)
            if not sent:
                raise RuntimeError("the connection closed mid-body")
            offset += sent
        status = sock.recv(4096).split(b"\r\n", 1)[0]
        if b" 204 " not in status + b" ":
            raise RuntimeError(f"PATCH: {status.decode()}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


async def _resume_after_kill(proxy: Proxy, stub: pb_grpc.StorageServiceStub,
                             http: aiohttp.ClientSession, folder: str, src: Path, size: int,
                             work: Path) -> tuple[int, int, float]:
    """Kills the proxy mid-PATCH past 50%; returns (offset at the kill, offset after restart,
    seconds the whole upload took)."""
    url, token = await _token(proxy, stub, folder, "resumed.bin", size=size)
    start = time.perf_counter()
    offset = await _upload(http, url, token, src, size, stop_at=size // 2)

    async def body_then_kill() -> AsyncIterator[bytes]:
        with src.open("rb", buffering=0) as f:
            f.seek(offset)
            for i in range(CHUNK >> 20):
                if i == 4:  # 4 MiB of this PATCH are on the wire: the proxy dies
                    proxy.kill()
                yield f.read(1 << 20)

    with contextlib.suppress(aiohttp.ClientError, RuntimeError):
        await _patch(http, url, token, offset, body_then_kill())
        raise RuntimeError("the PATCH survived the kill")
    killed_at = offset
    await proxy.start()
    async with http.head(url, params={"token": token}, headers=TUS) as r:
        held = int(r.headers["Upload-Offset"])
    await _upload(http, url, token, src, size, held)
    elapsed = time.perf_counter() - start
    down_url, down_token = await _token(proxy, stub, folder, "resumed.bin")
    target = work / "resumed.bin"
    await _download(http, down_url, down_token, target)
    if _sha256(target) != _sha256(src):
        raise RuntimeError("the resumed upload does not match the source")
    target.unlink()
    return killed_at, held, elapsed


async def _batch(proxy: Proxy, stub: pb_grpc.StorageServiceStub, http: aiohttp.ClientSession,
                 count: int) -> tuple[int, float]:
    """Uploads ``count`` small files at once; returns (failures, seconds)."""
    folder = str(uuid.uuid4())
    await stub.CreateFolder(pb.CreateFolderRequest(volume=VOLUME, folder_id=folder),
                            metadata=proxy.metadata)
    gate = asyncio.Semaphore(32)
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        data = os.urandom(1024 + i)
        async with gate:
            try:
                path = f"batch/f{i:04d}.bin"
                url, token = await _token(proxy, stub, folder, path, size=len(data))
                if await _patch(http, url, token, 0, data) != len(data):
                    raise RuntimeError("short upload")
            except Exception as exc:  # every failure counts, whatever it is
                failures += 1
                print(f"file {i}: {exc}", file=sys.stderr)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - start
    listed = await stub.ListFiles(pb.ListFilesRequest(volume=VOLUME, folder_id=folder,
                                                      path="batch", page_size=5000),
                                  metadata=proxy.metadata)
    usage = await stub.GetFolderUsage(pb.GetFolderUsageRequest(volume=VOLUME, folder_id=folder),
                                      metadata=proxy.metadata)
    if len(listed.files) != count - failures or usage.file_count != count - failures:
        raise RuntimeError(f"listed {len(listed.files)}, counted {usage.file_count} files")
    return failures, elapsed


async def run(args: argparse.Namespace) -> int:
    size = args.size_mib << 20
    mib = size / (1 << 20)
    work = Path(tempfile.mkdtemp(prefix="bai-bench-vf-", dir=args.dir))
    proxy = Proxy(work, args.profile)
    try:
        await proxy.start(profile=True)
        src = work / "src.bin"
        _write_random(src, size)
        folder = str(uuid.uuid4())
        connector = aiohttp.TCPConnector(limit=64)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
        async with grpc.aio.insecure_channel(proxy.grpc_addr) as ch, \
                aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            stub = pb_grpc.StorageServiceStub(ch)  # type: ignore[no-untyped-call]
            await stub.CreateFolder(pb.CreateFolderRequest(volume=VOLUME, folder_id=folder),
                                    metadata=proxy.metadata)
            best: dict[str, float] = {}

            def keep(key: str, seconds: float) -> None:
                best[key] = min(best.get(key, float("inf")), seconds)

            clients = ["aiohttp", "curl"] if shutil.which("curl") else ["aiohttp"]
            if hasattr(os, "splice"):
                clients.append("zero-copy")  # sendfile(2) up, splice(2) down
            for round_ in range(args.repeat):  # alternate, keep the best of each: less noise
                for client in clients:
                    name = f"big-{client}-{round_}.bin"
                    url, token = await _token(proxy, stub, folder, name, size=size)
                    keep("cp_up", _cp(src, work / "cp-up.bin"))
                    start = time.perf_counter()
                    if client == "curl":
                        await _curl_upload(url, token, src)
                    elif client == "aiohttp":
                        await _upload(http, url, token, src, size)
                    else:
                        await asyncio.to_thread(_sendfile_upload_sync, url, token, src, size)
                    keep(f"up_{client}", time.perf_counter() - start)

                    url, token = await _token(proxy, stub, folder, name)
                    keep("cp_down", _cp(src, work / "cp-down.bin"))
                    target = work / "down.bin"
                    start = time.perf_counter()
                    if client == "curl":
                        await _curl_download(url, token, target)
                    elif client == "aiohttp":
                        await _download(http, url, token, target)
                    else:
                        await asyncio.to_thread(_splice_download_sync, url, token, target)
                    keep(f"down_{client}", time.perf_counter() - start)
                    if target.stat().st_size != size or _sha256(target) != _sha256(src):
                        raise RuntimeError(f"{client}: the downloaded file differs from the source")
                    target.unlink()
                    await stub.DeleteFiles(pb.DeleteFilesRequest(  # keep the disk's load even
                        volume=VOLUME, folder_id=folder, paths=[name]), metadata=proxy.metadata)
            print(f"size={mib:.0f} MiB on {args.dir}, best of {args.repeat} alternating rounds")
            rows = [("cp (upload baseline)", "cp_up")]
            rows += [(f"tus upload, {c} client", f"up_{c}") for c in clients]
            rows += [("cp (download baseline)", "cp_down")]
            rows += [(f"GET download, {c} client", f"down_{c}") for c in clients]
            for label, key in rows:
                print(f"{label:31} {best[key]:7.2f} s  {mib / best[key]:8.1f} MiB/s")
            # the headline: the best client (curl / zero-copy show the proxy's own speed;
            # aiohttp adds Python's copies on the client side, on the same 2 cores)
            t_up = min(best[f"up_{c}"] for c in clients)
            t_down = min(best[f"down_{c}"] for c in clients)
            cp_up, cp_down = best["cp_up"], best["cp_down"]
            if args.profile:  # the profile covers the two timed transfers only
                proxy.stop()
                await proxy.start()

            killed, held, t_resume = await _resume_after_kill(
                proxy, stub, http, folder, src, size, work)
            print(f"resume: proxy killed at {killed >> 20} MiB (mid-PATCH), restarted holding"
                  f" {held >> 20} MiB; finished in {t_resume:.2f} s, SHA-256 matches")

        # a fresh channel: the old one may still be backing off from the killed proxy
        async with grpc.aio.insecure_channel(proxy.grpc_addr) as ch, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64),
                                      timeout=timeout) as http:
            stub = pb_grpc.StorageServiceStub(ch)  # type: ignore[no-untyped-call]
            failures, t_batch = await _batch(proxy, stub, http, args.files)
            print(f"batch: {args.files} small files in {t_batch:.2f} s"
                  f" ({args.files / t_batch:.0f} files/s), failures={failures}")
        print(f"upload_vs_cp={cp_up / t_up:.2f} download_vs_cp={cp_down / t_down:.2f}")
        return 1 if failures else 0
    finally:
        proxy.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="disk to test on")
    parser.add_argument("--files", type=int, default=1000, help="small files in the batch")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (best one counts)")
    parser.add_argument("--profile", help="cProfile the proxy during the timed transfers")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

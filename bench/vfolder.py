"""vfolder transfer throughput: upload and download through the storage proxy vs ``cp``.

Starts a real storage proxy process (one fs volume in a temp dir), creates a folder over gRPC,
uploads a random file through the tus.io transfer endpoint (16 MiB PATCHes, as the official
client sends them) and downloads it with one GET; each is timed against ``cp`` of the same file
on the same disk in the same run. Last line: ``upload_vs_cp=<x> download_vs_cp=<y>`` (throughput
ratios; 1.0 = as fast as cp).

    .venv/bin/python bench/vfolder.py [--size-mib 1024] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import httpx
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.storage.v1 import storage_service_pb2 as pb
from bai.pb.storage.v1 import storage_service_pb2_grpc as pb_grpc

CHUNK = 16 << 20
TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_serving(addr: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"storage proxy exited {proc.returncode}")
        with grpc.insecure_channel(addr) as ch:
            try:
                grpc.channel_ready_future(ch).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                pass
    raise RuntimeError("storage proxy did not start")


def _write_random(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, CHUNK)])
            left -= CHUNK
        f.flush()
        os.fsync(f.fileno())


def _cp(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    subprocess.run(["sync", str(dst)], check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="disk to test on")
    args = parser.parse_args()
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="bai-bench-vf-", dir=args.dir))
    token = secrets.token_hex(8)
    grpc_addr, transfer_addr = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    (work / "volumes.toml").write_text(
        f'[[volumes]]\nname = "local"\nbackend = "fs"\noptions = {{ path = "{work / "vol"}" }}\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "bai.storage", "serve", "--listen", grpc_addr,
         "--transfer-listen", transfer_addr, "--service-token", token,
         "--volumes-config", str(work / "volumes.toml"), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_serving(grpc_addr, proc)
        src = work / "src.bin"
        _write_random(src, size)
        md = ((SERVICE_TOKEN_KEY, token),)
        folder = str(uuid.uuid4())
        with grpc.insecure_channel(grpc_addr) as ch:
            stub = pb_grpc.StorageServiceStub(ch)  # type: ignore[no-untyped-call]
            stub.CreateFolder(pb.CreateFolderRequest(volume="local", folder_id=folder),
                              metadata=md)
            up = stub.CreateTransferToken(pb.CreateTransferTokenRequest(
                volume="local", folder_id=folder, path="big.bin", size_bytes=size,
                operation=pb.TRANSFER_OPERATION_UPLOAD), metadata=md)
        cp_up = _cp(src, work / "cp-up.bin")
        with httpx.Client(timeout=300) as http:
            start = time.perf_counter()
            offset = 0
            with src.open("rb") as f:
                while offset < size:
                    chunk = f.read(CHUNK)
                    r = http.patch(up.url, params={"token": up.token}, content=chunk,
                                   headers={**TUS, "Upload-Offset": str(offset)})
                    if r.status_code != 204:
                        raise RuntimeError(f"PATCH at {offset}: {r.status_code} {r.text}")
                    offset = int(r.headers["Upload-Offset"])
            t_up = time.perf_counter() - start
            with grpc.insecure_channel(grpc_addr) as ch:
                stub = pb_grpc.StorageServiceStub(ch)  # type: ignore[no-untyped-call]
                down = stub.CreateTransferToken(pb.CreateTransferTokenRequest(
                    volume="local", folder_id=folder, path="big.bin",
                    operation=pb.TRANSFER_OPERATION_DOWNLOAD), metadata=md)
            cp_down = _cp(src, work / "cp-down.bin")
            start = time.perf_counter()
            target = work / "down.bin"
            with http.stream("GET", down.url, params={"token": down.token}) as r, \
                    target.open("wb") as out:
                if r.status_code != 200:
                    raise RuntimeError(f"GET: {r.status_code}")
                for block in r.iter_raw(1 << 20):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            t_down = time.perf_counter() - start
        if target.stat().st_size != size:
            raise RuntimeError("downloaded size differs")
        mib = size / (1 << 20)
        print(f"size={mib:.0f} MiB on {args.dir}")
        print(f"cp (upload baseline)    {cp_up:7.2f} s  {mib / cp_up:8.1f} MiB/s")
        print(f"tus upload via proxy    {t_up:7.2f} s  {mib / t_up:8.1f} MiB/s")
        print(f"cp (download baseline)  {cp_down:7.2f} s  {mib / cp_down:8.1f} MiB/s")
        print(f"GET download via proxy  {t_down:7.2f} s  {mib / t_down:8.1f} MiB/s")
        print(f"upload_vs_cp={cp_up / t_up:.2f} download_vs_cp={cp_down / t_down:.2f}")
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

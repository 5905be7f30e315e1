"""Real storage servers for the storage proxy's tests, on 127.0.0.1 and free ports.

- S3: moto in server mode (``moto_server`` from PyPI ``moto[server]``);
- Azure Blob: Azurite (npm ``azurite`` in .tools), in memory;
- GCS: ``gcp-storage-emulator`` (PyPI), in memory.

The three start together, once per test session, when a test first needs one. A missing tool
skips the tests that need it, with the install command in the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bai.storage.backends import VolumeBackend, build_backend

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AZURITE = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


@dataclass
class Emulator:
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _launch(cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **kw
    )


def _moto(port: int) -> subprocess.Popen[bytes] | str:
    exe = VENV_BIN / "moto_server"
    if not exe.exists():
        return "moto server missing: pip install 'moto[server]'"
    return _launch([str(exe), "-H", "127.0.0.1", "-p", str(port)])


def _azurite(port: int, workdir: str) -> subprocess.Popen[bytes] | str:
    if not AZURITE.exists() or shutil.which("node") is None:
        return "azurite missing: npm install --prefix .tools azurite"
    cmd = [
        str(AZURITE),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--silent",
    ]  # fmt: skip
    return _launch(cmd, cwd=workdir)  # cwd: where it may leave debug files


def _gcs(port: int) -> subprocess.Popen[bytes] | str:
    exe = VENV_BIN / "gcp-storage-emulator"
    if not exe.exists():
        return "GCS emulator missing: pip install gcp-storage-emulator"
    cmd = [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    return _launch(cmd)


@pytest.fixture(scope="session")
def emulators() -> Iterator[dict[str, Emulator | str]]:
    """The three servers, started together (each is an Emulator, or why it is missing)."""
    workdir = tempfile.mkdtemp(prefix="azurite-")
    ports = {kind: free_port() for kind in ("s3", "azure", "gcs")}
    launched = {
        "s3": _moto(ports["s3"]),
        "azure": _azurite(ports["azure"], workdir),
        "gcs": _gcs(ports["gcs"]),
    }
    servers: dict[str, Emulator | str] = {}
    try:
        for kind, proc in launched.items():
            if isinstance(proc, str):
                servers[kind] = proc
                continue
            servers[kind] = Emulator(ports[kind], proc)
            wait_for_port(ports[kind], proc, kind)
        yield servers
    finally:
        for server in servers.values():
            if isinstance(server, Emulator):
                server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def emulator(request: pytest.FixtureRequest, kind: str) -> Emulator:
    server = request.getfixturevalue("emulators")[kind]
    if isinstance(server, str):
        # `make test` installs every emulator; under CI a missing one is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(server)
        pytest.skip(server)
    return server


def volume_options(kind: str, request: pytest.FixtureRequest, tmp: Path) -> dict[str, Any]:
    """Config options of a fresh volume of ``kind`` on its (started) server."""
    bucket = f"bai-{uuid.uuid4().hex[:12]}"
    if kind == "fs":
        return {"path": str(tmp / "vol")}
    if kind == "s3":
        port = emulator(request, "s3").port
        return {
            "bucket": bucket,
            "endpoint_url": f"http://127.0.0.1:{port}",
            "access_key": "testing",
            "secret_key": "testing",
            "create_bucket": True,
            "prefix": "vol/",
        }
    if kind == "azure":
        port = emulator(request, "azure").port
        conn = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
        return {
            "container": bucket,
            "connection_string": conn,
            "create_container": True,
            "segment_bytes": 64 << 10,
        }
    if kind == "gcs":
        port = emulator(request, "gcs").port
        return {
            "bucket": bucket,
            "api_root": f"http://127.0.0.1:{port}",
            "create_bucket": True,
            "segment_bytes": 64 << 10,
        }
    raise ValueError(kind)


BACKENDS = ["fs", "s3", "azure", "gcs"]


@pytest.fixture(scope="session", params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VolumeBackend]:
    """One started volume per backend type, shared by the tests (each uses new folders)."""
    tmp = tmp_path_factory.mktemp(f"vol-{request.param}")
    volume = build_backend(request.param, volume_options(request.param, request, tmp))
    await volume.start()
    yield volume
    await volume.stop()

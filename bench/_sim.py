"""Shared pieces of the simulated-agent benches: PostgreSQL, a manager process, a fleet process."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from postgres import PostgresServer, free_port, start_postgres
from redis_server import start_redis

PY = sys.executable
TOKEN = "bench-token"
__all__ = ["PY", "TOKEN", "Stack", "free_port", "proc", "stack", "start_postgres"]


@dataclass
class Stack:
    pg: PostgresServer
    db_url: str
    manager: str
    access_key: str
    secret_key: str
    redis_url: str = ""
    """The manager's event bus (empty: in-process)."""

    @property
    def pg_dsn(self) -> str:
        return str(self.pg.dsn)


@contextmanager
def proc(argv: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "wb") as log:
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        yield p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@contextmanager
def stack(log_dir: Path, *manager_args: str, redis: bool = False) -> Iterator[Stack]:
    """PostgreSQL plus a bootstrapped manager process (with ``redis``: and a Redis event bus)."""
    pg = start_postgres()
    extras = ExitStack()
    try:
        redis_url = extras.enter_context(start_redis()).url if redis else ""
        if redis_url:
            manager_args = (*manager_args, "--redis-url", redis_url)
        db_url = pg.url_for("postgres")
        ak, sk = "AKIA" + secrets.token_hex(8).upper(), secrets.token_hex(20)
        subprocess.run([PY, "-m", "bai.manager", "bootstrap", "--db-url", db_url,
                        "--access-key", ak, "--secret-key", sk, "--log-level", "WARNING"],
                       check=True)
        port = free_port()
        argv = [PY, "-m", "bai.manager", "serve", "--listen", f"127.0.0.1:{port}",
                "--db-url", db_url, "--service-token", TOKEN, *manager_args]
        with proc(argv, log_dir / "manager.log"):
            deadline = time.monotonic() + 60
            import socket
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the manager did not start") from None
                    time.sleep(0.1)
            yield Stack(pg, db_url, f"127.0.0.1:{port}", ak, sk, redis_url)
    finally:
        extras.close()
        pg.stop()

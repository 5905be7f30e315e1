"""Shared fixtures: real PostgreSQL and SQLite databases, the Docker engine and the kernel image."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

from postgres import PostgresServer, start_postgres

KERNEL_IMAGE = os.environ.get("BAI_KERNEL_IMAGE", "bai/python:3.11-debian12")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_dsn(pg_server: PostgresServer) -> str:
    """libpq DSN of the throwaway cluster's maintenance database."""
    return pg_server.dsn


def _create_pg_database(server: PostgresServer) -> tuple[str, str]:
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, server.url_for(name)


def _drop_pg_database(server: PostgresServer, name: str) -> None:
    import psycopg

    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database as an async SQLAlchemy URL, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bai.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    name, url = _create_pg_database(server)
    try:
        yield url
    finally:
        _drop_pg_database(server, name)


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Fails (not skips) when the Docker engine or the kernel image is missing: CI provides both."""
    probe = subprocess.run(["docker", "image", "inspect", KERNEL_IMAGE], capture_output=True)
    if probe.returncode != 0:
        pytest.fail(f"Docker engine or image {KERNEL_IMAGE} unavailable: run `make deps image`")


@pytest.fixture(autouse=True)
def _require_docker_for_marked(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_ready")

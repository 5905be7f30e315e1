from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster import STARTED_AGENT_IDS, Cluster, remove_kernels_of, start_cluster
from postgres import PostgresServer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker_ready: None
) -> Iterator[Cluster]:
    """A running manager + agent + gateway, once per database backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'manager.db'}"
        drop = None
    else:
        import psycopg

        server: PostgresServer = request.getfixturevalue("pg_server")
        name = "e2e_" + request.module.__name__.rsplit(".", 1)[-1][:40]
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url, drop = server.url_for(name), (server, name)
    c = start_cluster(url)
    try:
        yield c
    finally:
        c.shutdown()
        if drop is not None:
            import psycopg

            with psycopg.connect(drop[0].dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{drop[1]}" WITH (FORCE)')


@pytest.fixture(scope="session", autouse=True)
def _sweep_kernels() -> Iterator[None]:
    """Whatever a failed test left behind, no kernel container outlives the test session."""
    yield
    remove_kernels_of(STARTED_AGENT_IDS)

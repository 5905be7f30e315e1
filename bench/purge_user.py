"""``purge_user`` of a user with many finished sessions, through the gateway's GraphQL to the
manager (both in this process, SQLite file database), against ``delete_user`` (Backend.AI's soft
delete: two UPDATEs) of an identical user in the same run as the baseline.

Each trial creates a user through GraphQL and writes ``--sessions`` TERMINATED sessions (one
kernel and one status-history row each) for its keypair straight into the database, then times
one mutation. The purge deletes those rows with set-based DELETEs (a fixed number of statements
whatever the count), so its cost should grow with the rows the database removes, not with
round trips. CPU time is this process's (gateway + manager + SQLite), per mutation.
Last line: ``purge_ms=<p50> delete_ms=<p50> purge_cpu_ms=<p50> of_delete=<purge / delete>``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "manager"),
                str(ROOT / "tests" / "gateway")]

import httpx  # noqa: E402
from bai.manager.adapters.db.engine import Database  # noqa: E402
from bai.manager.adapters.db.tables import KernelRow, SessionRow, StatusHistoryRow  # noqa: E402
from bai.manager.domain.model import utcnow  # noqa: E402
from bai.manager.server import run_manager  # noqa: E402
from cluster import SignedAuth  # noqa: E402
from gateway_stack import serve_gateway  # noqa: E402
from manager_harness import manager_config, prepare_db  # noqa: E402

CREATE_USER = """mutation($email: String!, $input: UserInput!) {
    create_user(email: $email, props: $input) { ok msg user { main_access_key } } }"""
PURGE_USER = """mutation($email: String!, $input: PurgeUserInput!) {
    purge_user(email: $email, props: $input) { ok msg } }"""
DELETE_USER = """mutation($email: String!) { delete_user(email: $email) { ok msg } }"""


async def _finished_sessions(db: Database, access_key: str, count: int) -> None:
    now = utcnow()
    async with db.write() as s:
        ids = [uuid.uuid4() for _ in range(count)]
        s.add_all(SessionRow(id=i, name=f"b-{i.hex[:8]}", live_name=None, access_key=access_key,
                             domain_name="default", project_name="default",
                             session_type="batch", spec={}, state="TERMINATED", reason="",
                             message="", state_changed_at=now, created_at=now,
                             terminated_at=now, exit_code=0, request_id=None) for i in ids)
        await s.flush()
        s.add_all(KernelRow(id=uuid.uuid4(), session_id=i, agent_id=None, container_id=None,
                            state="TERMINATED", occupied_slots={}, created_at=now) for i in ids)
        s.add_all(StatusHistoryRow(session_id=i, state="TERMINATED", reason="", message="",
                                   at=now) for i in ids)


async def main(trials: int, sessions: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bai-bench-") as tmp:
        db_url = f"sqlite+aiosqlite:///{tmp}/manager.db"
        admin, _ = await prepare_db(db_url)
        token = "tok-" + secrets.token_hex(8)
        async with run_manager(manager_config(db_url, token)) as running, \
                serve_gateway(running.address, token) as addr, \
                httpx.AsyncClient(base_url=f"http://{addr}", timeout=120,
                                  auth=SignedAuth(admin.access_key, admin.secret_key)) as c:

            async def gql(query: str, **variables: Any) -> dict[str, Any]:
                r = await c.post("/admin/gql", json={"query": query, "variables": variables})
                data: dict[str, Any] = r.json()["data"]
                return data

            async def timed(query: str, email: str, **extra: Any) -> tuple[float, float]:
                made = await gql(CREATE_USER, email=email, input={
                    "password": "long-enough", "domain_name": "default"})
                key = made["create_user"]["user"]["main_access_key"]
                await _finished_sessions(running.db, key, sessions)
                wall, cpu = time.perf_counter(), time.process_time()
                done = await gql(query, email=email, **extra)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                assert next(iter(done.values()))["ok"], done
                return wall * 1000, cpu * 1000

            purge, delete, purge_cpu, delete_cpu = [], [], [], []
            for n in range(trials):
                w, u = await timed(DELETE_USER, f"d{n}@bench.example")
                delete.append(w)
                delete_cpu.append(u)
                w, u = await timed(PURGE_USER, f"p{n}@bench.example", input={})
                purge.append(w)
                purge_cpu.append(u)
    p50 = statistics.median
    print(f"delete_user: p50 {p50(delete):.1f} ms, cpu {p50(delete_cpu):.1f} ms "
          f"({sessions} finished sessions kept)")
    print(f"purge_user:  p50 {p50(purge):.1f} ms, cpu {p50(purge_cpu):.1f} ms "
          f"({sessions} finished sessions, kernels and history deleted)")
    print(f"purge_ms={p50(purge):.1f} delete_ms={p50(delete):.1f} "
          f"purge_cpu_ms={p50(purge_cpu):.1f} of_delete={p50(purge) / p50(delete):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.sessions))

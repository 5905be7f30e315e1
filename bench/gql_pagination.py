"""A paginated ``compute_session_list`` (100 items) out of 150,000 sessions on PostgreSQL,
through the gateway's GraphQL (``POST /admin/gql``) to the manager. Target: p99 <= 500 ms.

Setup: a throwaway PostgreSQL cluster (tests/support/postgres.py), the manager's migrations,
one real session created through the API (a protocol agent makes it RUNNING), then cloned in
SQL (``INSERT ... SELECT ... generate_series``: every column copied, ids, names and creation
times new) to ``--rows`` sessions with one kernel each; a third CANCELLED, the rest
TERMINATED (finished sessions: a live one per row would have the manager's lifecycle loops
chase 50,000 sessions of a fake agent during the run). The superadmin then pages through them
with the query text the official client sends (wire doc §10), at random offsets, alternately
over every session (``status: "TERMINATED,CANCELLED"``) and over the TERMINATED ones.

Baseline in the same run: the first page (offset 0) of the same list. Last line:
``p99_ms=<x> p50_ms=<y> of_first_page=<p50 / first page p50>``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "support"),
                str(ROOT / "tests" / "manager")]

import importlib.util  # noqa: E402

import httpx  # noqa: E402
import psycopg  # noqa: E402
from _cluster import pct  # noqa: E402
from cluster import SignedAuth  # noqa: E402
from manager_harness import ProtocolAgent, prepare_db  # noqa: E402
from postgres import start_postgres  # noqa: E402

# bench/gateway.py, by path: the name "gateway" is also the repository's gateway/ folder.
_spec = importlib.util.spec_from_file_location("bench_gateway", ROOT / "bench" / "gateway.py")
assert _spec is not None and _spec.loader is not None
_gw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gw)
_create_session, _free_port, _spawn, _wait_port = (
    _gw._create_session, _gw._free_port, _gw._spawn, _gw._wait_port)

SESSION_LIST = """query($limit:Int!, $offset:Int!, $status: String, $access_key: String, $filter: String, $order: String) {
  compute_session_list(
      limit:$limit, offset:$offset, status:$status, access_key:$access_key, filter:$filter, order:$order) {
    items { name priority id group_name type image status status_info status_changed result }
    total_count
  }
}"""  # noqa: E501

_NEW = {
    "id": "gen_random_uuid()",
    "name": "'bulk-' || g",
    "live_name": "NULL",
    "state": "CASE WHEN mod(g, 3) = 0 THEN 'CANCELLED' ELSE 'TERMINATED' END",
    "created_at": "s.created_at - make_interval(secs => g)",
    "state_changed_at": "s.created_at - make_interval(secs => g)",
    "request_id": "NULL",
}


def _columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                        " ORDER BY ordinal_position", (table,)).fetchall()
    return [r[0] for r in rows]



def _clone(dsn: str, template: str, rows: int) -> None:
    """``rows`` copies of session ``template`` and its kernel, in two statements."""
    with psycopg.connect(dsn, autocommit=False) as conn:
        cols = _columns(conn, "sessions")
        exprs = [_NEW.get(c, f"s.{c}") + f" AS {c}" for c in cols]
        conn.execute(
            f"INSERT INTO sessions ({', '.join(cols)}) SELECT {', '.join(exprs)} "
            "FROM sessions s, generate_series(1, %s) g WHERE s.id = %s", (rows, template))
        kcols = _columns(conn, "kernels")
        kexprs = {"id": "gen_random_uuid()", "session_id": "n.id", "state": "n.state",
                  "container_id": "NULL"}
        conn.execute(
            f"INSERT INTO kernels ({', '.join(kcols)}) SELECT "
            f"{', '.join(kexprs.get(c, f'k.{c}') for c in kcols)} "
            "FROM kernels k, sessions n WHERE k.session_id = %s AND n.name LIKE 'bulk-%%'",
            (template,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")  # the steady state autovacuum would reach


async def _page(client: httpx.AsyncClient, offset: int, status: str | None) -> float:
    variables = {"limit": 100, "offset": offset, "status": status}
    t0 = time.perf_counter()
    r = await client.post("/admin/gql", json={"query": SESSION_LIST, "variables": variables})
    elapsed = time.perf_counter() - t0
    body = r.json()
    assert r.status_code == 200 and not body.get("errors"), r.text[:500]
    page = body["data"]["compute_session_list"]
    assert len(page["items"]) == min(100, max(page["total_count"] - offset, 0)), offset
    return elapsed


async def _run(args: argparse.Namespace) -> None:
    pg = start_postgres()
    procs = []
    agent: ProtocolAgent | None = None
    try:
        name = "bench_" + secrets.token_hex(4)
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = pg.url_for(name)
        admin, _ = await prepare_db(db_url)
        token = secrets.token_hex(16)
        mport, gport = _free_port(), _free_port()
        work = pg.root
        py = sys.executable
        procs.append(_spawn([py, "-m", "bai.manager", "serve", "--listen", f"127.0.0.1:{mport}",
                             "--db-url", db_url, "--service-token", token,
                             "--log-level", "WARNING"], 0, work / f"{name}-manager.log"))
        procs.append(_spawn([py, "-m", "bai.gateway", "serve", "--listen", f"127.0.0.1:{gport}",
                             "--manager", f"127.0.0.1:{mport}", "--service-token", token,
                             "--log-level", "warning"], 1, work / f"{name}-gateway.log"))
        await _wait_port(mport, procs[0], work / f"{name}-manager.log")
        await _wait_port(gport, procs[1], work / f"{name}-gateway.log")
        agent = await ProtocolAgent("i-page-" + secrets.token_hex(3), f"127.0.0.1:{mport}",
                                    token).start()
        await asyncio.wait_for(agent.registered.wait(), 30)
        template = await _create_session(gport, admin)
        t0 = time.perf_counter()
        _clone(pg.dsn.rsplit("/", 1)[0] + "/" + name, template, args.rows)
        print(f"setup: {args.rows} sessions inserted in {time.perf_counter() - t0:.1f} s")
        signer = SignedAuth(admin.access_key, admin.secret_key)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gport}", auth=signer,
                                     timeout=60) as client:
            for _ in range(5):  # warm-up
                await _page(client, 0, "TERMINATED")
            first = [await _page(client, 0, "TERMINATED") for _ in range(args.n // 4)]
            rng = random.Random(7)
            terminated = args.rows - args.rows // 3
            paged: list[float] = []
            for i in range(args.n):
                status, total = (("TERMINATED,CANCELLED", args.rows) if i % 2
                                 else ("TERMINATED", terminated))
                paged.append(await _page(client, rng.randrange(0, total - 100), status))
    finally:
        if agent is not None:
            await agent.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
        pg.stop()
    ms = [x * 1000 for x in paged]
    base = statistics.median(first) * 1000
    print(f"first page (baseline)  n={len(first)} p50={base:.1f} ms")
    print(f"random pages           n={len(ms)} p50={statistics.median(ms):.1f} ms "
          f"p90={pct(ms, 0.9):.1f} ms p99={pct(ms, 0.99):.1f} ms max={max(ms):.1f} ms")
    print(f"p99_ms={pct(ms, 0.99):.1f} p50_ms={statistics.median(ms):.1f} "
          f"of_first_page={statistics.median(ms) / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("-n", type=int, default=200, help="random pages to fetch")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()

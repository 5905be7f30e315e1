"""Scheduler at 5,000-agent scale on PostgreSQL (issue 3), with simulated agents.

1. Saturated scheduler (in process, no gRPC): 5,000 agents and 10,000 PENDING single-kernel
   sessions already in the database; FifoScheduler passes until all are placed.
2. Head-of-line: 1 unschedulable session first, then 1,000 schedulable ones, 5,000 agents: all
   1,000 must be placed within 2 passes.
3. End to end: a manager process and 5,000 simulated agents (``python -m bai.agent simulate``,
   one process, each agent with its own gRPC server and heartbeat stream); 10,000 sessions
   enqueued over signed gRPC (enqueue_only, 64 in flight); placements committed per second
   from the SCHEDULED history timestamps; then the kernels start on the simulated agents.
4. Termination: 100 RUNNING sessions (1 kernel each) deleted in parallel; time to the last
   TERMINATED.

Last line: ``placements_per_s=<x>`` (the end-to-end figure of 3).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
from _sim import PY, TOKEN, Stack, proc, stack
from bai.client.client import ClientConfig, ManagerClient
from bai.manager.adapters.db import (
    Database,
    SqlAgentRepository,
    SqlSessionRepository,
    run_migrations,
)
from bai.manager.adapters.db.accounts import bootstrap_admin
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.domain.model import (
    AgentImage,
    AgentRegistration,
    NewSession,
    SessionSpec,
    SessionType,
    utcnow,
)
from bai.manager.domain.scheduler import FifoScheduler
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb

IMAGE = "bai/python:3.11-debian12"
GIB = 1 << 30


async def _fresh_db(st: Stack, name: str) -> tuple[Database, str]:
    async with await psycopg.AsyncConnection.connect(st.pg_dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(st.pg.url_for(name), pool_size=20)
    await run_migrations(db)
    ak = "AKIA" + uuid.uuid4().hex[:16].upper()
    await bootstrap_admin(db, ak, "s" * 40)
    return db, ak


async def _gather_bounded(coros: list, limit: int = 50) -> list:  # type: ignore[type-arg]
    gate = asyncio.Semaphore(limit)

    async def one(c):  # type: ignore[no-untyped-def]
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def _agents(repo: SqlAgentRepository, n: int, cpu: int) -> None:
    image = AgentImage(ref=IMAGE, digest="sha256:x", labels={"ai.backend.kernelspec": "1"},
                       size_bytes=0, architecture="x86_64")
    await _gather_bounded([repo.register(AgentRegistration(
        agent_id=f"sim-{i:05d}", address="127.0.0.1:1",
        capacity={"cpu": Decimal(cpu), "mem": Decimal(4 * cpu * GIB)}, architecture="x86_64",
        resource_group="default", version="bench", kernels=(), images=(image,)), utcnow())
        for i in range(1, n + 1)])


async def _sessions(repo: SqlSessionRepository, ak: str, n: int, cpu: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    spec = SessionSpec(image=IMAGE, session_type=SessionType.INTERACTIVE,
                       resources={"cpu": Decimal(cpu), "mem": Decimal(GIB)})
    for chunk in range(0, n, 500):  # created in order: FIFO
        await _gather_bounded([repo.create(NewSession(
            id=sid, name=f"b-{sid.hex[:12]}", access_key=ak, domain="default",
            project="default", spec=spec, request_id=None, created_at=utcnow(),
            kernel_ids=(uuid.uuid4(),))) for sid in ids[chunk:chunk + 500]])
    return ids


async def _over_allocated(db: Database) -> int:
    async with db.read() as s:
        from bai.manager.adapters.db.tables import AgentRow
        from sqlalchemy import select
        rows = (await s.scalars(select(AgentRow))).all()
    bad = 0
    for a in rows:
        for key, cap in a.capacity.items():
            if Decimal(a.occupied.get(key, "0")) > Decimal(cap):
                bad += 1
    return bad


async def saturated(st: Stack, agents: int, sessions: int) -> float:
    db, ak = await _fresh_db(st, "sat")
    try:
        srepo, arepo = SqlSessionRepository(db), SqlAgentRepository(db)
        await _agents(arepo, agents, cpu=4)
        await _sessions(srepo, ak, sessions, cpu=1)
        sched = FifoScheduler(srepo, arepo, InProcessEventBus())
        t0, placed = time.perf_counter(), 0
        while placed < sessions:
            got = await sched.schedule_once()
            if not got:
                raise RuntimeError(f"only {placed} of {sessions} placed")
            placed += got
        elapsed = time.perf_counter() - t0
        assert await _over_allocated(db) == 0, "an agent is over-allocated"
        rate = placed / elapsed
        print(f"saturated scheduler: {placed} placements onto {agents} agents in {elapsed:.2f} s "
              f"({sched.passes} passes) = {rate:.0f}/s")
        return rate
    finally:
        await db.close()


async def head_of_line(st: Stack, agents: int) -> int:
    db, ak = await _fresh_db(st, "hol")
    try:
        srepo, arepo = SqlSessionRepository(db), SqlAgentRepository(db)
        await _agents(arepo, agents, cpu=4)
        blocker = (await _sessions(srepo, ak, 1, cpu=64))[0]
        ids = await _sessions(srepo, ak, 1000, cpu=1)
        sched = FifoScheduler(srepo, arepo, InProcessEventBus())
        placed = await sched.schedule_once()
        placed += await sched.schedule_once()
        record = await srepo.get(blocker)
        assert record is not None and record.state.value == "PENDING", record
        states = {(await srepo.get(i)).state.value for i in ids}  # type: ignore[union-attr]
        print(f"head-of-line: 1 unschedulable + 1000 schedulable, {agents} agents: {placed} "
              f"placed in 2 passes (states {sorted(states)}); blocker: {record.message}")
        return placed
    finally:
        await db.close()


async def _count(conn: psycopg.AsyncConnection, sql: str) -> int:  # type: ignore[type-arg]
    cur = await conn.execute(sql)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def end_to_end(st: Stack, agents: int, sessions: int, log_dir: Path) -> float:
    argv = [PY, "-m", "bai.agent", "simulate", "--manager", st.manager, "--service-token",
            TOKEN, "--count", str(agents), "--cpu", "4", "--mem", "16g"]
    with proc(argv, log_dir / "fleet.log"):
        async with await psycopg.AsyncConnection.connect(st.pg_dsn, autocommit=True) as conn:
            t0 = time.perf_counter()
            while (n := await _count(conn, "SELECT count(*) FROM agents WHERE status='ALIVE'")) \
                    < agents:
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError(f"only {n} agents registered")
                await asyncio.sleep(0.5)
            print(f"fleet: {agents} simulated agents registered in "
                  f"{time.perf_counter() - t0:.1f} s")
            config = ClientConfig(manager_addr=st.manager, access_key=st.access_key,
                                  secret_key=st.secret_key, timeout=120)
            async with ManagerClient(config) as client:
                request = spb.CreateSessionRequest(image="python", enqueue_only=True,
                                                   resources={"cpu": "1", "mem": "1g"})
                t_enq = time.perf_counter()
                await _gather_bounded([client.create_session(request)
                                       for _ in range(sessions)], 64)
                enq = time.perf_counter() - t_enq
                print(f"enqueue: {sessions} CreateSession(enqueue_only) in {enq:.2f} s = "
                      f"{sessions / enq:.0f}/s")
                while (n := await _count(conn, "SELECT count(*) FROM session_status_history "
                                         "WHERE state='SCHEDULED'")) < sessions:
                    if time.perf_counter() - t_enq > 600:
                        raise RuntimeError(f"only {n} placed")
                    await asyncio.sleep(0.2)
                t_placed = time.perf_counter() - t_enq
                cur = await conn.execute(
                    "SELECT min(at), max(at), count(*) FROM session_status_history "
                    "WHERE state='SCHEDULED'")
                first, last, count = await cur.fetchone()  # type: ignore[misc]
                span = (last - first).total_seconds()
                rate = count / span if span > 0 else float("inf")
                print(f"end to end: {count} placements committed between {first:%H:%M:%S.%f} "
                      f"and {last:%H:%M:%S.%f} ({span:.2f} s) = {rate:.0f}/s; all placed "
                      f"{t_placed:.2f} s after the first enqueue "
                      f"({count / t_placed:.0f}/s incl. enqueue)")
                bad = await _count(conn, "SELECT count(*) FROM agents a WHERE EXISTS (SELECT 1 "
                                   "FROM jsonb_each_text(a.capacity::jsonb) c WHERE "
                                   "COALESCE((a.occupied::jsonb->>c.key)::numeric, 0) > "
                                   "c.value::numeric)")
                print(f"over-allocated agents: {bad}")
                await _terminate(conn, client)
    return rate


async def _terminate(conn: psycopg.AsyncConnection, client: ManagerClient) -> None:  # type: ignore[type-arg]
    t0 = time.perf_counter()
    while await _count(conn, "SELECT count(*) FROM sessions WHERE state='RUNNING'") < 100:
        if time.perf_counter() - t0 > 600:
            raise RuntimeError("fewer than 100 sessions RUNNING")
        await asyncio.sleep(0.5)
    running = await _count(conn, "SELECT count(*) FROM sessions WHERE state='RUNNING'")
    print(f"kernels started: {running} RUNNING {time.perf_counter() - t0:.1f} s after placement")
    cur = await conn.execute("SELECT id FROM sessions WHERE state='RUNNING' LIMIT 100")
    ids = [str(r[0]) for r in await cur.fetchall()]
    t1 = time.perf_counter()
    done = await asyncio.gather(*(client.delete_session(i) for i in ids))
    wall = time.perf_counter() - t1
    states = {session_pb2.Session.State.Name(s.status.state) for s in done}
    cur = await conn.execute("SELECT count(*) FROM sessions WHERE id = ANY(%s) AND "
                             "state='TERMINATED'", ([uuid.UUID(i) for i in ids],))
    row = await cur.fetchone()
    print(f"termination: {len(ids)} sessions x 1 kernel deleted in parallel in {wall:.2f} s "
          f"({row[0] if row else 0} TERMINATED; reply states {sorted(states)})")


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bai-bench-sched-"))
    with stack(log_dir, "--heartbeat-interval-ms", str(args.heartbeat_ms),
               "--log-level", "WARNING") as st:
        if not args.skip_inprocess:
            await saturated(st, args.agents, args.sessions)
            await head_of_line(st, args.agents)
        rate = await end_to_end(st, args.agents, args.sessions, log_dir)
    print(f"logs: {log_dir}")
    print(f"placements_per_s={rate:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--heartbeat-ms", type=int, default=5000)
    parser.add_argument("--skip-inprocess", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

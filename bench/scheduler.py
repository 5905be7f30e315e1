"""Scheduler at 5,000-agent scale on PostgreSQL (issue 3), with simulated agents.

1. Saturated scheduler (in process, no gRPC): 5,000 agents and 10,000 PENDING single-kernel
   sessions already in the database; SessionScheduler passes (with the scheduling tables:
   resource groups, policies, predicates; the group's plugins, fifo + dispersed by default, or
   ``--scheduler`` / ``--selector``) until all are placed.
2. Head-of-line: 1 unschedulable session first, then 1,000 schedulable ones, 5,000 agents: all
   1,000 must be placed within 2 passes.
3. End to end: a manager process and 5,000 simulated agents (``python -m bai.agent simulate``,
   one process, each agent with its own gRPC server and heartbeat stream); the manager runs with
   ``--agent-listen`` and a Redis bus, so the heartbeat streams are served by its child process
   (``serve-agents``) and do not compete with CreateSession and scheduling in the main process
   (``--inprocess-heartbeats``: the main process serves them too, for comparison); 10,000 sessions
   enqueued over signed gRPC (enqueue_only, 64 in flight); placements committed per second
   from the SCHEDULED history timestamps; then the kernels start on the simulated agents.
4. Termination: 100 RUNNING sessions (1 kernel each) deleted in parallel; time to the last
   TERMINATED.

Alongside each rate the CPU time spent per placement is printed (1: this process, which is the
scheduler, and the PostgreSQL server's processes; 3: the manager process, read from /proc,
which also serves the enqueue RPCs, and separately its heartbeat child process): on a shared,
loaded machine it is the steadier figure. 3 also counts the PostgreSQL connections opened during
the run (``pg_stat_database.sessions``): a pool that churns shows there.

Last line: ``placements_per_s=<x>``: the saturated scheduler of 1, which is what the issue's
"10,000 pending sessions onto 5,000 agents, placements committed per second" measures (as
kube-scheduler's scheduler_perf does: the pods exist first). 3 runs with ``--end-to-end`` and
prints ``end_to_end_placements_per_s`` (bounded by the enqueue rate).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import psycopg
from _sim import PY, TOKEN, Stack, free_port, proc, stack
from bai.client.client import ClientConfig, ManagerClient
from bai.manager.adapters.db import (
    Database,
    SqlAgentRepository,
    SqlSessionRepository,
    run_migrations,
)
from bai.manager.adapters.db.accounts import bootstrap_admin
from bai.manager.adapters.db.records import spec_to_json
from bai.manager.adapters.db.scheduling import SqlSchedulingRepository
from bai.manager.adapters.db.tables import (
    AgentImageRow,
    AgentRow,
    KernelRow,
    SessionRow,
    StatusHistoryRow,
)
from bai.manager.adapters.event_bus import InProcessEventBus
from bai.manager.domain import slots
from bai.manager.domain.model import (
    AgentImage,
    AgentRegistration,
    SessionSpec,
    SessionType,
    utcnow,
)
from bai.manager.domain.scheduling import ResourceGroup, SessionScheduler
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb
from sqlalchemy import insert, text

T = TypeVar("T")
IMAGE = "bai/python:3.11-debian12"
GIB = 1 << 30


async def _fresh_db(st: Stack, name: str) -> tuple[Database, str]:
    async with await psycopg.AsyncConnection.connect(st.pg_dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(st.pg.url_for(name), pool_size=20)
    await run_migrations(db)
    ak = "AKIA" + uuid.uuid4().hex[:16].upper()
    await bootstrap_admin(db, ak, "s" * 40)
    async with db.write() as s:  # the default policy allows 30 concurrent sessions per key
        await s.execute(text("UPDATE keypair_resource_policies SET max_concurrent_sessions = 0"))
    return db, ak


def _scheduler(db: Database, args: argparse.Namespace, *, rules: bool = True) -> SessionScheduler:
    """rules=False: no scheduling tables (plain FIFO queue, no predicates): the baseline."""
    return SessionScheduler(SqlSessionRepository(db), SqlAgentRepository(db), InProcessEventBus(),
                            SqlSchedulingRepository(db) if rules else None)


async def _use_plugins(db: Database, args: argparse.Namespace) -> None:
    await SqlSchedulingRepository(db).put_resource_group(ResourceGroup(
        "default", scheduler=args.scheduler, agent_selector=args.selector))


async def _gather_bounded(coros: list[Awaitable[T]], limit: int = 50) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(c: Awaitable[T]) -> T:
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def _agents(repo: SqlAgentRepository, n: int, cpu: int) -> None:
    """One agent registers through the repository (creating the image row); the rest are
    bulk-inserted the same way (setup speed is not what this bench measures)."""
    image = AgentImage(ref=IMAGE, digest="sha256:x", labels={"ai.backend.kernelspec": "1"},
                       size_bytes=0, architecture="x86_64")
    capacity = {"cpu": Decimal(cpu), "mem": Decimal(4 * cpu * GIB)}
    await repo.register(AgentRegistration(
        agent_id="sim-00001", address="127.0.0.1:1", capacity=capacity, architecture="x86_64",
        resource_group="default", version="bench", kernels=(), images=(image,)), utcnow())
    now, caps = utcnow(), slots.to_strings(capacity)
    rows = [{"id": f"sim-{i:05d}", "address": "127.0.0.1:1", "status": "ALIVE",
             "capacity": caps, "occupied": {}, "architecture": "x86_64",
             "resource_group": "default", "version": "bench", "first_contact": now,
             "last_heartbeat": now} for i in range(2, n + 1)]
    async with repo._db.write() as s:
        for start in range(0, len(rows), 1000):
            chunk = rows[start:start + 1000]
            await s.execute(insert(AgentRow), chunk)
            await s.execute(insert(AgentImageRow), [{"agent_id": r["id"], "image_ref": IMAGE}
                                                    for r in chunk])


async def _sessions(repo: SqlSessionRepository, ak: str, n: int, cpu: int) -> list[uuid.UUID]:
    """PENDING sessions bulk-inserted as SqlSessionRepository.create writes them, oldest first."""
    ids = [uuid.uuid4() for _ in range(n)]
    spec = SessionSpec(image=IMAGE, session_type=SessionType.INTERACTIVE,
                       resources={"cpu": Decimal(cpu), "mem": Decimal(GIB)})
    raw_spec, t0 = spec_to_json(spec), utcnow()
    async with repo._db.write() as s:
        for start in range(0, n, 1000):
            chunk = [(sid, t0 + timedelta(microseconds=start + i))
                     for i, sid in enumerate(ids[start:start + 1000])]
            await s.execute(insert(SessionRow), [{
                "id": sid, "name": f"b-{sid.hex[:12]}", "live_name": f"b-{sid.hex[:12]}",
                "access_key": ak, "domain_name": "default", "project_name": "default",
                "session_type": "interactive", "spec": raw_spec, "state": "PENDING",
                "reason": "SessionEnqueued", "message": "waiting to be scheduled",
                "state_changed_at": at, "created_at": at, "priority": 10}
                for sid, at in chunk])
            await s.execute(insert(KernelRow), [{
                "id": uuid.uuid4(), "session_id": sid, "state": "PENDING",
                "cluster_role": "main", "cluster_idx": 1, "occupied_slots": {},
                "created_at": at} for sid, at in chunk])
            await s.execute(insert(StatusHistoryRow), [{
                "session_id": sid, "state": "PENDING", "reason": "SessionEnqueued",
                "message": "waiting to be scheduled", "at": at} for sid, at in chunk])
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


async def saturated(st: Stack, agents: int, sessions: int, args: argparse.Namespace,
                    *, rules: bool = True) -> float:
    db, ak = await _fresh_db(st, "sat" if rules else "sat_baseline")
    try:
        srepo, arepo = SqlSessionRepository(db), SqlAgentRepository(db)
        await _use_plugins(db, args)
        await _agents(arepo, agents, cpu=4)
        await _sessions(srepo, ak, sessions, cpu=1)
        sched = _scheduler(db, args, rules=rules)
        t0, cpu0, placed = time.perf_counter(), time.process_time(), 0
        pg_cpu0 = _postgres_cpu_s(st)
        profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
        if profile:
            profile.enable()
        while placed < sessions:
            got = await sched.schedule_once()
            if not got:
                raise RuntimeError(f"only {placed} of {sessions} placed")
            placed += got
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        pg_cpu = _postgres_cpu_s(st) - pg_cpu0
        if profile:
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        assert await _over_allocated(db) == 0, "an agent is over-allocated"
        rate = placed / elapsed
        what = f"{args.scheduler}, {args.selector}" if rules else "baseline: no scheduling rules"
        print(f"saturated scheduler ({what}): {placed} placements "
              f"onto {agents} agents in {elapsed:.2f} s ({sched.passes} passes) = {rate:.0f}/s "
              f"= {rate / 700:.2f}x the 700/s target; CPU per placement: scheduler "
              f"{cpu / placed * 1e3:.3f} ms, PostgreSQL {pg_cpu / placed * 1e3:.3f} ms")
        return rate
    finally:
        await db.close()


async def head_of_line(st: Stack, agents: int, args: argparse.Namespace) -> int:
    db, ak = await _fresh_db(st, "hol")
    try:
        srepo, arepo = SqlSessionRepository(db), SqlAgentRepository(db)
        await _use_plugins(db, args)
        await _agents(arepo, agents, cpu=4)
        blocker = (await _sessions(srepo, ak, 1, cpu=64))[0]
        ids = await _sessions(srepo, ak, 1000, cpu=1)
        sched = _scheduler(db, args)
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


async def _count(conn: psycopg.AsyncConnection, sql: str) -> int:
    cur = await conn.execute(sql)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def _cpu_s(pid: int, *, children: bool = False) -> float:
    """utime + stime of a process (with ``children``: plus those of its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_s(st: Stack) -> float:
    """CPU of the PostgreSQL server: the postmaster with its exited backends, plus the live
    backends (its children)."""
    postmaster = int((st.pg.root / "data" / "postmaster.pid").read_text().split()[0])
    total = _cpu_s(postmaster, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                total += _cpu_s(int(stat.parent.name))
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total


def _manager_pid(command: str, listen: str) -> int:
    """The pid of the manager process running ``command`` (``serve`` or ``serve-agents``) with
    ``listen`` on its command line (from /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bai.manager" in argv and command.encode() in argv and listen.encode() in argv:
            return int(cmdline.parent.name)
    raise RuntimeError(f"no manager {command} process listening on {listen}")


async def _wait_port(address: str, within: float) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {address}") from None
            await asyncio.sleep(0.2)


async def end_to_end(st: Stack, agents: int, sessions: int, log_dir: Path,
                     agent_listen: str, register_within: float = 120) -> float:
    """``agent_listen``: where the manager's heartbeat child listens (empty: the main process
    serves the agents too)."""
    agents_at = agent_listen or st.manager
    await _wait_port(agents_at, 60)
    main_pid = _manager_pid("serve", st.manager)
    worker_pid = _manager_pid("serve-agents", agent_listen) if agent_listen else 0
    argv = [PY, "-m", "bai.agent", "simulate", "--manager", agents_at, "--service-token",
            TOKEN, "--count", str(agents), "--cpu", "4", "--mem", "16g"]
    with proc(argv, log_dir / "fleet.log"):
        async with await psycopg.AsyncConnection.connect(st.pg_dsn, autocommit=True) as conn:
            await conn.execute("UPDATE keypair_resource_policies SET max_concurrent_sessions = 0")
            t0 = time.perf_counter()
            # A machine too small for the fleet never gets every agent ALIVE at once (starved
            # streams miss their deadlines, go LOST and come back): after register_within
            # seconds, measure with what is there, and say so.
            while (n := await _count(conn, "SELECT count(*) FROM agents WHERE status='ALIVE'")) \
                    < agents:
                if time.perf_counter() - t0 > register_within:
                    if n < agents // 2:
                        raise RuntimeError(f"only {n} agents registered")
                    print(f"only {n} of {agents} agents ALIVE after {register_within:.0f} s: "
                          "this machine cannot keep the whole fleet up; measuring with it")
                    break
                await asyncio.sleep(0.5)
            print(f"fleet: {n} simulated agents ALIVE after "
                  f"{time.perf_counter() - t0:.1f} s")
            config = ClientConfig(manager_addr=st.manager, access_key=st.access_key,
                                  secret_key=st.secret_key, timeout=120)
            async with ManagerClient(config) as client:
                request = spb.CreateSessionRequest(image="python", enqueue_only=True,
                                                   resources={"cpu": "1", "mem": "1g"})
                conns = "SELECT sessions FROM pg_stat_database WHERE datname = 'postgres'"
                conns0 = await _count(conn, conns)
                t_enq, cpu0 = time.perf_counter(), _cpu_s(main_pid)
                wcpu0 = _cpu_s(worker_pid) if worker_pid else 0.0
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
                cpu = _cpu_s(main_pid) - cpu0
                wcpu = (_cpu_s(worker_pid) - wcpu0) if worker_pid else 0.0
                opened = await _count(conn, conns) - conns0
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
                where = ("heartbeat child (serve-agents) " f"{wcpu / count * 1e3:.2f} ms"
                         if worker_pid else "heartbeats served by the main process too")
                print(f"manager CPU per placement: main process {cpu / count * 1e3:.2f} ms "
                      f"(enqueue RPC + placement); {where}; PostgreSQL connections opened "
                      f"meanwhile: {opened}")
                bad = await _count(conn, "SELECT count(*) FROM agents a WHERE EXISTS (SELECT 1 "
                                   "FROM jsonb_each_text(a.capacity::jsonb) c WHERE "
                                   "COALESCE((a.occupied::jsonb->>c.key)::numeric, 0) > "
                                   "c.value::numeric)")
                print(f"over-allocated agents: {bad}")
                await _terminate(conn, client)
    return rate


async def _terminate(conn: psycopg.AsyncConnection, client: ManagerClient) -> None:
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
    replies = await asyncio.gather(*(client.delete_session(i) for i in ids),
                                   return_exceptions=True)
    wall = time.perf_counter() - t1
    failed = [r for r in replies if isinstance(r, BaseException)]
    for error in {str(e).splitlines()[0] for e in failed}:  # reported, not hidden
        print(f"termination: a DeleteSession failed: {error}")
    states = {session_pb2.Session.State.Name(s.status.state) for s in replies
              if not isinstance(s, BaseException)}
    cur = await conn.execute("SELECT count(*) FROM sessions WHERE id = ANY(%s) AND "
                             "state='TERMINATED'", ([uuid.UUID(i) for i in ids],))
    row = await cur.fetchone()
    print(f"termination: {len(ids)} sessions x 1 kernel deleted in parallel in {wall:.2f} s "
          f"({row[0] if row else 0} TERMINATED; reply states {sorted(states)}; "
          f"{len(failed)} calls failed)")


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bai-bench-sched-"))
    agent_listen = "" if args.inprocess_heartbeats else f"127.0.0.1:{free_port()}"
    extra = ("--agent-listen", agent_listen) if agent_listen else ()
    with stack(log_dir, "--heartbeat-interval-ms", str(args.heartbeat_ms),
               "--log-level", "WARNING", *extra, redis=bool(agent_listen)) as st:
        if args.baseline:
            base = await saturated(st, args.agents, args.sessions, args, rules=False)
        rate = await saturated(st, args.agents, args.sessions, args)
        if args.baseline:
            print(f"with resource groups, policies and predicates: {rate / base:.2f}x the "
                  "baseline pass measured in this run")
        await head_of_line(st, args.agents, args)
        if args.end_to_end:
            e2e = await end_to_end(st, args.agents, args.sessions, log_dir, agent_listen,
                                   args.register_within)
            print(f"end_to_end_placements_per_s={e2e:.0f}")
    print(f"logs: {log_dir}")
    print(f"placements_per_s={rate:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--heartbeat-ms", type=int, default=5000)
    parser.add_argument("--register-within", type=float, default=120,
                        help="3: seconds to wait for every agent ALIVE before measuring with "
                        "those that are (at least half)")
    parser.add_argument("--inprocess-heartbeats", action="store_true",
                        help="3 without --agent-listen: the manager's main process serves the "
                        "heartbeat streams too (the layout before the heartbeat child)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also run 3 (a manager process, the simulated fleet, sessions "
                        "enqueued over gRPC): minutes at 5,000 agents")
    parser.add_argument("--baseline", action="store_true",
                        help="first run the same placement without the scheduling tables")
    parser.add_argument("--scheduler", default="fifo", help="backendai_scheduler_v10 plugin")
    parser.add_argument("--selector", default="dispersed",
                        help="backendai_agentselector_v10 plugin")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

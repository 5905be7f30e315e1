"""Termination of 100 sessions x 2 kernels with simulated agents (issue 3). Target <= 3 s.

PostgreSQL, a manager process and a fleet of simulated agents in one process
(``python -m bai.agent simulate``) are started; ``--sessions`` + ``--serial`` two-kernel
(single-node cluster) sessions are created over signed gRPC and run. Baseline, in the same run:
``--serial`` sessions deleted one after the other (Backend.AI terminates serially). Then the
other ``--sessions`` are deleted all at once (concurrent DeleteSession calls; the manager
destroys the kernels agent by agent, each agent's in batched DestroyKernels calls); the time
until every reply says TERMINATED is the headline. Last line: ``termination_s=<x>``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import psycopg
from _sim import PY, TOKEN, proc, stack
from bai.client.client import ClientConfig, ManagerClient
from bai.pb.manager.v1 import session_pb2
from bai.pb.manager.v1 import session_service_pb2 as spb

TERMINATED = session_pb2.Session.State.STATE_TERMINATED


async def _count(conn: psycopg.AsyncConnection, sql: str) -> int:  # type: ignore[type-arg]
    row = await (await conn.execute(sql)).fetchone()
    return int(row[0]) if row else 0


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bai-bench-term-"))
    total = args.sessions + args.serial
    with stack(log_dir, "--log-level", "WARNING") as st:
        argv = [PY, "-m", "bai.agent", "simulate", "--manager", st.manager, "--service-token",
                TOKEN, "--count", str(args.agents), "--cpu", "64", "--mem", "256g"]
        with proc(argv, log_dir / "fleet.log"):
            async with await psycopg.AsyncConnection.connect(st.pg_dsn, autocommit=True) as db:
                t0 = time.perf_counter()
                while await _count(db, "SELECT count(*) FROM agents WHERE status='ALIVE'") \
                        < args.agents:
                    if time.perf_counter() - t0 > 120:
                        raise RuntimeError("the simulated agents did not register")
                    await asyncio.sleep(0.2)
                # The default keypair policy allows 30 concurrent sessions; this needs more.
                await db.execute("UPDATE keypair_resource_policies SET "
                                 "max_concurrent_sessions = 100000")
                config = ClientConfig(manager_addr=st.manager, access_key=st.access_key,
                                      secret_key=st.secret_key, timeout=120)
                async with ManagerClient(config) as client:
                    request = spb.CreateSessionRequest(
                        image="python", enqueue_only=True, cluster_size=2,
                        resources={"cpu": "1", "mem": "1g"})
                    gate = asyncio.Semaphore(32)

                    async def create() -> str:
                        async with gate:
                            return (await client.create_session(request)).session.id

                    ids = await asyncio.gather(*(create() for _ in range(total)))
                    t1 = time.perf_counter()
                    while (n := await _count(db, "SELECT count(*) FROM sessions "
                                             "WHERE state='RUNNING'")) < total:
                        if time.perf_counter() - t1 > 300:
                            raise RuntimeError(f"only {n} of {total} sessions RUNNING")
                        await asyncio.sleep(0.2)
                    kernels = await _count(db, "SELECT count(*) FROM kernels WHERE "
                                           "state='RUNNING'")
                    print(f"{total} sessions ({kernels} kernels) RUNNING on {args.agents} "
                          f"simulated agents, {time.perf_counter() - t1:.1f} s after creation")

                    serial, parallel = ids[:args.serial], ids[args.serial:]
                    t2 = time.perf_counter()
                    for sid in serial:
                        assert (await client.delete_session(sid)).status.state == TERMINATED
                    one = (time.perf_counter() - t2) / max(len(serial), 1)
                    print(f"serial baseline: {len(serial)} sessions deleted one by one, "
                          f"{one * 1000:.1f} ms each -> {one * len(parallel):.2f} s for "
                          f"{len(parallel)}")

                    t3 = time.perf_counter()
                    done = await asyncio.gather(*(client.delete_session(i) for i in parallel))
                    wall = time.perf_counter() - t3
                    states = {d.status.state for d in done}
                    left = await _count(db, "SELECT count(*) FROM kernels WHERE state NOT IN "
                                        "('TERMINATED', 'CANCELLED', 'ERROR')")
                    print(f"parallel: {len(parallel)} sessions x 2 kernels deleted at once in "
                          f"{wall:.2f} s (all TERMINATED: {states == {TERMINATED}}; live kernels "
                          f"left {left}); {one * len(parallel) / wall:.1f}x the serial baseline")
    print(f"logs: {log_dir}")
    print(f"termination_s={wall:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--serial", type=int, default=20)
    parser.add_argument("--agents", type=int, default=20)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

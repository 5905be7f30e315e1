"""Resource-group administration under a deep queue: ``GetResourceGroup`` and
``ListResourceGroups`` (each answer counts the group's agents and PENDING sessions) with
``--pending`` PENDING sessions (default 10,000) spread over ``--groups`` groups, on PostgreSQL
(a throwaway cluster, tests/support/postgres.py) or ``--sqlite``.

The manager runs in this process (real grpc.aio server on 127.0.0.1, real signed calls), its
scheduler loop slowed to once an hour so the passes do not compete with the calls measured.
Baseline in the same run: ``AdminService.GetKeypair``, the cheapest signed call (auth, one
lookup). CPU per call is this process's (client + server) ``time.process_time()`` over the loop,
the figure that survives a loaded machine. Last line:
``get_p50_ms=<x> list_p50_ms=<y> get_of_baseline=<get p50 / baseline p50> get_cpu_ms=<z>``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "support"),
                str(ROOT / "tests" / "manager")]

import grpc  # noqa: E402
from _cluster import pct  # noqa: E402
from bai.manager.adapters.db import Database, SqlSessionRepository  # noqa: E402
from bai.manager.domain.model import NewSession, SessionSpec, SessionType, utcnow  # noqa: E402
from bai.manager.server import run_manager  # noqa: E402
from bai.pb.manager.v1 import admin_service_pb2 as apb  # noqa: E402
from bai.pb.manager.v1 import admin_service_pb2_grpc as apb_grpc  # noqa: E402
from bai.pb.manager.v1 import resource_group_service_pb2 as pb  # noqa: E402
from bai.pb.manager.v1 import resource_group_service_pb2_grpc as pb_grpc  # noqa: E402
from manager_harness import Harness, Keys, manager_config, prepare_db  # noqa: E402


async def _fill(db_url: str, user: Keys, pending: int, groups: int) -> None:
    db = Database(db_url)
    try:
        repo = SqlSessionRepository(db)

        async def one(i: int) -> None:
            spec = SessionSpec(image="bai/python:3.11-debian12",
                               session_type=SessionType.INTERACTIVE,
                               resources={"cpu": Decimal(1), "mem": Decimal(1 << 30)},
                               resource_group=f"rg-{i % groups}")
            await repo.create(NewSession(
                id=uuid.uuid4(), name=f"q-{i}", access_key=user.access_key, domain="default",
                project="default", spec=spec, request_id=None, created_at=utcnow(),
                kernel_ids=(uuid.uuid4(),)))

        step = 1 if db.is_sqlite else 8  # SQLite has one writer anyway
        for start in range(0, pending, step):
            await asyncio.gather(*(one(i) for i in range(start, min(start + step, pending))))
    finally:
        await db.close()


async def _measure(call: Callable[[], Awaitable[Any]], n: int) -> tuple[list[float], float]:
    for _ in range(10):  # warm-up
        await call()
    wall: list[float] = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        wall.append((time.perf_counter() - t0) * 1000)
    return wall, (time.process_time() - cpu0) * 1000 / n


async def _run(args: argparse.Namespace) -> None:
    pg = None
    if args.sqlite:
        tmp = tempfile.mkdtemp(prefix="bai-rg-bench-")
        db_url = f"sqlite+aiosqlite:///{tmp}/manager.db"
    else:
        from postgres import start_postgres
        pg = start_postgres()
        name = "bench_" + secrets.token_hex(4)
        import psycopg
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = pg.url_for(name)
    try:
        admin, user = await prepare_db(db_url)
        token = secrets.token_hex(16)
        async with run_manager(manager_config(db_url, token,
                                              scheduler_interval=3600.0)) as running:
            harness = Harness(running=running, token=token, admin=admin, user=user,
                              db_url=db_url)
            stub = pb_grpc.ResourceGroupServiceStub(harness._channel(admin))
            for g in range(args.groups):
                await stub.CreateResourceGroup(pb.CreateResourceGroupRequest(
                    name=f"rg-{g}", is_active=True))
            t0 = time.perf_counter()
            await _fill(db_url, user, args.pending, args.groups)
            print(f"setup: {args.pending} pending sessions in {args.groups} groups, "
                  f"{time.perf_counter() - t0:.1f} s")
            admin_stub = apb_grpc.AdminServiceStub(harness._channel(admin))
            base, base_cpu = await _measure(
                lambda: admin_stub.GetKeypair(apb.GetKeypairRequest(), timeout=30), args.n)
            profile = cProfile.Profile() if args.profile else None
            if profile is not None:
                profile.enable()
            get, get_cpu = await _measure(
                lambda: stub.GetResourceGroup(pb.GetResourceGroupRequest(name="rg-0"),
                                              timeout=30), args.n)
            if profile is not None:
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(15)
            listed, list_cpu = await _measure(
                lambda: stub.ListResourceGroups(pb.ListResourceGroupsRequest(), timeout=30),
                args.n)
            check = await stub.GetResourceGroup(pb.GetResourceGroupRequest(name="rg-0"))
            assert check.resource_group.pending_session_count == -(-args.pending // args.groups)
            await harness.close()
    except grpc.aio.AioRpcError as exc:
        raise SystemExit(f"call failed: {exc.code().name} {exc.details()}") from None
    finally:
        if pg is not None:
            pg.stop()
    for label, wall, cpu in (("GetKeypair (baseline)", base, base_cpu),
                             ("GetResourceGroup", get, get_cpu),
                             ("ListResourceGroups", listed, list_cpu)):
        print(f"{label:24} n={len(wall)} p50={statistics.median(wall):.2f} ms "
              f"p99={pct(wall, 0.99):.2f} ms cpu={cpu:.2f} ms/call")
    print(f"get_p50_ms={statistics.median(get):.2f} list_p50_ms={statistics.median(listed):.2f} "
          f"get_of_baseline={statistics.median(get) / statistics.median(base):.2f} "
          f"get_cpu_ms={get_cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("-n", type=int, default=200, help="calls of each kind")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the GetResourceGroup loop (client and server)")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()

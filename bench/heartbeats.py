"""Heartbeat ingestion (issue 3): simulated agents over real gRPC bidi streams, one manager.

PostgreSQL and a manager process (``--heartbeat-interval-ms``, default 500) are started; the
simulated agents run in ``--fleet-procs`` separate processes (``python -m bai.agent simulate``:
each agent its own AgentService server and its own Heartbeat stream), which print how many
heartbeats the manager acknowledged (an ack is sent after the heartbeat was handled) every
second. Once every agent is registered, the acknowledged heartbeats are counted over a window;
the manager's CPU use over the window is read from /proc.

User RPC latency: signed GetSession calls (one at a time) are timed before the fleet starts
(no load) and again during the window; both are printed with their ratio (target: at most
1.2x, i.e. user RPCs not slowed by more than 20%). Note that on a small machine the fleet
processes compete with the manager for the same cores. Last line: ``heartbeats_per_s=<x>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from _sim import PY, TOKEN, proc, stack
from bai.client.client import ClientConfig, ManagerClient
from bai.pb.manager.v1 import session_service_pb2 as spb

_STATS = re.compile(rb"fleet stats: t=([\d.]+) registered=(\d+) acked=(\d+)")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _manager_pid(port: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"bai.manager" in cmd and f"127.0.0.1:{port}".encode() in cmd:
                return int(entry.name)
    raise RuntimeError("manager process not found")


def _latest(logs: list[Path]) -> tuple[float, int, int]:
    """(newest time, registered, acked) summed over the fleet processes' latest stats lines."""
    when, registered, acked = 0.0, 0, 0
    for log in logs:
        found = _STATS.findall(log.read_bytes()) if log.exists() else []
        if not found:
            return 0.0, 0, 0
        t, r, a = found[-1]
        when, registered, acked = max(when, float(t)), registered + int(r), acked + int(a)
    return when, registered, acked


async def _latencies(client: ManagerClient, ref: str, seconds: float) -> list[float]:
    took: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        await client.get_session(ref)
        took.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)
    return took


def _describe(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (f"{label}: n={len(ms)} p50={statistics.median(ms):.2f} ms "
            f"p90={ms[int(0.9 * (len(ms) - 1))]:.2f} ms")


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bai-bench-hb-"))
    with stack(log_dir, "--heartbeat-interval-ms", str(args.interval_ms),
               "--log-level", "WARNING") as st:
        pid = _manager_pid(st.manager.rsplit(":", 1)[1])
        config = ClientConfig(manager_addr=st.manager, access_key=st.access_key,
                              secret_key=st.secret_key, timeout=30)
        async with ManagerClient(config) as client:
            session = (await client.create_session(spb.CreateSessionRequest(
                image="python", enqueue_only=True, name="hb-probe"))).session
            await _latencies(client, session.id, 1.0)  # warm the channel and caches
            idle = await _latencies(client, session.id, args.probe)
            logs = [log_dir / f"fleet-{i}.log" for i in range(args.fleet_procs)]
            per = args.agents // args.fleet_procs
            argvs = [[PY, "-m", "bai.agent", "simulate", "--manager", st.manager,
                      "--service-token", TOKEN, "--count", str(per), "--first", str(1 + i * per),
                      "--cpu", "4", "--mem", "16g", "--stats-interval", "1"]
                     for i in range(args.fleet_procs)]
            t0 = time.perf_counter()
            with contextlib.ExitStack() as procs:
                for argv, log in zip(argvs, logs, strict=True):
                    procs.enter_context(proc(argv, log))
                while _latest(logs)[1] < per * args.fleet_procs:
                    if time.perf_counter() - t0 > 600:
                        raise RuntimeError(f"only {_latest(logs)[1]} agents registered")
                    await asyncio.sleep(0.5)
                print(f"{per * args.fleet_procs} simulated agents in {args.fleet_procs} "
                      f"processes registered in {time.perf_counter() - t0:.1f} s (heartbeat "
                      f"interval {args.interval_ms} ms: "
                      f"{per * args.fleet_procs * 1000 / args.interval_ms:.0f}/s offered)")
                await asyncio.sleep(args.warmup)
                s0, c0 = _latest(logs), _cpu_seconds(pid)
                w0 = time.perf_counter()
                loaded = await _latencies(client, session.id, args.window)
                await asyncio.sleep(1.2)  # the fleets' next stats lines
                s1, c1 = _latest(logs), _cpu_seconds(pid)
                w1 = time.perf_counter() - 1.2
    rate = (s1[2] - s0[2]) / (s1[0] - s0[0])
    busy = (c1 - c0) / (w1 - w0)
    print(f"window {s1[0] - s0[0]:.1f} s: {s1[2] - s0[2]} heartbeats acknowledged; manager CPU "
          f"{busy * 100:.0f}% of one core; {s1[1]} streams registered at the end")
    print(f"manager CPU per heartbeat {busy / rate * 1e6:.0f} us: one fully busy manager core "
          f"would ingest {rate / busy:.0f}/s")
    print(_describe("GetSession without heartbeat load", idle))
    print(_describe("GetSession under heartbeat load", loaded))
    print(f"user RPC p50 under load / without: "
          f"{statistics.median(loaded) / statistics.median(idle):.2f}x")
    print(f"logs: {log_dir}")
    print(f"heartbeats_per_s={rate:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--fleet-procs", type=int, default=2)
    parser.add_argument("--interval-ms", type=int, default=500)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--probe", type=float, default=5.0,
                        help="seconds of GetSession timing without load")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

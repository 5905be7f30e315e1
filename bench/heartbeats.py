"""Heartbeat ingestion (issue 3): simulated agents over real gRPC bidi streams, one manager.

PostgreSQL and a manager process (``--heartbeat-interval-ms``, default 500) are started; the
simulated agents run in this process (bai.agent.fleet: each agent its own AgentService server and
its own Heartbeat stream). Once every agent is registered, the heartbeats the manager
acknowledged (an ack is sent after the heartbeat was handled) are counted over a window; the
manager's CPU use over the window is read from /proc. Last line: ``heartbeats_per_s=<x>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from _sim import TOKEN, stack
from bai.agent.fleet import FleetConfig, SimulatedFleet


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


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bai-bench-hb-"))
    with stack(log_dir, "--heartbeat-interval-ms", str(args.interval_ms),
               "--log-level", "WARNING") as st:
        pid = _manager_pid(st.manager.rsplit(":", 1)[1])
        fleet = SimulatedFleet(FleetConfig(manager=st.manager, service_token=TOKEN,
                                           count=args.agents, cpu=Decimal(4), mem=16 << 30,
                                           registration_timeout_s=120))
        t0 = time.perf_counter()
        await fleet.start()
        await fleet.wait_registered(600)
        print(f"{args.agents} simulated agents registered in {time.perf_counter() - t0:.1f} s "
              f"(heartbeat interval {args.interval_ms} ms: "
              f"{args.agents * 1000 / args.interval_ms:.0f}/s offered)")
        await asyncio.sleep(args.warmup)
        a0, c0, w0 = fleet.acked(), _cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(args.window)
        a1, c1, w1 = fleet.acked(), _cpu_seconds(pid), time.perf_counter()
        registered = fleet.registered()
        await fleet.close()
    rate = (a1 - a0) / (w1 - w0)
    print(f"window {w1 - w0:.1f} s: {a1 - a0} heartbeats acknowledged; manager CPU "
          f"{(c1 - c0) / (w1 - w0) * 100:.0f}% of one core; {registered}/{args.agents} streams "
          f"registered at the end")
    print(f"logs: {log_dir}")
    print(f"heartbeats_per_s={rate:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--interval-ms", type=int, default=500)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

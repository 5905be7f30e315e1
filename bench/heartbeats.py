"""Heartbeat ingestion (issue 3): simulated agents over real gRPC bidi streams, one manager.

PostgreSQL and a manager process (``--heartbeat-interval-ms``) are started. With ``--mode
worker`` (the default) the manager runs with ``--agent-listen`` (and a Redis bus, which that
needs): its heartbeat streams are served by its own registry process (``serve-agents``), the
user RPCs by the main one; ``--mode inprocess`` serves both from one process (the embedded
default), for comparison. The simulated agents run in ``--fleet-procs`` separate processes
(``python -m bai.agent simulate``: each agent its own AgentService server and its own Heartbeat
stream), which print how many heartbeats the manager acknowledged (an ack is sent after the
heartbeat was handled) every second. Once every agent is registered, the acknowledged heartbeats
are counted over a window; the CPU time of the process that ingests them (the registry process,
or the manager) and of the main manager process over the window are read from /proc. CPU per
heartbeat is the figure that survives a loaded machine: ``1 / (CPU per heartbeat)`` is what one
fully busy core of the ingesting process would take.

User RPC latency: signed GetSession calls (one at a time) are timed before the fleet starts
(no load) and again during the window; p50/p99 of both are printed with their ratio (target: at
most 1.2x, i.e. user RPCs not slowed by more than 20%). On a small machine the fleet processes
compete with the manager for the same cores, which slows everything, user RPCs included.
Last line: ``heartbeats_per_s=<x>``.
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

from _sim import PY, TOKEN, free_port, proc, stack
from bai.client.client import ClientConfig, ManagerClient
from bai.pb.manager.v1 import session_service_pb2 as spb

_STATS = re.compile(rb"fleet stats: t=([\d.]+) registered=(\d+) acked=(\d+)")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _manager_pid(command: str, address: str) -> int:
    """The pid of the manager process running ``command`` (``serve`` or ``serve-agents``) with
    ``address`` on its command line."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"bai.manager" in cmd and command.encode() in cmd and address.encode() in cmd:
                return int(entry.name)
    raise RuntimeError(f"no manager process listens on {address}")


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


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))] * 1000


def _describe(label: str, values: list[float]) -> str:
    return f"{label}: n={len(values)} p50={_p(values, 0.5):.2f} ms p99={_p(values, 0.99):.2f} ms"


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bai-bench-hb-"))
    worker = args.mode == "worker"
    agent_listen = f"127.0.0.1:{free_port()}" if worker else ""
    extra = ("--agent-listen", agent_listen) if worker else ()
    with stack(log_dir, "--heartbeat-interval-ms", str(args.interval_ms),
               "--log-level", "WARNING", *extra, redis=worker) as st:
        agents_at = agent_listen or st.manager
        await _wait_port(agents_at, 60)
        pid = _manager_pid("serve", st.manager)
        ingest_pid = _manager_pid("serve-agents", agent_listen) if worker else pid
        config = ClientConfig(manager_addr=st.manager, access_key=st.access_key,
                              secret_key=st.secret_key, timeout=30)
        async with ManagerClient(config) as client:
            session = (await client.create_session(spb.CreateSessionRequest(
                image="python", enqueue_only=True, name="hb-probe"))).session
            await _latencies(client, session.id, 1.0)  # warm the channel and caches
            m0 = _cpu_seconds(pid)
            idle = await _latencies(client, session.id, args.probe)
            idle_cpu = _cpu_seconds(pid) - m0
            logs = [log_dir / f"fleet-{i}.log" for i in range(args.fleet_procs)]
            per = args.agents // args.fleet_procs
            argvs = [[PY, "-m", "bai.agent", "simulate", "--manager", agents_at,
                      "--service-token", TOKEN, "--count", str(per), "--first", str(1 + i * per),
                      "--cpu", "4", "--mem", "16g", "--stats-interval", "1"]
                     for i in range(args.fleet_procs)]
            t0 = time.perf_counter()
            fleet_pids: list[int] = []
            with contextlib.ExitStack() as procs:
                for argv, log in zip(argvs, logs, strict=True):
                    fleet_pids.append(procs.enter_context(proc(argv, log)).pid)
                # A machine too small for the fleet never gets every stream registered (starved
                # fleet processes miss their own deadlines and reconnect): measure what is
                # there after --register-within seconds, and say so.
                while (registered := _latest(logs)[1]) < per * args.fleet_procs:
                    if time.perf_counter() - t0 > args.register_within:
                        if registered < per * args.fleet_procs // 2:
                            raise RuntimeError(f"only {registered} agents registered")
                        print(f"only {registered} of {per * args.fleet_procs} agents registered "
                              f"within {args.register_within:.0f} s: the machine cannot run "
                              f"this fleet; measuring what is there")
                        break
                    await asyncio.sleep(0.5)
                print(f"{registered} simulated agents in {args.fleet_procs} processes "
                      f"registered in {time.perf_counter() - t0:.1f} s (heartbeat interval "
                      f"{args.interval_ms} ms: "
                      f"{registered * 1000 / args.interval_ms:.0f}/s offered)")
                await asyncio.sleep(args.warmup)
                s0, c0, i0 = _latest(logs), _cpu_seconds(pid), _cpu_seconds(ingest_pid)
                f0 = sum(_cpu_seconds(p) for p in fleet_pids)
                w0 = time.perf_counter()
                loaded = await _latencies(client, session.id, args.window)
                await asyncio.sleep(1.2)  # the fleets' next stats lines
                s1, c1, i1 = _latest(logs), _cpu_seconds(pid), _cpu_seconds(ingest_pid)
                f1 = sum(_cpu_seconds(p) for p in fleet_pids)
                w1 = time.perf_counter() - 1.2
    acked, seconds = s1[2] - s0[2], s1[0] - s0[0]
    rate = acked / seconds
    ingest_cpu = i1 - i0
    where = "registry process" if worker else "manager process (heartbeats and user RPCs)"
    print(f"mode {args.mode}: window {seconds:.1f} s: {acked} heartbeats acknowledged; "
          f"{s1[1]} streams registered at the end")
    print(f"{where} CPU {ingest_cpu / (w1 - w0) * 100:.0f}% of one core; "
          f"{ingest_cpu / acked * 1e6:.0f} us per heartbeat: one fully busy core would ingest "
          f"{acked / ingest_cpu:.0f}/s")
    if worker:
        # The main process's CPU per GetSession (its background loops included) with and
        # without heartbeat load: equal figures mean the heartbeats cost it nothing, and any
        # latency growth comes from the machine's cores being shared.
        print(f"main manager process (user RPCs, scheduler) CPU "
              f"{(c1 - c0) / (w1 - w0) * 100:.0f}% of one core; per GetSession "
              f"{idle_cpu / len(idle) * 1e3:.2f} ms without heartbeat load, "
              f"{(c1 - c0) / len(loaded) * 1e3:.2f} ms under it")
    print(f"fleet processes CPU {(f1 - f0) / (w1 - w0) * 100:.0f}% of one core; "
          f"{(f1 - f0) / acked * 1e6:.0f} us per heartbeat (offering 5,000/s takes "
          f"{(f1 - f0) / acked * 5000:.1f} cores of simulated agents; this machine has "
          f"{os.cpu_count()})")
    print(_describe("GetSession without heartbeat load", idle))
    print(_describe("GetSession under heartbeat load", loaded))
    print(f"user RPC under load / without: p50 "
          f"{statistics.median(loaded) / statistics.median(idle):.2f}x, p99 "
          f"{_p(loaded, 0.99) / _p(idle, 0.99):.2f}x")
    print(f"logs: {log_dir}")
    print(f"heartbeats_per_s={rate:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--fleet-procs", type=int, default=4)
    parser.add_argument("--interval-ms", type=int, default=1000,
                        help="heartbeat interval: agents * 1000 / interval heartbeats/s offered")
    parser.add_argument("--mode", choices=["worker", "inprocess"], default="worker",
                        help="worker: heartbeats served by the manager's own registry process "
                        "(--agent-listen); inprocess: by the manager process itself")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--register-within", type=float, default=240.0,
                        help="seconds to wait for every agent to register")
    parser.add_argument("--probe", type=float, default=5.0,
                        help="seconds of GetSession timing without load")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

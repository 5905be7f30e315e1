"""P7: signed ``GET /session/{id}`` of one running session through the gateway, on one core.

A real manager process (SQLite by default) and a real gateway process (one uvicorn worker,
pinned to one CPU with ``sched_setaffinity``); the session is made RUNNING by a protocol agent
(tests/manager/manager_harness.py: real gRPC, no containers — the GET path never reaches an
agent, so Docker is not needed). Every response is checked (status 200 and the session id).

The load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio streams (a few µs per
request, unlike httpx's ~1 ms), pinned to the other CPU with the manager. The signature (Date
within the skew window) is computed once, as a client reusing it for a few minutes may.

Baseline in the same run: the same load against a bare uvicorn app on the same pinned core that
answers a fixed JSON body (the ceiling of one uvicorn worker with this load generator, which
shares its core with the manager and itself limits the bare run). Each run also prints the CPU
time each process spent per request (from /proc, so the figure holds on a loaded machine);
``py-spy record -p <pid>`` on the printed pids profiles either process under this load. Last
line: ``req_per_s=<x> of_bare=<gateway / bare> gateway_us_per_req=<µs> manager_us_per_req=<µs>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "manager")]

from _http_load import cpu_seconds, free_port, get_request, load, wait_port  # noqa: E402
from bai.common import auth  # noqa: E402
from manager_harness import ProtocolAgent, prepare_db  # noqa: E402

_BARE_APP = """
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b'{"sessionId":"00000000-0000-0000-0000-000000000000","status":"RUNNING"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning",
            access_log=False)
"""


def _spawn(args: list[str], cpu: int, log: Path) -> subprocess.Popen[bytes]:
    cpus = sorted(os.sched_getaffinity(0))
    pinned = {cpus[cpu % len(cpus)]}
    return subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            preexec_fn=lambda: os.sched_setaffinity(0, pinned))


def _signed(host: str, path: str, keys: object) -> dict[str, str]:
    date = auth.now_date()
    signed = auth.SignedRequest("GET", path, date, host, "application/octet-stream",
                                auth.API_VERSION)
    return {"Date": date, "X-BackendAI-Version": auth.API_VERSION,
            "Authorization": auth.authorization_header(
                keys.access_key, auth.sign(signed, keys.secret_key))}  # type: ignore[attr-defined]


async def _run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bai-bench-"))
    db_url = args.db_url or f"sqlite+aiosqlite:///{work}/m.db"
    _, user = await prepare_db(db_url)
    token = secrets.token_hex(16)
    mport, gport, bport = free_port(), free_port(), free_port()
    py = sys.executable
    procs = [
        _spawn([py, "-m", "bai.manager", "serve", "--listen", f"127.0.0.1:{mport}",
                "--db-url", db_url, "--service-token", token, "--log-level", "WARNING"],
               0, work / "manager.log"),
        _spawn([py, "-m", "bai.gateway", "serve", "--listen", f"127.0.0.1:{gport}",
                "--manager", f"127.0.0.1:{mport}", "--service-token", token,
                "--log-level", "warning", "--rate-limit", "100000000"], 1, work / "gateway.log"),
        _spawn([py, "-c", _BARE_APP, str(bport)], 1, work / "bare.log"),
    ]
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"pids manager={procs[0].pid} gateway={procs[1].pid} (for a profiler)", flush=True)
    agent: ProtocolAgent | None = None
    try:
        await wait_port(mport, procs[0], str(work / "manager.log"))
        await wait_port(gport, procs[1], str(work / "gateway.log"))
        await wait_port(bport, procs[2], str(work / "bare.log"))
        agent = await ProtocolAgent("i-bench-" + secrets.token_hex(3), f"127.0.0.1:{mport}",
                                    token).start()
        await asyncio.wait_for(agent.registered.wait(), 30)
        session_id = await _create_session(gport, user)
        host = f"127.0.0.1:{gport}"
        path = f"/session/{session_id}"
        request = get_request(host, path, _signed(host, path, user))
        bare = get_request(f"127.0.0.1:{bport}", path, {})
        expect = session_id.encode()
        zero = b"00000000-0000"
        await load(gport, request, expect, 1.0, args.concurrency)  # warm-up
        await load(bport, bare, zero, 0.5, args.concurrency)
        results: dict[str, float] = {}
        cpu_us: dict[str, dict[str, float]] = {}
        for label, port, req, exp in (("bare uvicorn (baseline)", bport, bare, zero),
                                      ("gateway GET session", gport, request, expect)):
            cpu0 = {name: cpu_seconds(p.pid) for name, p in zip(("manager", "gateway", "bare"),
                                                                  procs, strict=True)}
            t0 = time.perf_counter()
            ok, failed = await load(port, req, exp, args.seconds, args.concurrency)
            elapsed = time.perf_counter() - t0
            spent = {name: cpu_seconds(p.pid) - cpu0[name]
                     for name, p in zip(("manager", "gateway", "bare"), procs, strict=True)}
            busy = " ".join(f"{name}_cpu={cpu / elapsed:.0%}" for name, cpu in spent.items())
            # CPU time per request survives the noise of a shared machine better than req/s.
            per_request = " ".join(f"{name}_us_per_req={cpu / max(ok, 1) * 1e6:.0f}"
                                   for name, cpu in spent.items() if cpu / elapsed > 0.05)
            results[label] = ok / elapsed
            cpu_us[label] = {name: cpu / max(ok, 1) * 1e6 for name, cpu in spent.items()}
            print(f"{label:<26} requests={ok} failed={failed} seconds={elapsed:.1f} "
                  f"req_per_s={ok / elapsed:.1f} {busy} {per_request}")
            if failed:
                raise SystemExit(f"{failed} responses were not 200 with the session")
    finally:
        if agent is not None:
            await agent.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
    gateway, baseline = results["gateway GET session"], results["bare uvicorn (baseline)"]
    spent = cpu_us["gateway GET session"]
    print(f"req_per_s={gateway:.1f} of_bare={gateway / baseline:.2f} "
          f"gateway_us_per_req={spent['gateway']:.0f} manager_us_per_req={spent['manager']:.0f}")


async def _create_session(port: int, user: object) -> str:
    import httpx
    from cluster import SignedAuth

    signer = SignedAuth(user.access_key, user.secret_key)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=signer,
                                 timeout=60) as client:
        body = {"name": "gwb-" + uuid.uuid4().hex[:8], "image": "python",
                "config": {"resources": {"cpu": "1"}}}
        r = await client.post("/session", json=body)
        assert r.status_code in (200, 201) and r.json()["status"] == "RUNNING", r.text
        return str(r.json()["sessionId"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--db-url", default="", help="manager database (default: a temp SQLite)")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()

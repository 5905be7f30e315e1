"""The webserver's cost: ``GET /func/session/{id}`` with a session cookie (re-signed and proxied
to the gateway) against the same signed ``GET /session/{id}`` sent to the gateway directly.

Real processes: manager (SQLite), gateway and webserver (``python -m bai.<c> serve``); a
protocol agent (tests/manager/manager_harness.py: real gRPC, no containers) makes one session
RUNNING. The load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio streams;
every response is checked (200 and the session id). The direct requests reuse one signature
(a client may for minutes); the webserver signs every request anew, as it must.

Baseline in the same run: the direct gateway requests. Each phase prints the CPU time every
process spent per request (from /proc: the figure that survives a loaded, shared machine).
Last line: ``webserver_req_per_s=<x> of_direct=<via webserver / direct>
webserver_us_per_req=<µs> gateway_us_per_req=<µs>``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "manager")]

import httpx  # noqa: E402
from _http_load import cpu_seconds, free_port, get_request, load, wait_port  # noqa: E402
from bai.common import auth  # noqa: E402
from bai.manager.adapters.db import Database  # noqa: E402
from bai.manager.adapters.db.accounts import ADMIN_EMAIL, bootstrap_admin  # noqa: E402
from cluster import SignedAuth  # noqa: E402
from manager_harness import Keys, ProtocolAgent, prepare_db  # noqa: E402

_NAMES = ("manager", "gateway", "webserver")


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def _prepare(db_url: str, password: str) -> Keys:
    admin, _ = await prepare_db(db_url)
    db = Database(db_url)
    try:
        await bootstrap_admin(db, admin.access_key, admin.secret_key, password)
    finally:
        await db.close()
    return admin


async def _run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bai-bench-web-"))
    db_url = f"sqlite+aiosqlite:///{work}/m.db"
    password = secrets.token_urlsafe(12)
    admin = await _prepare(db_url, password)
    token = secrets.token_hex(16)
    mport, gport, wport = free_port(), free_port(), free_port()
    py = sys.executable
    commands = (
        [py, "-m", "bai.manager", "serve", "--listen", f"127.0.0.1:{mport}", "--db-url", db_url,
         "--service-token", token, "--log-level", "WARNING"],
        [py, "-m", "bai.gateway", "serve", "--listen", f"127.0.0.1:{gport}", "--manager",
         f"127.0.0.1:{mport}", "--service-token", token, "--log-level", "warning",
         "--rate-limit", "100000000"],
        [py, *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
         "-m", "bai.webserver", "serve", "--listen", f"127.0.0.1:{wport}", "--gateway",
         f"http://127.0.0.1:{gport}", "--log-level", "warning"],
    )
    procs = [_spawn(c, work / f"{n}.log") for n, c in zip(_NAMES, commands, strict=True)]
    print("pids " + " ".join(f"{n}={p.pid}" for n, p in zip(_NAMES, procs, strict=True)),
          flush=True)
    agent: ProtocolAgent | None = None
    try:
        for port, proc in zip((mport, gport, wport), procs, strict=True):
            await wait_port(port, proc)
        agent = await ProtocolAgent("i-bench-" + secrets.token_hex(3), f"127.0.0.1:{mport}",
                                    token).start()
        session_id, cookie = await _session_and_cookie(gport, wport, admin, password)
        host, path = f"127.0.0.1:{gport}", f"/session/{session_id}"
        date = auth.now_date()
        signed = auth.SignedRequest("GET", path, date, host, "application/octet-stream",
                                    auth.API_VERSION)
        direct = get_request(host, path, {
            "Date": date, "X-BackendAI-Version": auth.API_VERSION,
            "Authorization": auth.authorization_header(
                admin.access_key, auth.sign(signed, admin.secret_key))})
        via_web = get_request(f"127.0.0.1:{wport}", "/func" + path,
                           {"Cookie": f"AIOHTTP_SESSION={cookie}"})
        expect = session_id.encode()
        await load(wport, via_web, expect, 1.0, args.concurrency)  # warm-up
        results: dict[str, tuple[float, dict[str, float]]] = {}
        for label, port, request in (("direct to gateway", gport, direct),
                                     ("through webserver", wport, via_web)):
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            t0 = time.perf_counter()
            ok, failed = await load(port, request, expect, args.seconds, args.concurrency)
            elapsed = time.perf_counter() - t0
            per_req = {n: (cpu_seconds(p.pid) - c0) / max(ok, 1) * 1e6
                       for n, p, c0 in zip(_NAMES, procs, cpu0, strict=True)}
            results[label] = (ok / elapsed, per_req)
            print(f"{label:<18} requests={ok} failed={failed} req_per_s={ok / elapsed:.1f} "
                  + " ".join(f"{n}_us_per_req={us:.0f}" for n, us in per_req.items()),
                  flush=True)
            if failed:
                raise SystemExit(f"{failed} responses were not 200 with the session")
    finally:
        if agent is not None:
            await agent.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
    (web_rps, web_cpu), (direct_rps, _) = results["through webserver"], \
        results["direct to gateway"]
    print(f"webserver_req_per_s={web_rps:.1f} of_direct={web_rps / direct_rps:.2f} "
          f"webserver_us_per_req={web_cpu['webserver']:.0f} "
          f"gateway_us_per_req={web_cpu['gateway']:.0f}")


async def _session_and_cookie(gport: int, wport: int, admin: Keys,
                              password: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gport}", timeout=60,
                                 auth=SignedAuth(admin.access_key, admin.secret_key)) as c:
        body = {"name": "wsb-" + uuid.uuid4().hex[:8], "image": "python",
                "config": {"resources": {"cpu": "1"}}}
        r = await c.post("/session", json=body)
        assert r.status_code in (200, 201) and r.json()["status"] == "RUNNING", r.text
        session_id = str(r.json()["sessionId"])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{wport}", timeout=60) as c:
        r = await c.post("/server/login", json={"username": ADMIN_EMAIL, "password": password})
        assert r.json()["authenticated"] is True, r.text
        return session_id, str(r.cookies["AIOHTTP_SESSION"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", default="",
                        help="write the webserver's cProfile stats to this file")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()

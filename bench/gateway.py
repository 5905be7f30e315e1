"""Signed ``GET /session/{ref}`` of one running session through the gateway (one uvicorn worker).

Concurrent keep-alive clients for ``--seconds``; the signature (Date within the skew window)
is computed once, as a client reusing it for a few minutes may. Last line: `req_per_s=<x>`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

import httpx
from _cluster import Cluster, start_cluster
from bai.common import auth


def _headers(cluster: Cluster, path: str) -> dict[str, str]:
    date = auth.now_date()
    signed = auth.SignedRequest("GET", path, date, cluster.gateway_addr,
                                "application/octet-stream", auth.API_VERSION)
    return {
        "Date": date,
        "X-BackendAI-Version": auth.API_VERSION,
        "Authorization": auth.authorization_header(
            cluster.access_key, auth.sign(signed, cluster.secret_key)),
    }


async def _load(cluster: Cluster, path: str, seconds: float, concurrency: int) -> tuple[int, int]:
    headers = _headers(cluster, path)
    ok = failed = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=cluster.gateway_url, limits=limits,
                                 timeout=30) as client:

        async def worker() -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                r = await client.get(path, headers=headers)
                if r.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    db = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='bai-bench-')}/m.db"
    cluster = start_cluster(db)
    try:
        with cluster.client() as c:
            name = "gwb-" + uuid.uuid4().hex[:8]
            body = {"name": name, "image": "python", "config": {"resources": {"cpu": "1"}}}
            r = c.post("/session", json=body)
            assert r.status_code in (200, 201), r.text
            path = f"/session/{r.json()['sessionId']}"
            asyncio.run(_load(cluster, path, 1.0, args.concurrency))  # warm-up
            t0 = time.perf_counter()
            ok, failed = asyncio.run(_load(cluster, path, args.seconds, args.concurrency))
            elapsed = time.perf_counter() - t0
            c.delete(f"/session/{name}")
    finally:
        cluster.shutdown()
    print(f"requests={ok} failed={failed} seconds={elapsed:.1f} concurrency={args.concurrency}")
    print(f"req_per_s={ok / elapsed:.1f}")


if __name__ == "__main__":
    main()

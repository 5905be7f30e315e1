"""P2: `print(1)` round trip on a running session through the REST gateway vs `docker exec`.

Same container for both sides: the session's kernel. Last line:
`exec_speedup=<docker exec p50 / bai p50> p50_ms=<bai p50 in ms>`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid

from _cluster import start_cluster, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=300, help="bai samples")
    parser.add_argument("--docker-n", type=int, default=20, help="docker exec samples")
    args = parser.parse_args()
    db = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='bai-bench-')}/m.db"
    cluster = start_cluster(db)
    bai: list[float] = []
    bare: list[float] = []
    try:
        with cluster.client() as c:
            name = "rtt-" + uuid.uuid4().hex[:8]
            body = {"name": name, "image": "python", "config": {"resources": {"cpu": "1"}}}
            session = c.post("/session", json=body).json()["sessionId"]
            container = c.get(f"/session/{session}").json()["containerId"]
            payload = {"mode": "query", "code": "print(1)", "runId": None}
            for _ in range(20):  # warm-up
                c.post(f"/session/{session}", json=payload)
            for _ in range(args.n):
                t0 = time.perf_counter()
                r = c.post(f"/session/{session}", json=payload)
                bai.append(time.perf_counter() - t0)
                assert r.json()["result"]["console"] == [["stdout", "1\n"]], r.text
            for _ in range(args.docker_n):
                t0 = time.perf_counter()
                out = subprocess.run(
                    ["docker", "exec", container, "python3", "-c", "print(1)"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                bare.append(time.perf_counter() - t0)
                assert out.stdout == "1\n"
            c.delete(f"/session/{session}")
    finally:
        cluster.shutdown()
    print(summary("docker exec (baseline)", bare))
    print(summary("bai REST exec", bai))
    p50 = statistics.median(bai)
    print(f"exec_speedup={statistics.median(bare) / p50:.1f} p50_ms={p50 * 1000:.2f}")


if __name__ == "__main__":
    main()

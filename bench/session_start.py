"""P1: session create → RUNNING → first exec result (warm image) vs a bare `docker run`.

Both sides run in the same process, alternating, on the same image. The bai side goes through
the REST gateway exactly like the official client: POST /session (held until RUNNING), then
POST /session/{id} with `print(1)`. Last line: `session_start_ratio=<bai p50 / docker p50>`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid

from _cluster import IMAGE, start_cluster, summary


def docker_run_once() -> float:
    t0 = time.perf_counter()
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", IMAGE, "python3", "-c", "print(1)"],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - t0
    assert out.stdout == "1\n", out.stdout
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="samples per side")
    args = parser.parse_args()
    db = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='bai-bench-')}/m.db"
    cluster = start_cluster(db)
    bai: list[float] = []
    bare: list[float] = []
    try:
        with cluster.client() as c:
            docker_run_once()  # warm the page cache for both sides
            for _ in range(args.n):
                bare.append(docker_run_once())
                name = "bench-" + uuid.uuid4().hex[:8]
                body = {
                    "name": name,
                    "image": "python",
                    "type": "interactive",
                    "config": {"resources": {"cpu": "1", "mem": "256m"}},
                }
                t0 = time.perf_counter()
                created = c.post("/session", json=body).json()
                assert created["status"] == "RUNNING", created
                result = c.post(
                    f"/session/{created['sessionId']}",
                    json={"mode": "query", "code": "print(1)", "runId": None},
                ).json()
                bai.append(time.perf_counter() - t0)
                assert result["result"]["console"] == [["stdout", "1\n"]], result
                c.delete(f"/session/{created['sessionId']}")
    finally:
        cluster.shutdown()
    print(summary("docker run (baseline)", bare))
    print(summary("bai create→RUNNING→exec", bai))
    print(f"session_start_ratio={statistics.median(bai) / statistics.median(bare):.2f}")


if __name__ == "__main__":
    main()

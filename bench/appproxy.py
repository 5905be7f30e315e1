"""P5: an app behind the app proxy (Envoy) vs the same app directly over its Unix socket.

One upstream (uvicorn + httptools on a Unix socket: `GET /` answers "ok", `/ws` echoes) is
measured both ways in the same run, alternating rounds:
- throughput: h2load (HTTP/1.1, keep-alive, several connections) directly on the socket
  (`-B unix:PATH`) and through Envoy on the circuit's port with the permit cookie (the steady
  state of a browser); one extra round sends the token on every request instead (every
  request asks the coordinator's ext_authz), reported for information;
- latency: one connection, sequential requests, p50 from h2load's per-request log;
- websockets: sequential echo round trips, p50, both ways.
Without h2load (Debian `nghttp2-client`) a Python load generator stands in; it may bottleneck.

Last line: `added_p50_ms=<proxy p50 - direct p50> throughput_ratio=<proxy rps / direct rps>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from bai.appproxy.config import AppProxyConfig
from bai.appproxy.domain.model import Frontends
from bai.appproxy.server import port_is_free, running
from bai.appproxy.xds.bootstrap import BootstrapParams, render_bootstrap
from bai.appproxy.xds.envoy_process import EnvoyProcess
from bai.appproxy.xds.resources import ProxySettings
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.appproxy.v1 import circuit_pb2, circuit_service_pb2, circuit_service_pb2_grpc
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.client import unix_connect as ws_unix_connect

TOKEN = "bench-token"
Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


# ----- the upstream app (run in its own process) -----------------------------------------


async def _asgi(scope: dict, receive: Callable, send: Callable) -> None:  # type: ignore[type-arg]
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (msg := await receive())["type"] == "websocket.receive":
            await send(
                {"type": "websocket.send", "text": msg.get("text"), "bytes": msg.get("bytes")}
            )


def serve_upstream(path: str) -> None:
    import uvicorn

    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        print("warning: httptools missing, upstream uses h11 (slow)", file=sys.stderr)
        http = "h11"
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    uvicorn.run(
        _asgi, uds=path, http=http, loop=loop, ws="auto", lifespan="off",
        log_level="warning", access_log=False,
    )  # fmt: skip


# ----- load generators -------------------------------------------------------------------


def _h2load(args: list[str]) -> str:
    out = subprocess.run(["h2load", "--h1", *args], capture_output=True, text=True, check=True)
    text = out.stdout
    ok = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not ok or any(int(n) for n in ok.groups()[1:]):
        raise RuntimeError(f"h2load saw non-2xx answers:\n{text}")
    return text


def h2load_rps(target: list[str], conns: int, seconds: float) -> float:
    text = _h2load(
        [
            "-c",
            str(conns),
            "-t",
            "1",
            "-D",
            str(max(1, round(seconds))),
            "--warm-up-time",
            "1",
            *target,
        ]
    )
    match = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    assert match, text
    return float(match.group(1))


def h2load_p50_ms(target: list[str], count: int, workdir: Path) -> float:
    log = workdir / "h2load.log"
    _h2load(["-c", "1", "-t", "1", "-n", str(count), "--log-file", str(log), *target])
    micros = [int(line.split("\t")[2]) for line in log.read_text().splitlines() if line]
    return statistics.median(micros[count // 10 :]) / 1000  # skip the first 10 % (warm-up)


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)


async def py_load(
    connect: Connect, request: bytes, conns: int, seconds: float
) -> tuple[float, list[float]]:
    """A Python stand-in for h2load: keep-alive connections, requests back to back."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> int:
        reader, writer = await connect()
        done = 0
        while (now := time.perf_counter()) < deadline:
            await _one(reader, writer, request)
            latencies.append(time.perf_counter() - now)
            done += 1
        writer.close()
        return done

    start = time.perf_counter()
    counts = await asyncio.gather(*(worker() for _ in range(conns)))
    return sum(counts) / (time.perf_counter() - start), latencies


# ----- websockets --------------------------------------------------------------------------


async def ws_p50_ms(open_ws: Callable[[], object], count: int) -> float:
    async with open_ws() as ws:  # type: ignore[attr-defined]
        samples = []
        for i in range(count):
            t0 = time.perf_counter()
            await ws.send(f"echo {i}")
            assert await ws.recv() == f"echo {i}"
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples[count // 10 :]) * 1000


# ----- the run -----------------------------------------------------------------------------


def _free_block(count: int) -> list[int]:
    for base in range(41000, 60000, 50):
        if all(port_is_free("127.0.0.1", p) for p in range(base, base + count)):
            return list(range(base, base + count))
    raise RuntimeError("no free ports")


async def _wait_socket(path: Path) -> None:
    for _ in range(500):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_unix_connection(str(path))
            writer.close()
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"upstream did not listen on {path}")


async def bench(args: argparse.Namespace, workdir: Path, sock: Path) -> None:
    ports = _free_block(4)
    config = AppProxyConfig(
        service_token=TOKEN,
        listen="127.0.0.1:0",
        xds_socket=workdir / "xds.sock",
        state_path=workdir / "state.json",
        port_range=(ports[1], ports[-1]),
        proxy=ProxySettings(frontends=Frontends(subdomain_port=ports[0])),
        upstream_roots=(str(workdir),),
    )
    bootstrap = workdir / "envoy.yaml"
    bootstrap.write_text(render_bootstrap(BootstrapParams(str(config.xds_socket), admin_port=0)))
    envoy = EnvoyProcess(bootstrap, workdir=workdir, concurrency=args.envoy_concurrency)
    try:
        await _wait_socket(sock)
        async with running(config) as coordinator:
            await envoy.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{coordinator.control_port}") as ch:
                stub = circuit_service_pb2_grpc.CircuitServiceStub(ch)
                reply = await stub.CreateCircuit(
                    circuit_service_pb2.CreateCircuitRequest(
                        session_id=str(uuid.uuid4()),
                        kernel_id=str(uuid.uuid4()),
                        app="bench",
                        protocol=circuit_pb2.Circuit.PROTOCOL_HTTP,
                        upstream_socket_path=str(sock),
                        frontend_mode=circuit_pb2.Circuit.FRONTEND_MODE_PORT,
                        owner_access_key="AKIABENCH",
                    ),
                    metadata=[(SERVICE_TOKEN_KEY, TOKEN)],
                    timeout=5,
                )
            circuit = reply.circuit
            for _ in range(500):
                if coordinator.ads.in_sync():
                    break
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient() as client:
                first = await client.get(circuit.url)
                assert first.status_code == 200, first.text
                cookie = first.headers["set-cookie"].split(";")[0]
            port = circuit.frontend_port
            await asyncio.to_thread(
                run_measurements, args, workdir, sock, port, cookie, circuit.token
            )
    finally:
        await envoy.stop()


def run_measurements(
    args: argparse.Namespace, workdir: Path, sock: Path, port: int, cookie: str, token: str
) -> None:
    direct_target = ["-B", f"unix:{sock}", "http://localhost/"]
    proxy_target = ["-H", f"cookie: {cookie}", f"http://127.0.0.1:{port}/"]
    token_target = [f"http://127.0.0.1:{port}/?token={token}"]
    have_h2load = shutil.which("h2load") is not None and not args.python_load
    print(f"loadgen={'h2load' if have_h2load else 'python'} connections={args.connections} "
          f"envoy_concurrency={args.envoy_concurrency}")  # fmt: skip

    def rps(target: list[str], kind: str) -> float:
        if have_h2load:
            return h2load_rps(target, args.connections, args.seconds)
        return asyncio.run(_py(kind, sock, port, cookie, token, args.connections, args.seconds))[0]

    def p50(target: list[str], kind: str) -> float:
        if have_h2load:
            return h2load_p50_ms(target, args.requests, workdir)
        _, lat = asyncio.run(_py(kind, sock, port, cookie, token, 1, args.seconds / 2))
        return statistics.median(lat) * 1000

    direct_rps, proxy_rps, direct_p50, proxy_p50 = [], [], [], []
    for _ in range(args.rounds):
        direct_rps.append(rps(direct_target, "direct"))
        proxy_rps.append(rps(proxy_target, "proxy"))
        direct_p50.append(p50(direct_target, "direct"))
        proxy_p50.append(p50(proxy_target, "proxy"))
    token_rps = rps(token_target, "token")
    token_p50 = p50(token_target, "token")
    ws_direct = asyncio.run(
        ws_p50_ms(lambda: ws_unix_connect(str(sock), "ws://localhost/ws"), args.ws_messages)
    )
    ws_proxy = asyncio.run(
        ws_p50_ms(
            lambda: ws_connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"cookie": cookie}),
            args.ws_messages,
        )
    )
    d_rps, p_rps = statistics.median(direct_rps), statistics.median(proxy_rps)
    d_p50, p_p50 = statistics.median(direct_p50), statistics.median(proxy_p50)
    for label, rate, p50_ms, rounds in (
        ("http direct   ", d_rps, d_p50, direct_rps),
        ("http via envoy", p_rps, p_p50, proxy_rps),
    ):
        per_round = [round(x) for x in rounds]
        print(f"{label} rps={rate:9.0f} p50={p50_ms:.3f} ms  rounds rps={per_round}")
    print(f"http via envoy, token on every request (ext_authz each time) rps={token_rps:.0f} "
          f"p50={token_p50:.3f} ms ratio={token_rps / d_rps:.3f}")  # fmt: skip
    print(f"websocket echo p50 direct={ws_direct:.3f} ms via envoy={ws_proxy:.3f} ms "
          f"added={ws_proxy - ws_direct:.3f} ms")  # fmt: skip
    print(f"added_p50_ms={p_p50 - d_p50:.3f} throughput_ratio={p_rps / d_rps:.3f}")


async def _py(
    kind: str, sock: Path, port: int, cookie: str, token: str, conns: int, seconds: float
) -> tuple[float, list[float]]:
    if kind == "direct":
        request = b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n"
        return await py_load(
            lambda: asyncio.open_unix_connection(str(sock)), request, conns, seconds
        )
    path = f"/?token={token}" if kind == "token" else "/"
    extra = "" if kind == "token" else f"cookie: {cookie}\r\n"
    request = f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}\r\n".encode()
    return await py_load(
        lambda: asyncio.open_connection("127.0.0.1", port), request, conns, seconds
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", metavar="SOCKET", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    parser.add_argument("--seconds", type=int, default=4, help="length of a throughput run")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--requests", type=int, default=3000, help="sequential latency samples")
    parser.add_argument("--ws-messages", type=int, default=2000, help="websocket echo samples")
    parser.add_argument(
        "--envoy-concurrency",
        type=int,
        default=0,
        help="Envoy worker threads; 0: the CPUs left to Envoy and h2load, at most 4",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pin the app to the first CPU and everything else to the others (default on)",
    )
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator")
    args = parser.parse_args()
    if args.upstream:
        serve_upstream(args.upstream)
        return
    workdir = Path(tempfile.mkdtemp(prefix="bai-bp-", dir="/tmp"))
    sock = workdir / "app.sock"
    cpus = sorted(os.sched_getaffinity(0))
    app_cpus, rest = ({cpus[0]}, set(cpus[1:])) if args.pin and len(cpus) > 1 else (set(cpus),) * 2
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--upstream", str(sock)],
        preexec_fn=lambda: os.sched_setaffinity(0, app_cpus),
    )
    os.sched_setaffinity(0, rest)  # Envoy, h2load and the coordinator inherit the other CPUs
    args.envoy_concurrency = args.envoy_concurrency or min(4, len(rest))
    print(f"cpus: app={sorted(app_cpus)} envoy+loadgen+coordinator={sorted(rest)}")
    try:
        asyncio.run(bench(args, workdir, sock))
    finally:
        upstream.terminate()
        upstream.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

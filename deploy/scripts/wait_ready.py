"""Waits until the gateway (and the webserver, when given) answer the version probe and the
manager reports SERVING."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def _ready(gateway: str, manager: str, webserver: str) -> bool:
    probes = [f"http://{gateway}/"] + ([f"http://{webserver}/func/"] if webserver else [])
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for url in probes:
                if (await client.get(url)).status_code != 200:
                    return False
        async with grpc.aio.insecure_channel(manager) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except (httpx.HTTPError, grpc.aio.AioRpcError):
        return False


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--manager", required=True)
    parser.add_argument("--webserver", default="", help="host:port of the webserver, if started")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if await _ready(args.gateway, args.manager, args.webserver):
            return 0
        await asyncio.sleep(0.3)
    print("timed out waiting for the cluster", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

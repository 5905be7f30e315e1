"""``python -m bai.webserver serve --listen HOST:PORT --gateway URL``.

Every flag also reads ``BAI_WEBSERVER_<FLAG>`` (e.g. ``BAI_WEBSERVER_REDIS_URL``); the flag
wins. SIGTERM/SIGINT stop it gracefully (open requests get a few seconds, then the gateway
client and the session store close).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from aiohttp import web
from bai.webserver.app import create_app
from bai.webserver.config import WebserverConfig

__all__ = ["main"]


def _env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get("BAI_WEBSERVER_" + flag.upper().replace("-", "_"), default)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bai.webserver", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve login, cookie sessions and /func")
    serve.add_argument("--listen", default=_env("listen", "127.0.0.1:8092"),
                       help="HOST:PORT to listen on (default 127.0.0.1:8092)")
    serve.add_argument("--gateway", default=_env("gateway", "http://127.0.0.1:8090"),
                       help="base URL of the REST gateway (default http://127.0.0.1:8090)")
    serve.add_argument("--redis-url", default=_env("redis-url", ""),
                       help="Redis URL for web sessions shared by replicas (default: in process)")
    serve.add_argument("--session-max-age", type=int,
                       default=int(_env("session-max-age", "3600") or 3600),
                       help="seconds a web session lives after login or extension (default 3600)")
    serve.add_argument("--login-domain", default=_env("login-domain", ""),
                       help="domain every login must belong to (default: any)")
    serve.add_argument("--public-endpoint", default=_env("public-endpoint", ""),
                       help="the URL clients use, when a proxy in front changes it (default: "
                            "derived from each request)")
    serve.add_argument("--log-level", default=_env("log-level", "info"),
                       help="logging level (default info)")
    return parser


async def _serve(config: WebserverConfig, host: str, port: int) -> None:
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False,
                           shutdown_timeout=5.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        bound = ", ".join(f"{a[0]}:{a[1]}" for a in runner.addresses)
        logging.getLogger("bai.webserver").info("webserver listening on %s", bound)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = _host_port(args.listen)
    except argparse.ArgumentTypeError as exc:
        print(f"error: --listen: {exc}", file=sys.stderr)
        return 2
    if args.session_max_age <= 0:
        print("error: --session-max-age must be positive", file=sys.stderr)
        return 2
    config = WebserverConfig(gateway_url=args.gateway, redis_url=args.redis_url,
                             session_max_age=args.session_max_age,
                             login_domain=args.login_domain,
                             public_endpoint=args.public_endpoint)
    try:
        create_app(config)  # validates the gateway URL before anything listens
    except ValueError as exc:
        print(f"error: --gateway: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, host, port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bai.gateway serve --listen HOST:PORT --manager HOST:PORT --service-token TOK``.

Every flag also reads ``BAI_GATEWAY_<FLAG>`` (e.g. ``BAI_GATEWAY_SERVICE_TOKEN``); the flag wins.
One uvicorn worker; SIGTERM/SIGINT stop it gracefully (uvicorn drains connections, then the
lifespan closes the manager channel).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

import uvicorn
from bai.gateway.app import create_app
from bai.gateway.config import GatewayConfig

__all__ = ["main"]


def _env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get("BAI_GATEWAY_" + flag.upper().replace("-", "_"), default)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after shutdown (we exit 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bai.gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the REST gateway")
    serve.add_argument(
        "--listen",
        default=_env("listen", "127.0.0.1:8090"),
        help="HOST:PORT to listen on (default 127.0.0.1:8090)",
    )
    serve.add_argument(
        "--manager",
        default=_env("manager", "127.0.0.1:8091"),
        help="HOST:PORT of the manager's gRPC server (default 127.0.0.1:8091)",
    )
    serve.add_argument(
        "--service-token",
        default=_env("service-token"),
        required=_env("service-token") is None,
        help="internal service token shared with the manager",
    )
    serve.add_argument(
        "--redis-url",
        default=_env("redis-url", ""),
        help="Redis URL for rate-limit windows shared by gateway replicas (default: in process)",
    )
    serve.add_argument(
        "--rate-limit",
        type=int,
        default=int(_env("rate-limit", "30000") or 30000),
        help="requests per 15-minute window for keypairs without their own limit (default 30000)",
    )
    serve.add_argument(
        "--log-level", default=_env("log-level", "info"),
        help="logging level (default info; debug adds one access line per request)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        host, port = _host_port(args.listen)
    except argparse.ArgumentTypeError as exc:
        print(f"error: --listen: {exc}", file=sys.stderr)
        return 2
    config = GatewayConfig(manager_addr=args.manager, service_token=args.service_token,
                           redis_url=args.redis_url, rate_limit=args.rate_limit)
    server = _Server(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            workers=1,
            log_level=args.log_level.lower(),
            log_config=None,
            # One formatted log line per request costs more CPU than GET /session itself:
            # access lines only when debugging.
            access_log=args.log_level.lower() == "debug",
            ws="websockets-sansio",
            proxy_headers=False,
            server_header=False,
        )
    )
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Coordinator configuration: one frozen object, built from flags with ``BAI_APPPROXY_<FLAG>``
fallbacks (the flag wins)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bai.appproxy.domain.model import Frontends
from bai.appproxy.xds.bootstrap import BootstrapParams
from bai.appproxy.xds.resources import ProxySettings

__all__ = [
    "AppProxyConfig",
    "bootstrap_from_args",
    "build_parser",
    "config_from_args",
    "parse_argv",
    "parse_port_range",
]

ENV_PREFIX = "BAI_APPPROXY_"


@dataclass(frozen=True)
class AppProxyConfig:
    """Everything the coordinator process needs; defaults are the documented ones."""

    service_token: str
    """Shared internal token required on CircuitService calls (``x-bai-service-token``)."""
    listen: str = "127.0.0.1:10200"
    """host:port of the CircuitService (port 0 picks a free one)."""
    xds_socket: Path = Path("/tmp/bai-appproxy/xds.sock")
    """Unix socket Envoy dials for ADS and ext_authz (created mode 0660; path < 108 bytes)."""
    state_path: Path = Path(".bai/appproxy/state.json")
    """JSON file holding the circuits (mode 0600: it holds their secrets)."""
    port_range: tuple[int, int] = (10250, 10299)
    """Inclusive range of port-mode frontend ports."""
    proxy: ProxySettings = field(default_factory=ProxySettings)
    """How circuits become Envoy configuration (frontends, health checks, fast path)."""
    upstream_roots: tuple[str, ...] = ()
    """Directories app sockets must lie below (e.g. the agents' kernel roots); empty = any."""
    shutdown_grace_s: float = 2.0
    """Grace given to in-flight calls on shutdown (ADS streams are cut after it)."""


def parse_port_range(text: str) -> tuple[int, int]:
    """``"10250-10299"`` -> (10250, 10299)."""
    try:
        low, high = (int(p) for p in text.split("-", 1))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a port range LOW-HIGH, got {text!r}") from exc
    if not 1 <= low <= high <= 65535:
        raise argparse.ArgumentTypeError(f"not a port range: {text!r}")
    return low, high


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """``bai.appproxy`` command line; every flag falls back to ``BAI_APPPROXY_<FLAG>``."""
    env = os.environ if env is None else env

    def default(flag: str, fallback: str | None = None) -> str | None:
        return env.get(ENV_PREFIX + flag.upper().replace("-", "_"), fallback)

    defaults, proxy, frontends = AppProxyConfig("?"), ProxySettings(), Frontends()
    boot = BootstrapParams()
    parser = argparse.ArgumentParser(prog="python -m bai.appproxy", description="bai app proxy")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the coordinator")
    serve.add_argument("--listen", default=default("listen", defaults.listen))
    token = default("service-token")
    serve.add_argument("--service-token", default=token, required=token is None)
    serve.add_argument("--xds-socket", default=default("xds-socket", str(defaults.xds_socket)))
    serve.add_argument("--state", default=default("state", str(defaults.state_path)))
    serve.add_argument(
        "--port-range", type=parse_port_range, default=default("port-range", "10250-10299")
    )
    serve.add_argument("--apps-domain", default=default("apps-domain", frontends.apps_domain))
    serve.add_argument(
        "--subdomain-port",
        type=int,
        default=default("subdomain-port", str(frontends.subdomain_port)),
    )
    serve.add_argument("--public-host", default=default("public-host", frontends.public_host))
    serve.add_argument("--bind-host", default=default("bind-host", proxy.bind_host))
    roots = default("upstream-root")
    serve.add_argument(
        "--upstream-root",
        action="append",
        default=roots.split(os.pathsep) if roots else None,
        help="directory app sockets must lie below (repeatable; env: "
        f"{os.pathsep}-separated); default: any",
    )
    serve.add_argument(
        "--health-check-interval",
        type=float,
        default=default("health-check-interval", str(proxy.health_check_interval_s)),
    )
    serve.add_argument(
        "--cookie-fast-path",
        action=argparse.BooleanOptionalAction,
        default=default("cookie-fast-path", "1") not in ("0", "false", "no"),
        help="let Envoy admit permit-cookie requests itself (default on)",
    )
    serve.add_argument("--log-level", default=default("log-level", "INFO"))

    for name, text in (
        ("bootstrap", "print Envoy's bootstrap YAML"),
        ("envoy", "run Envoy (--disable-hot-restart) with the rendered bootstrap"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--xds-socket", default=default("xds-socket", boot.xds_socket))
        sub.add_argument("--admin-host", default=default("admin-host", boot.admin_host))
        sub.add_argument(
            "--admin-port", type=int, default=default("admin-port", str(boot.admin_port))
        )
        sub.add_argument("--node-id", default=default("node-id", boot.node_id))
    return parser


def config_from_args(args: argparse.Namespace) -> AppProxyConfig:
    """The AppProxyConfig of parsed ``serve`` arguments."""
    port_range = args.port_range
    if isinstance(port_range, str):  # an env default is not converted by argparse
        port_range = parse_port_range(port_range)
    frontends = Frontends(
        public_host=args.public_host,
        apps_domain=args.apps_domain.strip(".").lower(),
        subdomain_port=int(args.subdomain_port),
    )
    proxy = ProxySettings(
        frontends=frontends,
        bind_host=args.bind_host,
        health_check_interval_s=float(args.health_check_interval),
        cookie_fast_path=bool(args.cookie_fast_path),
    )
    return AppProxyConfig(
        service_token=args.service_token,
        listen=args.listen,
        xds_socket=Path(args.xds_socket).absolute(),
        state_path=Path(args.state).absolute(),
        port_range=port_range,
        proxy=proxy,
        upstream_roots=tuple(str(Path(r).absolute()) for r in args.upstream_root or ()),
    )


def bootstrap_from_args(args: argparse.Namespace) -> BootstrapParams:
    """The BootstrapParams of parsed ``bootstrap``/``envoy`` arguments."""
    return BootstrapParams(
        xds_socket=str(Path(args.xds_socket).absolute()),
        admin_host=args.admin_host,
        admin_port=int(args.admin_port),
        node_id=args.node_id,
    )


def parse_argv(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line (``sys.argv[1:]`` when None)."""
    return build_parser().parse_args(argv)

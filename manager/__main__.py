"""``python -m bai.manager serve|bootstrap``.

Every flag also reads the environment variable BAI_MANAGER_<FLAG> (e.g. BAI_MANAGER_DB_URL);
a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from bai.manager.adapters.db import Database, bootstrap_admin, run_migrations
from bai.manager.config import DEFAULT_DB_URL, DEFAULT_LISTEN, ManagerConfig
from bai.manager.registry_worker import serve_registry_worker
from bai.manager.server import serve

__all__ = ["main"]

log = logging.getLogger("bai.manager")


def _env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get("BAI_MANAGER_" + flag.upper().replace("-", "_"), default)


def _add(parser: argparse.ArgumentParser, flag: str, help: str, default: str | None = None,
         **kw: object) -> None:
    value = _env(flag, default)
    parser.add_argument(f"--{flag}", default=value, help=f"{help} (env BAI_MANAGER_"
                        f"{flag.upper().replace('-', '_')}; default: {default})", **kw)  # type: ignore[arg-type]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bai.manager",
                                     description="bai manager (control plane)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run the manager gRPC server")
    _add(serve_cmd, "listen", "host:port to listen on", DEFAULT_LISTEN)
    _add(serve_cmd, "db-url", "async SQLAlchemy database URL", DEFAULT_DB_URL)
    _add(serve_cmd, "service-token", "internal service token (required)")
    _add(serve_cmd, "heartbeat-interval-ms", "agent heartbeat interval", "3000", type=int)
    _add(serve_cmd, "lost-timeout", "seconds of agent silence before LOST "
         "(default 3 intervals + 5 s)", None, type=float)
    _add(serve_cmd, "create-wait-cap", "seconds CreateSession waits without max_wait", "60",
         type=float)
    _add(serve_cmd, "appproxy", "host:port of the app proxy coordinator (apps are disabled "
         "without it)", "")
    _add(serve_cmd, "appproxy-frontend", "where HTTP apps are reached: 'port' (a port each) or "
         "'subdomain' (<circuit>.<apps domain> on one port); TCP apps always get a port", "port",
         choices=["port", "subdomain"])
    _add(serve_cmd, "storage", "host:port of the storage proxy (enables vfolders)", "")
    _add(serve_cmd, "redis-url", "Redis URL of the shared event bus (needed for several "
         "manager replicas; in-process without it)", "")
    _add(serve_cmd, "agent-listen", "host:port of a separate agent-registry process (started "
         "here) serving the agents' heartbeat streams on its own core; needs PostgreSQL and "
         "--redis-url; empty: this process serves them", "")
    _add(serve_cmd, "log-level", "logging level", "INFO")

    agents_cmd = commands.add_parser("serve-agents", help="run only the agent registry (heartbeat "
                                     "streams, LOST detection); `serve --agent-listen` starts it")
    _add(agents_cmd, "listen", "host:port to listen on", DEFAULT_LISTEN)
    _add(agents_cmd, "db-url", "async SQLAlchemy database URL (PostgreSQL)", DEFAULT_DB_URL)
    _add(agents_cmd, "service-token", "internal service token (required)")
    _add(agents_cmd, "heartbeat-interval-ms", "agent heartbeat interval", "3000", type=int)
    _add(agents_cmd, "lost-timeout", "seconds of agent silence before LOST "
         "(default 3 intervals + 5 s)", None, type=float)
    _add(agents_cmd, "redis-url", "Redis URL of the event bus shared with the manager", "")
    _add(agents_cmd, "log-level", "logging level", "INFO")

    boot = commands.add_parser("bootstrap", help="create the default domain, project and "
                               "superadmin admin@localhost with the given keypair (idempotent)")
    _add(boot, "db-url", "async SQLAlchemy database URL", DEFAULT_DB_URL)
    _add(boot, "access-key", "access key of the superadmin keypair (required)")
    _add(boot, "secret-key", "secret key of the superadmin keypair (required)")
    _add(boot, "password-file", "the superadmin's web-login password: read from this file, "
         "or generated and written there (mode 0600) when it does not exist; empty = none",
         ".bai/admin-password")
    _add(boot, "log-level", "logging level", "INFO")
    return parser


def _admin_password(path: str) -> str | None:
    """The password in ``path``, generating and saving one first when the file is missing."""
    if not path:
        return None
    file = Path(path)
    if file.exists():
        return file.read_text().strip() or None
    file.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    log.info("generated the superadmin's web-login password in %s", file)
    return password


async def _bootstrap(db_url: str, access_key: str, secret_key: str,
                     password: str | None) -> None:
    db = Database(db_url)
    try:
        await run_migrations(db)
        await bootstrap_admin(db, access_key, secret_key, password)
    finally:
        await db.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=str(args.log_level).upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "bootstrap":
        if not args.access_key or not args.secret_key:
            parser.error("bootstrap needs --access-key and --secret-key")
        asyncio.run(_bootstrap(args.db_url, args.access_key, args.secret_key,
                               _admin_password(args.password_file or "")))
        return 0
    if not args.service_token:
        parser.error("serve needs --service-token (or BAI_MANAGER_SERVICE_TOKEN)")
    if args.command == "serve-agents":
        return _serve_agents(args)
    config = ManagerConfig(
        service_token=args.service_token,
        listen=args.listen,
        db_url=args.db_url,
        heartbeat_interval_ms=int(args.heartbeat_interval_ms),
        lost_timeout=float(args.lost_timeout) if args.lost_timeout is not None else None,
        create_wait_cap=float(args.create_wait_cap),
        appproxy=args.appproxy or "",
        appproxy_frontend=str(args.appproxy_frontend),
        storage_addr=str(args.storage or ""),
        redis_url=str(args.redis_url or ""),
        agent_listen=str(args.agent_listen or ""),
    )
    try:
        asyncio.run(serve(config))
    except (OSError, ValueError) as exc:
        log.error("manager failed to start: %s", exc)
        return 1
    return 0


def _serve_agents(args: argparse.Namespace) -> int:
    config = ManagerConfig(
        service_token=args.service_token,
        listen=args.listen,
        db_url=args.db_url,
        heartbeat_interval_ms=int(args.heartbeat_interval_ms),
        lost_timeout=float(args.lost_timeout) if args.lost_timeout is not None else None,
        redis_url=str(args.redis_url or ""),
    )
    try:
        asyncio.run(serve_registry_worker(config))
    except (OSError, ValueError) as exc:
        log.error("agent registry failed to start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``bai``: the command line client of a bai cluster (talks gRPC to the manager).

Configuration comes from the environment: ``BAI_MANAGER_ADDR`` (default 127.0.0.1:8091),
``BACKEND_ACCESS_KEY`` and ``BACKEND_SECRET_KEY``. Failures print ``error: <message> (<REASON>)``
on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from bai.client import app_cmd, resource_group_cmd, vfolder_cmd
from bai.client import run as run_mod
from bai.client.client import ClientConfig, ManagerClient
from bai.client.output import Printer
from bai.common import errors
from bai.pb.manager.v1 import session_pb2 as session_pb
from bai.pb.manager.v1 import session_service_pb2 as sessions_pb

__all__ = ["build_parser", "main", "parse_args"]

Handler = Callable[[ManagerClient, argparse.Namespace, Printer], Awaitable[int]]

_FAILED = (session_pb.Session.STATE_ERROR, session_pb.Session.STATE_CANCELLED)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


# -- command handlers ------------------------------------------------------------------------


def _utc_time(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _session_create(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = sessions_pb.CreateSessionRequest(
        name=args.name or "",
        image=args.image,
        session_type=args.type,
        resources=dict(args.resources),
        environ=dict(args.environ),
        startup_command=args.startup_command or "",
        enqueue_only=args.enqueue_only,
        reuse_if_exists=args.reuse,
        tag=args.tag or "",
        resource_group=args.resource_group or "",
    )
    if args.max_wait:
        request.max_wait.FromNanoseconds(int(args.max_wait * 1e9))
    if args.batch_timeout:
        request.batch_timeout.FromNanoseconds(int(args.batch_timeout * 1e9))
    if args.priority is not None:
        request.priority = args.priority
    if args.starts_at is not None:
        request.starts_at_time.FromDatetime(args.starts_at)
    request.dependencies.extend(args.depends_on or ())
    response = await client.create_session(request)
    out.session_state(response.session, "created" if response.created else "reused")
    return 1 if response.session.status.state in _FAILED else 0


async def _session_list(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    states = [s for s in session_pb.Session.State.values() if s] if args.all else []
    out.sessions(await client.list_sessions(states))
    return 0


async def _session_info(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    out.session(await client.get_session(args.ref))
    return 0


async def _session_logs(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    async for data in client.logs(args.ref, follow=args.follow):
        if out.as_json:
            out.stream.write(f'{{"data": {_json_str(data)}}}\n')
        else:
            out.stream.write(data)
        out.stream.flush()
    return 0


def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


async def _session_destroy(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    out.session_state(await client.delete_session(args.ref, forced=args.forced), "destroyed")
    return 0


async def _run(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    options = run_mod.RunOptions(
        code=args.code,
        image=args.image,
        session=args.session,
        keep=args.keep,
        resources=dict(args.resources),
        environ=dict(args.environ),
    )
    live = run_mod.Output() if out.as_json else run_mod.Output(sys.stdout, sys.stderr)
    summary = await run_mod.run(client, options, live)
    if out.as_json:
        out.json(summary)
    exit_code: int = summary["exitCode"]
    return exit_code


async def _image_list(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    out.images(await client.list_images())
    return 0


# -- parser ----------------------------------------------------------------------------------


def _add_slots(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-r",
        "--resource",
        dest="resources",
        action="append",
        type=_key_value,
        default=[],
        metavar="SLOT=VALUE",
        help="requested slot per kernel, repeatable: cpu=1, mem=512m",
    )
    parser.add_argument(
        "-e",
        "--env",
        dest="environ",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="environment variable, repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``bai`` argument parser; each leaf command sets ``handler``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=argparse.SUPPRESS,
        help="output format: aligned tables (default) or JSON",
    )
    common.add_argument(
        "--manager",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help="manager address (default $BAI_MANAGER_ADDR or 127.0.0.1:8091)",
    )
    common.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help="deadline of ordinary calls (default 30)",
    )
    parser = argparse.ArgumentParser(
        prog="bai",
        description="Command line client of a bai cluster.",
        epilog="Environment: BAI_MANAGER_ADDR (default 127.0.0.1:8091), "
        "BACKEND_ACCESS_KEY, BACKEND_SECRET_KEY.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    session = commands.add_parser("session", help="manage compute sessions", parents=[common])
    session_cmds = session.add_subparsers(dest="session_command", metavar="ACTION", required=True)

    create = session_cmds.add_parser("create", help="create a session", parents=[common])
    create.add_argument("--name", "-n", help="session name (4-64 chars; generated if omitted)")
    create.add_argument("--image", "-i", default="python", help="image or alias (default python)")
    create.add_argument(
        "--type", "-t", default="interactive", choices=("interactive", "batch", "inference")
    )
    create.add_argument(
        "-c", "--startup-command", metavar="CMD", help="batch sessions: the command to run"
    )
    create.add_argument("--batch-timeout", type=float, metavar="SECONDS")
    create.add_argument(
        "--enqueue-only", action="store_true", help="return at once instead of waiting for RUNNING"
    )
    create.add_argument(
        "--max-wait", type=float, metavar="SECONDS", help="longest wait for RUNNING"
    )
    create.add_argument(
        "--reuse", action="store_true", help="return the live session of the same name if any"
    )
    create.add_argument("--tag")
    create.add_argument("--resource-group", metavar="NAME")
    create.add_argument("--priority", type=int, metavar="0-100",
                        help="scheduling priority (default 10; higher goes first)")
    create.add_argument("--starts-at", type=_utc_time, metavar="ISO-TIME",
                        help="do not start before this time (e.g. 2026-12-01T09:00:00Z)")
    create.add_argument("--depends-on", action="append", metavar="SESSION",
                        help="start only after this session finished successfully (repeatable)")
    _add_slots(create)
    create.set_defaults(handler=_session_create)

    listing = session_cmds.add_parser("list", help="list your sessions", parents=[common])
    listing.add_argument("--all", "-a", action="store_true", help="include finished sessions")
    listing.set_defaults(handler=_session_list)

    info = session_cmds.add_parser("info", help="show one session", parents=[common])
    info.add_argument("ref", metavar="REF", help="session id or name")
    info.set_defaults(handler=_session_info)

    logs = session_cmds.add_parser("logs", help="print a session's container log", parents=[common])
    logs.add_argument("ref", metavar="REF", help="session id or name")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new output")
    logs.set_defaults(handler=_session_logs)

    destroy = session_cmds.add_parser("destroy", help="terminate a session", parents=[common])
    destroy.add_argument("ref", metavar="REF", help="session id or name")
    destroy.add_argument("--forced", action="store_true", help="even if its agent does not answer")
    destroy.set_defaults(handler=_session_destroy)

    run = commands.add_parser(
        "run",
        help="run code in a session, streaming its output",
        description="Runs Python code (or a file's contents) in a session and streams its output; "
        "input() prompts are answered from the terminal. Exits with the code's exit status. "
        "A session this command created is destroyed afterwards unless --keep.",
        parents=[common],
    )
    run.add_argument("code", metavar="CODE|FILE", help="Python code, or a file to run")
    run.add_argument("--image", "-i", default="python", help="image or alias (default python)")
    run.add_argument("--session", "-s", metavar="NAME", help="session to create or reuse")
    run.add_argument("--keep", action="store_true", help="keep the session afterwards")
    _add_slots(run)
    run.set_defaults(handler=_run)

    app = commands.add_parser(
        "app",
        help="start an app in a session and print its URL (ssh: an ssh command)",
        parents=[common],
    )
    app.add_argument("ref", metavar="SESSION", help="session id or name")
    app.add_argument(
        "service", metavar="SERVICE",
        help="jupyter, ttyd (web terminal), ssh (or sshd), or an app the image declares",
    )
    app.set_defaults(handler=app_cmd.app_command)

    vfolder_cmd.add_vfolder_commands(commands, common)
    resource_group_cmd.add_resource_group_commands(commands, common)  # bai admin ...

    image = commands.add_parser("image", help="kernel images", parents=[common])
    image_cmds = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    image_list = image_cmds.add_parser("list", help="list known images", parents=[common])
    image_list.set_defaults(handler=_image_list)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses ``argv``; global options may come before or after the command."""
    args = build_parser().parse_args(argv)
    # Not set_defaults(): the parents share these Action objects, so a parser-level default
    # would become every subparser's default and override a value given before the command.
    for name, default in (("output", "table"), ("manager", None), ("timeout", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


async def _main(args: argparse.Namespace) -> int:
    printer = Printer(as_json=args.output == "json")
    config = ClientConfig.from_env(args.manager, args.timeout)
    async with ManagerClient(config) as client:
        handler: Handler = args.handler
        return await handler(client, args, printer)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bai`` console script; returns the exit status."""
    args = parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except errors.BaiError as exc:
        print(f"error: {exc.message} ({exc.reason})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

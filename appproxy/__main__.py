"""``python -m bai.appproxy serve|bootstrap|envoy``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

from bai.appproxy.config import bootstrap_from_args, config_from_args, parse_argv
from bai.appproxy.server import serve
from bai.appproxy.xds.bootstrap import render_bootstrap
from bai.appproxy.xds.envoy_process import find_envoy

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (``envoy`` replaces the process instead)."""
    args = parse_argv(argv)
    if args.command == "bootstrap":
        sys.stdout.write(render_bootstrap(bootstrap_from_args(args)))
        return 0
    if args.command == "envoy":
        fd, path = tempfile.mkstemp(prefix="bai-envoy-", suffix=".yaml")
        with os.fdopen(fd, "w") as out:
            out.write(render_bootstrap(bootstrap_from_args(args)))
        envoy = find_envoy()
        os.execv(envoy, [envoy, "-c", path, "--disable-hot-restart"])
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(config_from_args(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bai.storage serve ...``: the storage proxy process."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from bai.storage.config import config_from_args, parse_argv
from bai.storage.server import serve

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_argv(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        print(f"bai.storage: {exc}", file=sys.stderr)
        return 2
    # asyncio's own loop, not uvloop: its loop.sendfile() is zero-copy for downloads
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())

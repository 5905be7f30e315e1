"""Storage proxy configuration: flags with ``BAI_STORAGE_<FLAG>`` fallbacks, volumes from TOML.

The volumes file (``--volumes-config``)::

    transfer_secret = "..."                   # optional: HMAC key of transfer tokens
    transfer_url = "https://files.example"    # optional: public base URL of the transfer port

    [[volumes]]
    name = "local"
    backend = "fs"                            # fs | s3 | azure | gcs
    options = { path = "/srv/vfroot/local" }  # backend options (see bai.storage.backends.*)
    # fs also takes owner = "uid:gid" (default "1000:1000", the kernel user; see fs_owner)

Without a file, one ``fs`` volume ``local`` lives under ``.bai/vfroot/local``. Relative ``fs``
paths are taken from the working directory, like the other ``.bai/`` defaults. Flags win over
environment variables, which win over the file.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bai.storage.backends import BACKEND_TYPES

__all__ = [
    "DEFAULT_VOLUMES",
    "StorageConfig",
    "VolumeConfig",
    "build_parser",
    "config_from_args",
    "load_volumes_file",
    "parse_argv",
]

ENV_PREFIX = "BAI_STORAGE_"


@dataclass(frozen=True)
class VolumeConfig:
    """One volume."""

    name: str
    """Name the manager uses (``host`` = ``<proxy>:<name>``)."""
    backend: str
    """Backend type: fs, s3, azure or gcs."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Backend options."""


DEFAULT_VOLUMES = (VolumeConfig("local", "fs", {"path": ".bai/vfroot/local"}),)


@dataclass(frozen=True)
class StorageConfig:
    """Everything the storage proxy process needs; defaults are the documented ones."""

    service_token: str
    """Shared internal token required on every StorageService call."""
    listen: str = "127.0.0.1:6021"
    """host:port of the gRPC StorageService (port 0 picks a free one)."""
    transfer_listen: str = "127.0.0.1:6022"
    """host:port of the HTTP transfer endpoint (port 0 picks a free one)."""
    transfer_url: str = ""
    """Public base URL of the transfer endpoint put in tokens' URLs; default
    ``http://<transfer_listen>`` with the bound port."""
    transfer_secret: str = ""
    """HMAC key of transfer tokens; empty = random per process (tokens then die with it)."""
    volumes: tuple[VolumeConfig, ...] = DEFAULT_VOLUMES
    """Configured volumes, in order."""
    shutdown_grace_s: float = 5.0
    """Grace given to in-flight calls on shutdown."""


def load_volumes_file(path: Path) -> tuple[tuple[VolumeConfig, ...], dict[str, str]]:
    """The volumes and the top-level settings (``transfer_secret``, ``transfer_url``) of a
    TOML file; ``ValueError`` on anything malformed."""
    with path.open("rb") as f:
        data = tomllib.load(f)
    keys = ("transfer_secret", "transfer_url")
    settings: dict[str, str] = {k: str(data[k]) for k in keys if k in data}
    volumes = []
    for item in data.get("volumes", []):
        name, backend = item.get("name"), item.get("backend")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{path}: every volume needs a name")
        if backend not in BACKEND_TYPES:
            raise ValueError(f"{path}: volume {name!r}: backend must be one of {BACKEND_TYPES}")
        options = item.get("options", {})
        if not isinstance(options, dict):
            raise ValueError(f"{path}: volume {name!r}: options must be a table")
        volumes.append(VolumeConfig(name, backend, options))
    if not volumes:
        raise ValueError(f"{path}: no [[volumes]]")
    if len({v.name for v in volumes}) != len(volumes):
        raise ValueError(f"{path}: volume names must be unique")
    return tuple(volumes), settings


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """``bai.storage`` command line; every flag falls back to ``BAI_STORAGE_<FLAG>``."""
    env = os.environ if env is None else env

    def default(flag: str, fallback: str | None = None) -> str | None:
        return env.get(ENV_PREFIX + flag.upper().replace("-", "_"), fallback)

    parser = argparse.ArgumentParser(prog="python -m bai.storage", description="bai storage proxy")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the storage proxy")
    serve.add_argument("--listen", default=default("listen", StorageConfig.listen))
    token = default("service-token")
    serve.add_argument("--service-token", default=token, required=token is None)
    serve.add_argument("--volumes-config", type=Path, default=default("volumes-config"))
    serve.add_argument(
        "--transfer-listen", default=default("transfer-listen", StorageConfig.transfer_listen)
    )
    serve.add_argument("--transfer-url", default=default("transfer-url"))
    serve.add_argument("--transfer-secret", default=default("transfer-secret"))
    serve.add_argument("--log-level", default=default("log-level", "INFO"))
    return parser


def config_from_args(args: argparse.Namespace) -> StorageConfig:
    """The StorageConfig of parsed ``serve`` arguments (reads the volumes file)."""
    volumes: tuple[VolumeConfig, ...] = DEFAULT_VOLUMES
    settings: dict[str, str] = {}
    if args.volumes_config is not None:
        volumes, settings = load_volumes_file(Path(args.volumes_config))
    return StorageConfig(
        service_token=args.service_token,
        listen=args.listen,
        transfer_listen=args.transfer_listen,
        transfer_url=args.transfer_url or settings.get("transfer_url", ""),
        transfer_secret=args.transfer_secret or settings.get("transfer_secret", ""),
        volumes=volumes,
    )


def parse_argv(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line (``sys.argv[1:]`` when None)."""
    return build_parser().parse_args(argv)

"""Storage backends: one :class:`VolumeBackend` Protocol, implemented by ``fs`` (a local
directory), ``s3``, ``azure`` and ``gcs`` (object stores, through one shared file API).

:func:`build_backend` picks one by its config name; object-store client libraries are
imported only when a volume of that kind is configured.
"""

from __future__ import annotations

from typing import Any

from bai.storage.backends.base import (
    FileEntry,
    FileType,
    FolderUsage,
    LocalFileStream,
    Parts,
    ReadStream,
    SocketBody,
    SpliceWriter,
    UploadWriter,
    VolumeBackend,
    VolumeUsage,
    join_path,
    split_path,
)

__all__ = [
    "BACKEND_TYPES",
    "FileEntry",
    "FileType",
    "FolderUsage",
    "LocalFileStream",
    "Parts",
    "ReadStream",
    "SocketBody",
    "SpliceWriter",
    "UploadWriter",
    "VolumeBackend",
    "VolumeUsage",
    "build_backend",
    "join_path",
    "split_path",
]

BACKEND_TYPES = ("fs", "s3", "azure", "gcs")
"""Backend names accepted in the volumes config."""


def build_backend(backend: str, options: dict[str, Any]) -> VolumeBackend:
    """A backend of type ``backend`` configured by ``options`` (not started yet).

    Raises ``ValueError`` for an unknown type or missing options.
    """
    if backend == "fs":
        from bai.storage.backends.fs import FsVolume

        return FsVolume.from_options(options)
    if backend == "s3":
        from bai.storage.backends.s3 import s3_volume

        return s3_volume(options)
    if backend == "azure":
        from bai.storage.backends.azure import azure_volume

        return azure_volume(options)
    if backend == "gcs":
        from bai.storage.backends.gcs import gcs_volume

        return gcs_volume(options)
    raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKEND_TYPES)})")

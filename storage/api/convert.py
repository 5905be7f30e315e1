"""Conversions from the storage proxy's domain types to ``bai.storage.v1`` protos."""

from __future__ import annotations

from datetime import datetime

from bai.pb.storage.v1 import storage_pb2
from bai.storage.backends import FileEntry, FileType
from bai.storage.domain import FolderView, VolumeView
from google.protobuf import timestamp_pb2

__all__ = ["file_to_proto", "folder_to_proto", "timestamp_to_proto", "volume_to_proto"]

_TYPES = {
    FileType.FILE: storage_pb2.File.TYPE_FILE,
    FileType.DIRECTORY: storage_pb2.File.TYPE_DIRECTORY,
    FileType.SYMLINK: storage_pb2.File.TYPE_SYMLINK,
}


def timestamp_to_proto(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def file_to_proto(entry: FileEntry) -> storage_pb2.File:
    return storage_pb2.File(
        name=entry.name,
        path=entry.path,
        type=_TYPES[entry.type],
        size_bytes=entry.size,
        modify_time=timestamp_to_proto(entry.mtime),
        mode=entry.mode,
    )


def folder_to_proto(view: FolderView) -> storage_pb2.Folder:
    return storage_pb2.Folder(
        volume=view.volume,
        folder_id=str(view.folder),
        mount_path=view.mount_path or "",
        quota_bytes=view.quota_bytes,
    )


def volume_to_proto(view: VolumeView) -> storage_pb2.Volume:
    return storage_pb2.Volume(
        name=view.name,
        backend=view.backend,
        capabilities=sorted(view.capabilities),
        mountable=view.mountable,
        usage=storage_pb2.VolumeUsage(
            capacity_bytes=view.usage.capacity_bytes, used_bytes=view.usage.used_bytes
        ),
    )

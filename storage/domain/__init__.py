"""The storage proxy's use cases, independent of gRPC and HTTP."""

from bai.storage.domain.service import (
    FolderView,
    StorageService,
    UploadResult,
    VolumeView,
    parse_folder_id,
)
from bai.storage.domain.tokens import TransferClaims, TransferTokens

__all__ = [
    "FolderView",
    "StorageService",
    "TransferClaims",
    "TransferTokens",
    "UploadResult",
    "VolumeView",
    "parse_folder_id",
]

"""Transports of the storage proxy: the manager-facing gRPC servicer and the client-facing HTTP
transfer endpoint. Both call :class:`bai.storage.domain.StorageService` only."""

from bai.storage.api.servicer import StorageServicer
from bai.storage.api.transfer import transfer_app

__all__ = ["StorageServicer", "transfer_app"]

"""The bai Python client: an asyncio gRPC client of the manager and the ``bai`` CLI."""

from bai.client.auth import SigningInterceptor, StreamSigningInterceptor, signing_interceptors
from bai.client.client import ClientConfig, ManagerClient

__all__ = [
    "ClientConfig",
    "ManagerClient",
    "SigningInterceptor",
    "StreamSigningInterceptor",
    "signing_interceptors",
]

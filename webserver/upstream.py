"""The webserver's side of the gateway: its URL, and requests signed with a user's keypair.

Signing is exactly the official client's (wire doc §3, :mod:`bai.common.auth`): the gateway
verifies nothing itself and forwards the signature to the manager, which holds the keys. What is
signed is the request as the gateway will see it: the gateway's own path (base path + the part
after ``/func``), its ``Host`` authority, the content type cut at ``;`` (octet-stream when the
request has none, as for WebSocket and SSE requests), and the API version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bai.common import auth
from yarl import URL

__all__ = ["HOP_BY_HOP", "GatewayTarget", "signed_headers"]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade",
})
"""Headers that describe one connection, never forwarded (RFC 9110 §7.6.1)."""


@dataclass(frozen=True, slots=True)
class GatewayTarget:
    """The gateway's base URL, split the way requests to it need."""

    base: URL
    """``scheme://host[:port][/prefix]`` without a trailing slash."""

    @classmethod
    def parse(cls, url: str) -> GatewayTarget:
        base = URL(url.rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"the gateway URL must be http(s)://host[:port][/path], got {url!r}")
        return cls(base)

    @property
    def host(self) -> str:
        """What the ``Host`` header will say: the port only when it is not the default one
        (aiohttp and websockets both write it so; the signature must match)."""
        assert self.base.host is not None
        host = self.base.raw_host or self.base.host
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return host if self.base.is_default_port() else f"{host}:{self.base.port}"

    def rel_url(self, tail: str) -> str:
        """The gateway's path for ``tail`` (``/session?x=1``: raw, already percent-encoded)."""
        return self.base.raw_path.rstrip("/") + tail

    def url(self, tail: str, *, websocket: bool = False) -> URL:
        scheme = self.base.scheme
        if websocket:
            scheme = "wss" if scheme == "https" else "ws"
        return URL(f"{scheme}://{self.host}{self.rel_url(tail)}", encoded=True)


def signed_headers(target: GatewayTarget, *, method: str, tail: str, content_type: str | None,
                   api_version: str, access_key: str, secret_key: str) -> Mapping[str, str]:
    """Date, X-BackendAI-Version and Authorization for one request to ``target``."""
    date = auth.now_date()
    signed = auth.SignedRequest(
        method=method.upper(), rel_url=target.rel_url(tail), date=date, host=target.host,
        content_type=auth.normalize_content_type(content_type), api_version=api_version)
    return {
        "Date": date,
        "X-BackendAI-Version": api_version,
        "Authorization": auth.authorization_header(access_key, auth.sign(signed, secret_key)),
    }

"""Failures as Backend.AI's JSON error shape (wire doc §5): ``{type, title, msg}``.

The official CLI prints ``title`` and dies on a JSON error without it, so every error the
webserver itself produces has this shape (errors from the gateway are relayed untouched).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["PROBLEM_BASE", "bad_gateway", "problem", "unauthenticated"]

PROBLEM_BASE = "https://api.backend.ai/probs/"


def problem(status: int, slug: str, title: str, msg: str, *, reason: str = "",
            **data: Any) -> web.Response:
    """A problem+json response; ``reason`` is the UPPER_SNAKE machine-readable cause."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "msg": msg,
                            "data": data}
    if reason:
        body["reason"] = reason
    return web.json_response(body, status=status, content_type="application/problem+json")


def unauthenticated(msg: str) -> web.Response:
    """401: no live web session behind the request."""
    return problem(401, "auth-failed", "Credential/permission check failed.", msg,
                   reason="LOGIN_REQUIRED")


def bad_gateway(msg: str) -> web.Response:
    """502: the gateway could not be reached or broke the exchange."""
    return problem(502, "bad-gateway", "The API gateway is unreachable.", msg,
                   reason="GATEWAY_UNAVAILABLE")


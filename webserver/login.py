"""``/server/*``: password login, login check, logout and session extension.

``POST /server/login`` takes ``{"username", "password"}`` as plain JSON or as the
``X-BackendAI-Encoded`` body the official client sends over http (:mod:`.crypto`), calls the
gateway's anonymous ``POST /auth/authorize`` (the manager checks the password and counts
failures: after 5 in a row the user is locked out for 5 minutes, in the database, so every
replica agrees; the webserver keeps no failure counter of its own) and, on success, stores the
keypair in a server-side session behind an httponly ``AIOHTTP_SESSION`` cookie.

Answers follow Backend.AI's webserver: ``{"authenticated": true, "data": {...}}`` on success; a
refused login is a 200 with ``{"authenticated": false, "data": {"type", "title", "details"}}``
(the official CLI prints ``data.details``), carrying the manager's precise message (e.g. the
lockout and how long it lasts). The secret key never leaves the server. A login always starts a
fresh session id (and drops the old one), so a planted cookie cannot be promoted (session
fixation). OTP is not supported (the manager has no TOTP yet); an ``otp`` field is ignored.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from aiohttp import web
from bai.webserver.context import CONTEXT, clear_cookie, current_session, set_cookie
from bai.webserver.crypto import EncodedBodyError, decrypt_json
from bai.webserver.problems import bad_gateway, problem, unauthenticated
from bai.webserver.sessions import WebSession, new_session_id

__all__ = ["routes"]

log = logging.getLogger(__name__)

_USER_FIELDS = ("user_id", "email", "full_name", "status")


class _BadLogin(Exception):
    """A malformed login request (not a wrong password)."""


def _endpoints(request: web.Request) -> list[str]:
    """Candidate ``BACKEND_ENDPOINT`` values of the client, for the encoded body's key."""
    configured = request.app[CONTEXT].config.public_endpoint
    base = configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"
    return [base, base + "/"]


async def _credentials(request: web.Request) -> tuple[str, str]:
    raw = await request.read()
    if request.headers.get("X-BackendAI-Encoded", "").lower() == "true":
        try:
            body: Any = decrypt_json(raw, _endpoints(request))
        except EncodedBodyError as exc:
            raise _BadLogin(str(exc)) from exc
    else:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _BadLogin("the login body must be JSON") from exc
    if not isinstance(body, dict):
        raise _BadLogin("the login body must be a JSON object")
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not username.strip():
        raise _BadLogin("You must provide the username field.")
    if not isinstance(password, str) or not password:
        raise _BadLogin("You must provide the password field.")
    return username.strip(), password


async def _authorize(request: web.Request, username: str, password: str
                     ) -> tuple[int, dict[str, Any]]:
    """``POST /auth/authorize`` on the gateway: (status, JSON body)."""
    ctx = request.app[CONTEXT]
    body = {"type": "keypair", "domain": ctx.config.login_domain, "username": username,
            "password": password}
    timeout = aiohttp.ClientTimeout(total=ctx.config.login_timeout,
                                    sock_connect=ctx.config.connect_timeout)
    async with ctx.http.post(ctx.target.url("/auth/authorize"), json=body,
                             timeout=timeout) as reply:
        try:
            answer = await reply.json(content_type=None)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise aiohttp.ClientPayloadError(f"the gateway answered {reply.status} without JSON")
        return reply.status, answer


def _refused(answer: dict[str, Any]) -> web.Response:
    data = {"type": answer.get("type", ""), "title": answer.get("title", "Login failed."),
            "details": answer.get("msg") or answer.get("title") or "login refused",
            "reason": answer.get("reason", "")}
    return web.json_response({"authenticated": False, "data": data})


async def login(request: web.Request) -> web.Response:
    try:
        username, password = await _credentials(request)
    except _BadLogin as exc:
        return problem(400, "invalid-api-params", "Missing or invalid API parameters.",
                       str(exc), reason="INVALID_LOGIN_REQUEST")
    try:
        status, answer = await _authorize(request, username, password)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("login of %s: the gateway failed: %s", username, exc)
        return bad_gateway(f"password login could not reach the gateway: {exc}")
    if status >= 500:
        return web.json_response(answer, status=status)
    if status != 200:
        log.info("login of %s refused: %s", username, answer.get("reason") or answer.get("msg"))
        return _refused(answer)
    data = answer.get("data")
    if not isinstance(data, dict) or not data.get("access_key") or not data.get("secret_key"):
        log.warning("login of %s: the gateway's answer has no keypair", username)
        return bad_gateway("the gateway's login answer carries no keypair")
    session = WebSession(access_key=str(data["access_key"]), secret_key=str(data["secret_key"]),
                         role=str(data.get("role", "")),
                         user={k: str(data[k]) for k in _USER_FIELDS if data.get(k) is not None})
    ctx = request.app[CONTEXT]
    previous = await current_session(request)
    if previous is not None:
        await ctx.store.delete(previous[0])
    session_id = new_session_id()
    stored = await ctx.store.put(session_id, session, ctx.config.session_max_age)
    log.info("login of %s (%s): web session opened", username, session.access_key)
    response = web.json_response({"authenticated": True, "data": stored.public()})
    set_cookie(request, response, session_id, ctx.config.session_max_age)
    return response


async def login_check(request: web.Request) -> web.Response:
    found = await current_session(request)
    data = None if found is None else found[1].public()
    return web.json_response({"authenticated": found is not None, "data": data})


async def logout(request: web.Request) -> web.Response:
    """Ends the web session; without one it still succeeds (logging out twice is harmless)."""
    found = await current_session(request)
    if found is not None:
        await request.app[CONTEXT].store.delete(found[0])
        log.info("logout of %s: web session closed", found[1].access_key)
    response = web.json_response({"authenticated": False})
    clear_cookie(response)
    return response


async def extend_login_session(request: web.Request) -> web.Response:
    """Pushes the session's expiry a full ``session_max_age`` from now (and the cookie's)."""
    found = await current_session(request)
    ctx = request.app[CONTEXT]
    extended = None if found is None else await ctx.store.extend(found[0],
                                                                 ctx.config.session_max_age)
    if found is None or extended is None:
        return unauthenticated("no live web session to extend; log in again")
    response = web.json_response({"authenticated": True, "data": extended.public()})
    set_cookie(request, response, found[0], ctx.config.session_max_age)
    return response


routes = [
    web.post("/server/login", login),
    web.get("/server/login-check", login_check),
    web.post("/server/login-check", login_check),
    web.post("/server/logout", logout),
    web.post("/server/extend-login-session", extend_login_session),
]

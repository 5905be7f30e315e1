"""Login, login check, session extension and logout through the real webserver, gateway and
manager (SQLite and PostgreSQL), and ``/func`` requests re-signed with the session's keypair.
"""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie

import httpx
from bai.common.auth import API_VERSION
from bai.webserver import SESSION_COOKIE
from e2e_util import body
from webserver_stack import ADMIN_EMAIL, WebStack, start_web_stack

WHOAMI = {"query": "query { keypair { access_key } }"}


def _cookie(response: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar


def _is_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    problem = response.json()
    assert {"type", "title", "msg"} <= set(problem), problem
    assert str(problem["type"]).startswith("https://api.backend.ai/probs/")
    return dict(problem)


async def _login(c: httpx.AsyncClient, stack: WebStack, password: str) -> httpx.Response:
    return await c.post("/server/login", json={"username": ADMIN_EMAIL, "password": password})


async def test_login_proxy_extend_and_logout(db_url: str) -> None:
    async with start_web_stack(db_url) as stack, \
            httpx.AsyncClient(base_url=stack.web, timeout=60) as c:
        # The version probe is anonymous; everything else needs a session.
        probe = await c.get("/func/")
        assert probe.status_code == 200 and probe.json()["version"] == API_VERSION
        assert _is_problem(await c.post("/func/admin/gql", json=WHOAMI), 401)["reason"] == \
            "LOGIN_REQUIRED"
        forged = {"Cookie": f"{SESSION_COOKIE}={'x' * 43}"}
        _is_problem(await c.post("/func/admin/gql", json=WHOAMI, headers=forged), 401)
        check = await c.get("/server/login-check")
        assert check.json() == {"authenticated": False, "data": None}

        wrong = await _login(c, stack, "not-the-password")
        assert wrong.status_code == 200, wrong.text
        assert wrong.json()["authenticated"] is False
        assert wrong.json()["data"]["details"] == "invalid username or password"
        assert "set-cookie" not in wrong.headers

        ok = await _login(c, stack, stack.password)
        assert ok.status_code == 200 and ok.json()["authenticated"] is True, ok.text
        data = ok.json()["data"]
        assert data["access_key"] == stack.admin.access_key and data["role"] == "superadmin"
        assert stack.admin.secret_key not in ok.text  # the secret never reaches the browser
        morsel = _cookie(ok)[SESSION_COOKIE]
        assert morsel["httponly"] and int(morsel["max-age"]) == 3600 and morsel["path"] == "/"
        # An explicit Cookie header wins over httpx's jar, so each request says which it sends.
        cookie = {"Cookie": f"{SESSION_COOKIE}={morsel.value}"}

        check = await c.get("/server/login-check", headers=cookie)
        assert check.json()["authenticated"] is True
        assert check.json()["data"]["email"] == ADMIN_EMAIL

        # Re-signed with the session's keypair: the manager sees the superadmin.
        me = await c.post("/func/admin/gql", json=WHOAMI, headers=cookie)
        assert me.status_code == 200, me.text
        assert me.json()["data"]["keypair"]["access_key"] == stack.admin.access_key
        name = "web-" + uuid.uuid4().hex[:8]
        created = await c.post("/func/session", json=body(name), headers=cookie)
        assert created.status_code in (200, 201), created.text
        got = await c.get(f"/func/session/{name}", headers=cookie)
        assert got.status_code == 200 and got.json()["status"] == "RUNNING", got.text
        # The gateway's errors come back untouched.
        missing = await c.get("/func/session/no-such-session", headers=cookie)
        assert str(_is_problem(missing, 404)["type"]).endswith("/session-not-found")

        extended = await c.post("/server/extend-login-session", headers=cookie)
        assert extended.status_code == 200 and extended.json()["authenticated"] is True
        assert _cookie(extended)[SESSION_COOKIE].value == morsel.value
        assert extended.json()["data"]["expires_at"] >= data["expires_at"]

        # A new login replaces the session it came with (no fixation): the old id is dead.
        relogin = await c.post("/server/login", headers=cookie,
                               json={"username": ADMIN_EMAIL, "password": stack.password})
        renewed = _cookie(relogin)[SESSION_COOKIE].value
        assert renewed != morsel.value
        _is_problem(await c.post("/func/admin/gql", json=WHOAMI, headers=cookie), 401)
        cookie = {"Cookie": f"{SESSION_COOKIE}={renewed}"}

        out = await c.post("/server/logout", headers=cookie)
        assert out.status_code == 200 and out.json() == {"authenticated": False}
        assert _cookie(out)[SESSION_COOKIE].value == ""
        assert (await c.get("/server/login-check", headers=cookie)).json()["authenticated"] \
            is False
        _is_problem(await c.post("/func/admin/gql", json=WHOAMI, headers=cookie), 401)
        _is_problem(await c.post("/server/extend-login-session", headers=cookie), 401)
        again = await c.post("/server/logout", headers=cookie)  # logging out twice is harmless
        assert again.status_code == 200


async def test_lockout_reaches_the_client_as_a_precise_message(db_url: str) -> None:
    async with start_web_stack(db_url) as stack, \
            httpx.AsyncClient(base_url=stack.web, timeout=60) as c:
        for _ in range(5):
            refused = await _login(c, stack, "wrong-password")
            assert refused.json()["authenticated"] is False
        locked = await _login(c, stack, stack.password)
        assert locked.status_code == 200, locked.text
        result = locked.json()
        assert result["authenticated"] is False and "set-cookie" not in locked.headers
        assert result["data"]["reason"] == "LOGIN_LOCKED"
        assert result["data"]["details"].startswith("too many failed logins; try again in ")

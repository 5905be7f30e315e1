"""HTTP, websocket and TCP traffic through Envoy, admitted by the coordinator's ext_authz."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from appproxy_support import SUBDOMAIN, TCP, Stack, wait_for
from websockets.asyncio.client import connect as ws_connect


def _port_url(stack: Stack, port: int, path: str = "/") -> str:
    return f"http://127.0.0.1:{port}{path}"


async def test_http_through_port_frontend_with_token_then_cookie(stack: Stack) -> None:
    sock = await stack.http_app("alpha")
    circuit = await stack.create(sock)
    assert circuit.url == f"http://127.0.0.1:{circuit.frontend_port}/?token={circuit.token}"
    async with httpx.AsyncClient(timeout=5) as client:
        first = await client.get(circuit.url)
        assert first.status_code == 200, first.text
        assert first.text == "hello from alpha"
        assert f"bai_app_{circuit.id}" in first.headers["set-cookie"]
        assert "HttpOnly" in first.headers["set-cookie"]
        # The jar now holds the permit cookie: no token needed any more, on any path.
        echo = await client.get(_port_url(stack, circuit.frontend_port, "/echo?x=1"))
        assert echo.status_code == 200
        assert echo.json()["query"] == "x=1"
    async with httpx.AsyncClient(timeout=5) as client:
        # The token never reaches the app.
        echo = await client.get(
            _port_url(stack, circuit.frontend_port, f"/echo?a=b&token={circuit.token}")
        )
        assert echo.status_code == 200
        assert echo.json()["query"] == "a=b"


async def test_http_through_subdomain_frontend(stack: Stack) -> None:
    sock = await stack.http_app("beta")
    circuit = await stack.create(sock, mode=SUBDOMAIN)
    host = f"{circuit.id}.apps.localhost"
    assert circuit.frontend_hostname == host
    assert circuit.frontend_port == stack.frontends.subdomain_port
    base = f"http://127.0.0.1:{circuit.frontend_port}"
    async with httpx.AsyncClient(timeout=5) as client:
        ok = await client.get(f"{base}/?token={circuit.token}", headers={"host": host})
        assert ok.status_code == 200 and ok.text == "hello from beta"
        cookie = ok.headers["set-cookie"].split(";")[0]
        again = await client.get(
            f"{base}/", headers={"host": f"{host}:{circuit.frontend_port}", "cookie": cookie}
        )
        assert again.status_code == 200
        unknown = await client.get(f"{base}/", headers={"host": "nope.apps.localhost"})
        assert unknown.status_code == 404


async def test_refusals(stack: Stack) -> None:
    one = await stack.create(await stack.http_app("one"), app="one")
    two = await stack.create(await stack.http_app("two"), app="two")
    url = _port_url(stack, one.frontend_port)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, params={"token": two.token})).status_code == 403
        assert (await client.get(url, params={"token": "garbage"})).status_code == 403
        assert (
            await client.get(url, headers={"cookie": f"bai_app_{one.id}=forged"})
        ).status_code == 403
        # two's permit cookie does not open one.
        admitted = await client.get(
            _port_url(stack, two.frontend_port), params={"token": two.token}
        )
        assert admitted.status_code == 200
        assert (await client.get(url)).status_code == 401
        assert (await client.get(_port_url(stack, two.frontend_port))).status_code == 200


async def test_websocket_echo_through_proxy(stack: Stack) -> None:
    circuit = await stack.create(await stack.http_app("ws"))
    uri = f"ws://127.0.0.1:{circuit.frontend_port}/ws?token={circuit.token}"
    async with ws_connect(uri) as ws:
        for i in range(3):
            await ws.send(f"ping{i}")
            assert await ws.recv() == f"ws:ping{i}"
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == b"\x00\x01binary"
    with pytest.raises(Exception, match="401"):
        async with ws_connect(f"ws://127.0.0.1:{circuit.frontend_port}/ws"):
            pass


async def test_tcp_circuit_echoes(stack: Stack) -> None:
    circuit = await stack.create(await stack.tcp_app("echo"), app="sshd", protocol=TCP)
    assert circuit.url == f"tcp://127.0.0.1:{circuit.frontend_port}"
    assert circuit.token == ""
    reader, writer = await asyncio.open_connection("127.0.0.1", circuit.frontend_port)
    try:
        for line in (b"hello\n", b"world\n"):
            writer.write(line)
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 5) == b"echo:" + line
    finally:
        writer.close()


async def test_delete_removes_the_route(stack: Stack) -> None:
    port_circuit = await stack.create(await stack.http_app("gone"), app="gone")
    sub_circuit = await stack.create(await stack.http_app("gone2"), app="gone2", mode=SUBDOMAIN)
    host = f"{sub_circuit.id}.apps.localhost"
    sub_url = f"http://127.0.0.1:{sub_circuit.frontend_port}/?token={sub_circuit.token}"
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(port_circuit.url)).status_code == 200
        assert (await client.get(sub_url, headers={"host": host})).status_code == 200
    await stack.delete(port_circuit.id)
    await stack.delete(sub_circuit.id)

    async def refused() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as fresh:
                await fresh.get(port_circuit.url)
        except httpx.TransportError:
            return True
        return False

    await wait_for(refused, 5, "the deleted circuit's port to close")
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(sub_url, headers={"host": host})).status_code == 404
    assert await stack.stat("listener_manager.lds.update_rejected") == 0


async def test_dead_upstream_is_ejected_and_readmitted(stack: Stack) -> None:
    sock = await stack.http_app("flaky")
    circuit = await stack.create(sock)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(circuit.url)).status_code == 200
        runner = stack.apps.pop()
        await runner.cleanup()
        cluster = f"circuit_{circuit.id}"

        async def flagged() -> bool:
            text = (await stack.admin("/clusters")).text
            return f"{cluster}::{sock}::health_flags::/failed_active_hc" in text

        await wait_for(flagged, 5, "the health checker to eject the dead app")
        dead = await client.get(circuit.url)
        assert dead.status_code == 503
        assert "no healthy upstream" in dead.text
        await stack.http_app("flaky")

        async def back() -> bool:
            return (await client.get(circuit.url)).status_code == 200

        await wait_for(back, 5, "the revived app to be admitted again")


async def test_cookie_checked_by_ext_authz_without_fast_path() -> None:
    stack = await Stack(fast_path=False).start()
    try:
        circuit = await stack.create(await stack.http_app("slow"))
        plain = _port_url(stack, circuit.frontend_port)
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(circuit.url)).status_code == 200
            assert (await client.get(plain)).status_code == 200  # the cookie, checked by ext_authz
            client.cookies.set(f"bai_app_{circuit.id}", "forged")
            assert (await client.get(plain)).status_code == 403
    finally:
        await stack.close()


async def test_subdomains_of_a_configured_apps_domain_share_one_listener() -> None:
    """Two apps behind the one subdomain listener, told apart by Host alone; websockets too."""
    stack = await Stack(apps_domain="lab.example.test").start()
    try:
        one = await stack.create(await stack.http_app("one"), app="one", mode=SUBDOMAIN)
        two = await stack.create(await stack.http_app("two"), app="two", mode=SUBDOMAIN)
        assert one.frontend_port == two.frontend_port == stack.frontends.subdomain_port
        assert one.url == (
            f"http://{one.id}.lab.example.test:{one.frontend_port}/?token={one.token}"
        )
        base = f"http://127.0.0.1:{one.frontend_port}"
        async with httpx.AsyncClient(timeout=5) as client:
            for circuit, text in ((one, "hello from one"), (two, "hello from two")):
                host = {"host": f"{circuit.id}.lab.example.test"}
                reply = await client.get(f"{base}/?token={circuit.token}", headers=host)
                assert reply.status_code == 200 and reply.text == text
        async with httpx.AsyncClient(timeout=5) as client:  # no permit cookies in this jar
            # one circuit's token does not open another's subdomain
            wrong = await client.get(
                f"{base}/?token={one.token}", headers={"host": f"{two.id}.lab.example.test"}
            )
            assert wrong.status_code == 403
            # the default domain is not served any more
            old = await client.get(f"{base}/", headers={"host": f"{one.id}.apps.localhost"})
            assert old.status_code == 404
        listeners = (await stack.admin("/listeners")).text.split()
        assert [n for n in listeners if "::" in n] == [
            f"bai_subdomain::127.0.0.1:{stack.frontends.subdomain_port}"
        ]
        # The URL names the subdomain (the Host header); the TCP connection goes to 127.0.0.1.
        ws_url = f"ws://{two.id}.lab.example.test:{two.frontend_port}/ws?token={two.token}"
        async with ws_connect(ws_url, host="127.0.0.1", port=two.frontend_port) as ws:
            await ws.send("sub")
            assert await ws.recv() == "two:sub"
    finally:
        await stack.close()

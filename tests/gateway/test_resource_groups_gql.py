"""Scaling-group GraphQL (Backend.AI's queries and mutations) through the real gateway to a real
manager, on SQLite and PostgreSQL.

The query and mutation texts are the official client's (``ai.backend.client.func.scaling_group``,
26.9.6), including its String-typed ``user_group`` in the disassociate mutation.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bai.manager.server import run_manager
from cluster import SignedAuth
from e2e_util import OFFICIAL_CLIENT
from gateway_stack import serve_gateway
from manager_harness import Keys, manager_config, prepare_db

FIELDS = ("name description is_active is_public created_at driver driver_opts scheduler "
          "scheduler_opts use_host_network wsproxy_addr wsproxy_api_token")
LIST = "query($is_active: Boolean) { scaling_groups(is_active: $is_active) { FIELDS } }".replace(
    "FIELDS", FIELDS)
DETAIL = "query($name: String) { scaling_group(name: $name) { FIELDS } }".replace(
    "FIELDS", FIELDS)
CREATE = """mutation($name: String!, $input: CreateScalingGroupInput!) {
    create_scaling_group(name: $name, props: $input) { ok msg scaling_group { name } }
}"""
MODIFY = """mutation($name: String!, $input: ModifyScalingGroupInput!) {
    modify_scaling_group(name: $name, props: $input) { ok msg }
}"""
DELETE = "mutation($name: String!) { delete_scaling_group(name: $name) { ok msg } }"
ASSOC_DOMAIN = """mutation($scaling_group: String!, $domain: String!) {
    associate_scaling_group_with_domain(scaling_group: $scaling_group, domain: $domain) { ok msg }
}"""
DISSOC_DOMAIN = """mutation($scaling_group: String!, $domain: String!) {
    disassociate_scaling_group_with_domain(scaling_group: $scaling_group, domain: $domain) {
        ok msg }
}"""
ASSOC_GROUP = """mutation($scaling_group: String!, $user_group: UUID!) {
    associate_scaling_group_with_user_group(
        scaling_group: $scaling_group, user_group: $user_group) { ok msg }
}"""
DISSOC_GROUP = """mutation($scaling_group: String!, $user_group: String!) {
    disassociate_scaling_group_with_user_group(
        scaling_group: $scaling_group, user_group: $user_group) { ok msg }
}"""
DISSOC_ALL_DOMAIN = """mutation($domain: String!) {
    disassociate_all_scaling_groups_with_domain(domain: $domain) { ok msg }
}"""
EXTRA = """query($name: String) { scaling_group(name: $name) {
    agent_selector allowed_domains allowed_projects agent_count pending_session_count } }"""
GROUPS = "query { groups(domain_name: \"default\") { id name } }"
FOR_GROUP = """query($user_group: String!) {
    scaling_groups_for_user_group(user_group: $user_group) { name } }"""


@dataclass
class Gateway:
    base: str
    admin: Keys
    user: Keys

    async def gql(self, keys: Keys, query: str, **variables: Any) -> dict[str, Any]:
        auth = SignedAuth(keys.access_key, keys.secret_key)
        async with httpx.AsyncClient(base_url=self.base, auth=auth, timeout=30) as c:
            r = await c.post("/admin/gql", json={"query": query, "variables": variables})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@asynccontextmanager
async def _gateway(db_url: str) -> AsyncIterator[Gateway]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    async with run_manager(manager_config(db_url, token)) as running:
        async with serve_gateway(running.address, token) as addr:
            yield Gateway(base=f"http://{addr}", admin=admin, user=user)


@pytest.fixture
async def gw(db_url: str) -> AsyncIterator[Gateway]:
    async with _gateway(db_url) as gateway:
        yield gateway


@pytest.fixture
async def gw_sqlite(tmp_path: Path) -> AsyncIterator[Gateway]:
    """SQLite only: for the official client, whose runs take seconds each; both databases
    are covered by the tests above through the same GraphQL."""
    async with _gateway(f"sqlite+aiosqlite:///{tmp_path / 'manager.db'}") as gateway:
        yield gateway


def ok(body: dict[str, Any], field: str) -> dict[str, Any]:
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][field]
    assert payload["ok"] is True, payload
    return payload


def client_create_input(**kw: Any) -> dict[str, Any]:
    """What ``backend.ai admin scaling-group add`` sends by default."""
    values: dict[str, Any] = {"description": "", "is_active": True, "is_public": True,
                              "driver": "static", "scheduler": "fifo",
                              "use_host_network": False, "wsproxy_addr": None,
                              "wsproxy_api_token": None, "driver_opts": "{}",
                              "scheduler_opts": "{}"}
    values.update(kw)
    return values


async def test_scaling_group_lifecycle_as_the_official_client_drives_it(gw: Gateway) -> None:
    made = ok(await gw.gql(gw.admin, CREATE, name="gpu", input=client_create_input(
        description="A100 nodes", scheduler="fair-share",
        scheduler_opts=json.dumps({"agent_selection_strategy": "concentrated",
                                   "window_seconds": 3600}))), "create_scaling_group")
    assert made["scaling_group"] == {"name": "gpu"}

    listed = await gw.gql(gw.admin, LIST, is_active=None)
    assert "errors" not in listed, listed
    rows = {g["name"]: g for g in listed["data"]["scaling_groups"]}
    assert sorted(rows) == ["default", "gpu"]
    gpu = rows["gpu"]
    assert list(gpu) == FIELDS.split()  # exactly the selection, in order
    assert (gpu["description"], gpu["is_active"], gpu["is_public"], gpu["driver"],
            gpu["scheduler"], gpu["use_host_network"], gpu["wsproxy_addr"]) == (
        "A100 nodes", True, True, "static", "fair-share", False, None)
    assert json.loads(gpu["scheduler_opts"]) == {"window_seconds": 3600}
    assert json.loads(gpu["driver_opts"]) == {} and gpu["created_at"]

    ok(await gw.gql(gw.admin, MODIFY, name="gpu", input={
        "description": "H100 nodes", "is_active": False,
        "scheduler_opts": json.dumps({"agent_selection_strategy": "roundrobin"})}),
        "modify_scaling_group")
    detail = (await gw.gql(gw.admin, DETAIL, name="gpu"))["data"]["scaling_group"]
    assert (detail["description"], detail["is_active"], json.loads(detail["scheduler_opts"])) == (
        "H100 nodes", False, {})
    extra = (await gw.gql(gw.admin, EXTRA, name="gpu"))["data"]["scaling_group"]
    assert extra["agent_selector"] == "round-robin"

    # Associations: by domain name and by project (user group) id.
    project_id = next(g["id"] for g in (await gw.gql(gw.admin, GROUPS))["data"]["groups"]
                      if g["name"] == "default")
    ok(await gw.gql(gw.admin, ASSOC_DOMAIN, scaling_group="gpu", domain="default"),
       "associate_scaling_group_with_domain")
    ok(await gw.gql(gw.admin, ASSOC_GROUP, scaling_group="gpu", user_group=project_id),
       "associate_scaling_group_with_user_group")
    extra = (await gw.gql(gw.admin, EXTRA, name="gpu"))["data"]["scaling_group"]
    assert (extra["allowed_domains"], extra["allowed_projects"]) == (["default"],
                                                                     ["default/default"])
    usable = await gw.gql(gw.admin, FOR_GROUP, user_group=project_id)
    assert [g["name"] for g in usable["data"]["scaling_groups_for_user_group"]] == [
        "default", "gpu"]
    ok(await gw.gql(gw.admin, DISSOC_GROUP, scaling_group="gpu", user_group=project_id),
       "disassociate_scaling_group_with_user_group")
    ok(await gw.gql(gw.admin, DISSOC_DOMAIN, scaling_group="gpu", domain="default"),
       "disassociate_scaling_group_with_domain")
    ok(await gw.gql(gw.admin, ASSOC_DOMAIN, scaling_group="gpu", domain="default"),
       "associate_scaling_group_with_domain")
    ok(await gw.gql(gw.admin, DISSOC_ALL_DOMAIN, domain="default"),
       "disassociate_all_scaling_groups_with_domain")
    extra = (await gw.gql(gw.admin, EXTRA, name="gpu"))["data"]["scaling_group"]
    assert (extra["allowed_domains"], extra["allowed_projects"]) == ([], [])

    ok(await gw.gql(gw.admin, DELETE, name="gpu"), "delete_scaling_group")
    assert (await gw.gql(gw.admin, DETAIL, name="gpu"))["data"]["scaling_group"] is None
    gone = (await gw.gql(gw.admin, DELETE, name="gpu"))["data"]["delete_scaling_group"]
    assert gone == {"ok": False, "msg": "RESOURCE_GROUP_NOT_FOUND: resource group 'gpu' "
                                        "not found"}


async def test_refusals_are_precise(gw: Gateway) -> None:
    bad = (await gw.gql(gw.admin, CREATE, name="x1", input=client_create_input(
        scheduler="sjf")))["data"]["create_scaling_group"]
    assert bad == {"ok": False, "scaling_group": None, "msg": (
        "UNKNOWN_SCHEDULER: unknown scheduler 'sjf'; installed (backendai_scheduler_v10): "
        "drf, fair-share, fifo, lifo")}
    bad = (await gw.gql(gw.admin, ASSOC_DOMAIN, scaling_group="default",
                        domain="nowhere"))["data"]["associate_scaling_group_with_domain"]
    assert bad == {"ok": False, "msg": "DOMAIN_NOT_FOUND: no such domain: nowhere"}
    bad = (await gw.gql(gw.admin, MODIFY, name="default", input={
        "scheduler_opts": "[1, 2]"}))
    assert bad["errors"][0]["message"] == "scheduler_opts must be a JSON object"
    for unsupported, message in (
            ({"driver": "aws"}, "driver 'aws' is not supported by this server (only 'static')"),
            ({"is_public": False}, "private scaling groups are not supported by this server"),
            ({"use_host_network": True}, "use_host_network is not supported by this server")):
        body = await gw.gql(gw.admin, CREATE, name="x1", input=client_create_input(**unsupported))
        assert body["errors"][0]["message"] == message, body
        assert body["errors"][0]["extensions"]["code"] == "INVALID_ARGUMENT"
    names = [g["name"] for g in (await gw.gql(gw.admin, LIST))["data"]["scaling_groups"]]
    assert names == ["default"]

    # A plain user: a GraphQL error with the manager's reason; it sees what it may use.
    denied = await gw.gql(gw.user, CREATE, name="mine", input=client_create_input())
    assert denied["errors"][0]["extensions"] == {"code": "PERMISSION_DENIED",
                                                 "reason": "PERMISSION_DENIED"}
    ok(await gw.gql(gw.admin, CREATE, name="elsewhere", input=client_create_input()),
       "create_scaling_group")
    await gw.gql(gw.admin, "mutation { create_domain(name: \"lab\", props: {}) { ok } }")
    ok(await gw.gql(gw.admin, ASSOC_DOMAIN, scaling_group="elsewhere", domain="lab"),
       "associate_scaling_group_with_domain")
    seen = [g["name"] for g in (await gw.gql(gw.user, LIST))["data"]["scaling_groups"]]
    assert seen == ["default"]
    assert (await gw.gql(gw.user, DETAIL, name="elsewhere"))["data"]["scaling_group"] is None


@pytest.mark.official_client
async def test_official_client_scaling_group_commands(gw_sqlite: Gateway) -> None:
    """``backend.ai admin scaling-group ...`` (26.9.6) as an operator types them, judged by
    what they print (the client exits 0 on several failures)."""
    if not OFFICIAL_CLIENT.exists():
        pytest.fail(f"official client missing at {OFFICIAL_CLIENT}: run `make test`")
    gw = gw_sqlite

    async def run(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(BACKEND_ENDPOINT=gw.base, BACKEND_ENDPOINT_TYPE="api",
                   BACKEND_ACCESS_KEY=gw.admin.access_key,
                   BACKEND_SECRET_KEY=gw.admin.secret_key)
        with tempfile.TemporaryDirectory(prefix="bai-client-") as cwd:  # no .env files upward
            env["XDG_STATE_HOME"] = cwd
            proc = await asyncio.create_subprocess_exec(
                str(OFFICIAL_CLIENT), "admin", "scaling-group", *args, cwd=cwd, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        text = out.decode()
        assert "Traceback" not in text, text
        return text

    def succeeded(out: str) -> bool:
        return re.search(r"^ok\s+True$", out, re.M) is not None

    out = await run("add", "gpu", "-d", "A100 nodes", "--scheduler", "drf",
                    "--scheduler-opts", '{"agent_selection_strategy": "concentrated"}')
    assert succeeded(out) and re.search(r"^name\s+gpu$", out, re.M), out
    out = await run("list")
    assert re.search(r"^gpu\s+A100 nodes\s+True\s+True\s+.*static\s+drf\s+False", out, re.M), out
    out = await run("update", "gpu", "-d", "H100 nodes", "--scheduler", "fair-share")
    assert succeeded(out), out
    out = await run("info", "gpu")
    assert re.search(r"^Description\s+H100 nodes$", out, re.M | re.I), out
    assert re.search(r"^Scheduler\s+fair-share$", out, re.M | re.I), out
    extra = (await gw.gql(gw.admin, EXTRA, name="gpu"))["data"]["scaling_group"]
    assert extra["agent_selector"] == "concentrated"

    out = await run("associate-scaling", "gpu", "default")
    assert succeeded(out), out
    extra = (await gw.gql(gw.admin, EXTRA, name="gpu"))["data"]["scaling_group"]
    assert extra["allowed_domains"] == ["default"]
    out = await run("dissociate-scaling", "gpu", "default")
    assert "is dissociated from domain default" in out, out
    extra = (await gw.gql(gw.admin, EXTRA, name="gpu"))["data"]["scaling_group"]
    assert extra["allowed_domains"] == []

    out = await run("get-available", "default")
    assert re.search(r"^gpu$", out, re.M) and re.search(r"^default$", out, re.M), out

    out = await run("add", "bad", "--scheduler", "sjf")
    assert not succeeded(out) and "UNKNOWN_SCHEDULER" in out, out
    out = await run("delete", "gpu")
    assert succeeded(out), out
    assert (await gw.gql(gw.admin, DETAIL, name="gpu"))["data"]["scaling_group"] is None


async def test_rest_list_available_for_a_project(gw: Gateway) -> None:
    """``GET /scaling-groups?group=`` (Backend.AI's list_available): the active groups whose
    access lists admit the project, by project name (of the caller's domain) or id."""
    ok(await gw.gql(gw.admin, CREATE, name="open", input=client_create_input()),
       "create_scaling_group")
    ok(await gw.gql(gw.admin, CREATE, name="off", input=client_create_input(is_active=False)),
       "create_scaling_group")
    await gw.gql(gw.admin, "mutation { create_domain(name: \"lab\", props: {}) { ok } }")
    ok(await gw.gql(gw.admin, CREATE, name="lab-only", input=client_create_input()),
       "create_scaling_group")
    ok(await gw.gql(gw.admin, ASSOC_DOMAIN, scaling_group="lab-only", domain="lab"),
       "associate_scaling_group_with_domain")
    project_id = next(g["id"] for g in (await gw.gql(gw.admin, GROUPS))["data"]["groups"]
                      if g["name"] == "default")
    auth = SignedAuth(gw.user.access_key, gw.user.secret_key)
    async with httpx.AsyncClient(base_url=gw.base, auth=auth, timeout=30) as c:
        by_name = await c.get("/scaling-groups", params={"group": "default"})
        by_id = await c.get("/scaling-groups", params={"group": project_id})
        missing = await c.get("/scaling-groups")
    assert by_name.status_code == 200, by_name.text
    assert by_name.json() == {"scaling_groups": [{"name": "default"}, {"name": "open"}]}
    assert by_id.json() == by_name.json()
    assert missing.status_code == 400 and "'group'" in missing.json()["msg"], missing.text


async def test_native_rest_routes_of_the_resource_group_service(gw: Gateway) -> None:
    """The same service as REST under /v1 (derived from its google.api.http annotations),
    with RBAC and errors from the manager."""
    admin = SignedAuth(gw.admin.access_key, gw.admin.secret_key)
    user = SignedAuth(gw.user.access_key, gw.user.secret_key)
    async with httpx.AsyncClient(base_url=gw.base, auth=admin, timeout=30) as c:
        r = await c.post("/v1/resource-groups", json={
            "name": "rest-gpu", "scheduler": "drf", "agentSelector": "concentrated"})
        assert r.status_code == 200, r.text
        assert r.json()["resourceGroup"]["scheduler"] == "drf"
        r = await c.patch("/v1/resource-groups/rest-gpu", json={"scheduler": "lifo"})
        assert r.status_code == 200, r.text
        r = await c.get("/v1/resource-groups/rest-gpu")
        assert r.status_code == 200 and r.json()["resourceGroup"]["scheduler"] == "lifo", r.text
        r = await c.post("/v1/resource-groups", json={"name": "bad", "scheduler": "nope"})
        assert r.status_code == 400 and r.json()["reason"] == "UNKNOWN_SCHEDULER", r.text
        r = await c.post("/v1/fair-share-weights:set", json={
            "scope": "FAIR_SHARE_SCOPE_PROJECT", "subject": "default/default", "weight": "3"})
        assert r.status_code == 200, r.text
        r = await c.get("/v1/fair-share-weights")
        assert {"scope": "FAIR_SHARE_SCOPE_PROJECT", "subject": "default/default",
                "weight": "3"} in r.json()["weights"], r.text
    async with httpx.AsyncClient(base_url=gw.base, auth=user, timeout=30) as c:
        r = await c.delete("/v1/resource-groups/rest-gpu")
        assert r.status_code == 403, r.text
        names = [g["name"] for g in (await c.get("/v1/resource-groups")).json()["resourceGroups"]]
        assert "rest-gpu" in names  # open to every project: users may read it
    async with httpx.AsyncClient(base_url=gw.base, auth=admin, timeout=30) as c:
        r = await c.delete("/v1/resource-groups/rest-gpu")
        assert r.status_code == 200, r.text
        assert (await c.get("/v1/resource-groups/rest-gpu")).status_code == 404

"""Backend.AI's ``/folders`` routes for the vfolder model, through the real gateway, manager
(SQLite and PostgreSQL) and storage proxy, with the payloads the official client sends."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from bai.manager.adapters.db import Database
from bai.manager.adapters.db.accounts import create_user
from bai.manager.adapters.db.tables import ProjectMemberRow
from bai.manager.server import run_manager
from bai.storage.config import StorageConfig, VolumeConfig
from bai.storage.server import running_proxy
from cluster import SignedAuth
from gateway_stack import serve_gateway
from manager_harness import Keys, manager_config, prepare_db
from sqlalchemy import update

TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
VFOLDER_LIST = """query($limit:Int!, $offset:Int!, $group_id: UUID, $filter: String, $order: String) {
  vfolder_list(
      limit:$limit, offset:$offset, group_id:$group_id, filter:$filter, order:$order) {
    items { host name status created_at creator group permission ownership_type }
    total_count
  }
}"""  # noqa: E501  (the official client's text, verbatim)


@dataclass
class FolderStack:
    gateway: str
    owner: Keys
    """user@localhost, a plain member of project "default"."""
    bob: Keys
    padmin: Keys
    """An admin of project "default"."""

    def client(self, keys: Keys) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://{self.gateway}", timeout=30,
                                 auth=SignedAuth(keys.access_key, keys.secret_key))


async def _user(db_url: str, email: str, project_role: str = "member") -> Keys:
    keys = Keys("AK" + secrets.token_hex(8).upper(), secrets.token_hex(16))
    db = Database(db_url)
    try:
        user_id = await create_user(db, email=email, access_key=keys.access_key,
                                    secret_key=keys.secret_key)
        async with db.write() as tx:
            await tx.execute(update(ProjectMemberRow).where(ProjectMemberRow.user_id == user_id)
                             .values(role=project_role))
    finally:
        await db.close()
    return keys


@pytest.fixture
async def fstack(db_url: str, tmp_path: Path) -> AsyncIterator[FolderStack]:
    _, owner = await prepare_db(db_url)
    bob = await _user(db_url, "bob@localhost")
    padmin = await _user(db_url, "padmin@localhost", "admin")
    token = "tok-" + secrets.token_hex(8)
    storage = StorageConfig(service_token=token, listen="127.0.0.1:0",
                            transfer_listen="127.0.0.1:0",
                            volumes=(VolumeConfig("local", "fs", {"path": str(tmp_path / "v")}),))
    async with running_proxy(storage) as proxy:
        config = manager_config(db_url, token, storage_addr=f"127.0.0.1:{proxy.grpc_port}")
        async with run_manager(config) as running, serve_gateway(running.address, token) as gw:
            yield FolderStack(gateway=gw, owner=owner, bob=bob, padmin=padmin)


def problem(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"].endswith("/" + slug), body
    assert body["title"] and body["msg"], body


async def gql_names(c: httpx.AsyncClient, field: str) -> list[str]:
    query = (f"query($limit:Int!, $offset:Int!) {{ {field}(limit:$limit, offset:$offset) "
             "{ items { name ownership_type } total_count } }")
    r = await c.post("/admin/gql", json={"query": query, "variables": {"limit": 20,
                                                                        "offset": 0}})
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    return [i["name"] for i in r.json()["data"][field]["items"]]


async def folder_id(c: httpx.AsyncClient, name: str) -> str:
    r = await c.request("GET", "/folders/_/id", json={"name": name})
    assert r.status_code == 200, r.text
    value: str = r.json()["id"]
    return value.replace("-", "")


async def put_file(c: httpx.AsyncClient, fid: str, path: str, data: bytes) -> None:
    r = await c.post(f"/folders/{fid}/request-upload", json={"path": path, "size": len(data)})
    assert r.status_code == 200, r.text
    grant = r.json()
    async with httpx.AsyncClient() as raw:
        up = await raw.patch(grant["url"], params={"token": grant["token"]}, content=data,
                             headers={**TUS, "Upload-Offset": "0"})
        assert up.status_code == 204, up.text


async def ls(c: httpx.AsyncClient, fid: str, path: str = ".") -> list[str]:
    r = await c.get(f"/folders/{fid}/files", params={"path": path})
    assert r.status_code == 200, r.text
    return [i["name"] for i in r.json()["items"]]


async def test_project_folders_and_the_vfolder_list_query(fstack: FolderStack) -> None:
    async with fstack.client(fstack.owner) as member, fstack.client(fstack.padmin) as admin:
        denied = await member.post("/folders", json={"name": "team", "group": "default"})
        problem(denied, 403, "forbidden")
        r = await admin.post("/folders", json={
            "name": "team", "host": None, "unmanaged_path": None, "group": "default",
            "usage_mode": "data", "permission": "rw", "cloneable": False})
        assert r.status_code == 201, r.text
        team = r.json()
        assert (team["type"], team["usage_mode"], team["is_owner"]) == ("group", "data", False)
        assert team["group_name"] == "default" and team["creator"] == "padmin@localhost"
        await member.post("/folders", json={"name": "mine"})

        listed = {f["name"]: f for f in (await member.get("/folders")).json()}
        assert set(listed) == {"team", "mine"} and listed["mine"]["is_owner"]
        by_group = (await member.get("/folders", params={"group_id": team["group"]})).json()
        assert [f["name"] for f in by_group] == ["team"]

        r = await member.post("/admin/gql", json={"query": VFOLDER_LIST, "variables": {
            "group_id": None, "filter": None, "order": None, "limit": 20, "offset": 0}})
        assert r.status_code == 200 and "errors" not in r.json(), r.text
        page = r.json()["data"]["vfolder_list"]
        assert page["total_count"] == 2
        items = {i["name"]: i for i in page["items"]}
        assert list(items["team"]) == ["host", "name", "status", "created_at", "creator",
                                       "group", "permission", "ownership_type"]
        assert items["team"]["ownership_type"] == "group"
        assert items["team"]["group"] == team["group"]
        assert (items["mine"]["creator"], items["mine"]["group"]) == ("user@localhost", None)
        assert items["mine"]["status"] == "ready" and items["mine"]["host"] == "local"
        r = await member.post("/admin/gql", json={"query": VFOLDER_LIST, "variables": {
            "group_id": team["group"], "limit": 1, "offset": 0}})
        assert [i["name"] for i in r.json()["data"]["vfolder_list"]["items"]] == ["team"]
        assert await gql_names(member, "vfolder_own_list") == ["mine"]
        assert await gql_names(member, "vfolder_project_list") == ["team"]
        assert await gql_names(member, "vfolder_invited_list") == []


async def test_invitations_shares_and_leave(fstack: FolderStack) -> None:
    async with fstack.client(fstack.owner) as owner, fstack.client(fstack.bob) as bob:
        assert (await owner.post("/folders", json={"name": "papers"})).status_code == 201
        fid = await folder_id(owner, "papers")
        r = await owner.post(f"/folders/{fid}/invite", json={
            "perm": "ro", "user_ids": ["bob@localhost", "ghost@localhost"]})
        assert r.status_code == 201 and r.json() == {"invited_ids": ["bob@localhost"]}, r.text
        problem(await owner.post(f"/folders/{fid}/invite", json={"perm": "xx",
                                                                 "user_ids": ["b@x"]}),
                400, "invalid-api-params")

        invitations = (await bob.get("/folders/invitations/list")).json()["invitations"]
        assert len(invitations) == 1
        inv = invitations[0]
        assert (inv["inviter"], inv["perm"], inv["vfolder_name"]) == (
            "user@localhost", "ro", "papers")
        assert inv["vfolder_id"].replace("-", "") == fid
        problem(await bob.post("/folders/invitations/accept",
                               json={"inv_id": "00000000-0000-0000-0000-000000000000"}),
                404, "object-not-found")
        r = await bob.post("/folders/invitations/accept", json={"inv_id": inv["id"]})
        assert r.status_code == 200, r.text
        (shared,) = (await bob.get("/folders")).json()
        assert (shared["name"], shared["permission"], shared["is_owner"]) == (
            "papers", "ro", False)
        assert await gql_names(bob, "vfolder_invited_list") == ["papers"]
        assert await gql_names(bob, "vfolder_own_list") == []
        problem(await bob.post(f"/folders/{fid}/mkdir", json={"path": ["x"]}), 403, "forbidden")

        r = await owner.post(f"/folders/{fid}/share", json={"permission": "rw",
                                                              "emails": ["bob@localhost"]})
        assert r.status_code == 201 and r.json() == {"shared_emails": ["bob@localhost"]}
        r = await bob.post(f"/folders/{fid}/mkdir", json={"path": ["x"], "parents": False,
                                                           "exist_ok": False})
        assert r.status_code == 201, r.text
        (share,) = (await owner.get("/folders/_/shared", params={"vfolder_id": fid})
                    ).json()["shared"]
        assert (share["shared_to"]["email"], share["perm"], share["vfolder_name"]) == (
            "bob@localhost", "rw", "papers")
        problem(await bob.get("/folders/_/shared", params={"vfolder_id": fid}), 403, "forbidden")
        r = await owner.request("DELETE", f"/folders/{fid}/unshare",
                                json={"emails": ["bob@localhost"]})
        assert r.json() == {"unshared_emails": ["bob@localhost"]}, r.text
        problem(await bob.get(f"/folders/{fid}"), 404, "vfolder-not-found")

        await owner.post(f"/folders/{fid}/invite", json={"perm": "rw",
                                                         "user_ids": ["bob@localhost"]})
        (inv,) = (await bob.get("/folders/invitations/list")).json()["invitations"]
        r = await bob.request("DELETE", "/folders/invitations/delete", json={"inv_id": inv["id"]})
        assert r.status_code == 200, r.text
        assert (await bob.get("/folders/invitations/list")).json() == {"invitations": []}

        await owner.post(f"/folders/{fid}/share", json={"permission": "ro",
                                                        "emails": ["bob@localhost"]})
        assert (await bob.post(f"/folders/{fid}/leave", json={"shared_user_uuid": None})
                ).status_code == 200
        assert (await bob.get("/folders")).json() == []
        problem(await owner.post(f"/folders/{fid}/leave", json={}), 409, "invalid-state")


async def test_trash_restore_purge_and_rename(fstack: FolderStack) -> None:
    async with fstack.client(fstack.owner) as c:
        await c.post("/folders", json={"name": "old"})
        first = await folder_id(c, "old")
        await put_file(c, first, "a.txt", b"aaa")
        assert (await c.request("DELETE", "/folders", json={"id": first})).status_code == 204
        assert await folder_id(c, "old") == first  # the id lookup finds the trash too
        assert (await c.post("/folders", json={"name": "old"})).status_code == 201
        second = await folder_id(c, "old")
        assert second != first
        problem(await c.post("/folders/restore-from-trash-bin", json={"id": first}),
                409, "vfolder-already-exists")
        r = await c.post(f"/folders/{second}/rename", json={"new_name": "newer"})
        assert r.status_code == 201 and r.json()["name"] == "newer", r.text
        assert (await c.post("/folders/restore-from-trash-bin", json={"id": first})
                ).status_code == 204
        assert await ls(c, first) == ["a.txt"]
        problem(await c.post(f"/folders/{second}/rename", json={"new_name": "old"}),
                409, "vfolder-already-exists")
        problem(await c.post(f"/folders/{second}/rename", json={"new_name": "../x"}),
                400, "invalid-api-params")
        problem(await c.post("/folders/purge", json={"id": second}), 404, "vfolder-not-found")
        assert (await c.request("DELETE", "/folders", json={"id": second})).status_code == 204
        assert (await c.post("/folders/purge", json={"id": second})).status_code == 204
        problem(await c.post("/folders/restore-from-trash-bin", json={"id": second}),
                404, "vfolder-not-found")
        assert (await c.request("DELETE", f"/folders/{first}/force")).status_code == 204
        assert (await c.get("/folders")).json() == []


async def test_file_operations_clone_usage_and_quota(fstack: FolderStack) -> None:
    async with fstack.client(fstack.owner) as c, fstack.client(fstack.bob) as bob:
        await c.post("/folders", json={"name": "w"})
        fid = await folder_id(c, "w")
        await c.post(f"/folders/{fid}/mkdir", json={"path": ["d/e"], "parents": True,
                                                    "exist_ok": False})
        await put_file(c, fid, "d/f.txt", b"12345")
        r = await c.post(f"/folders/{fid}/rename-file", json={"target_path": "d/f.txt",
                                                              "new_name": "g.txt"})
        assert r.status_code == 200 and r.json()["name"] == "g.txt", r.text
        problem(await c.post(f"/folders/{fid}/rename-file", json={
            "target_path": "d/g.txt", "new_name": "../../x"}), 400, "invalid-api-params")
        problem(await c.post(f"/folders/{fid}/move-file", json={"src": "d/g.txt",
                                                                "dst": "../out.txt"}),
                400, "invalid-api-params")
        r = await c.post(f"/folders/{fid}/move-file", json={"src": "d/g.txt", "dst": "g.txt"})
        assert r.status_code == 200, r.text
        problem(await c.post(f"/folders/{fid}/move-file", json={"src": "g.txt", "dst": "d"}),
                409, "vfolder-already-exists")
        assert sorted(await ls(c, fid)) == ["d", "g.txt"]

        usage = (await c.get(f"/folders/{fid}/usage")).json()
        assert (usage["used_bytes"], usage["file_count"]) == (5, 1)
        r = await c.post("/folders/_/quota", json={"folder_host": "local", "id": fid,
                                                   "input": {"size_bytes": 6}})
        assert r.json() == {"size_bytes": 6}, r.text
        problem(await c.post(f"/folders/{fid}/request-upload", json={"path": "big", "size": 2}),
                412, "quota-exceeded")
        assert (await c.get("/folders/_/quota", params={"id": fid})).json() == {
            "used_bytes": 5, "limit_bytes": 6}

        info = (await c.get(f"/folders/{fid}")).json()
        assert info["cloneable"] is False
        r = await c.post(f"/folders/{fid}/clone", json={
            "target_name": "w2", "target_host": "local", "usage_mode": "model",
            "permission": "rw"})
        assert r.status_code == 201 and "bgtask_id" not in r.json(), r.text
        clone = r.json()["id"]
        assert sorted(await ls(c, clone)) == ["d", "g.txt"]
        await c.post(f"/folders/{fid}/share", json={"permission": "ro",
                                                    "emails": ["bob@localhost"]})
        problem(await bob.post(f"/folders/{fid}/clone", json={"target_name": "b"}),
                409, "invalid-state")
        r = await c.post(f"/folders/{fid}/update-options", json={"cloneable": True,
                                                                 "permission": None})
        assert r.status_code == 201 and r.json()["cloneable"] is True, r.text
        r = await bob.post(f"/folders/{fid}/clone", json={"target_name": "b"})
        assert r.status_code == 201 and r.json()["is_owner"], r.text

        r = await c.request("DELETE", f"/folders/{fid}/delete-files",
                            json={"files": ["d"], "recursive": False})
        problem(r, 409, "invalid-state")  # a non-empty directory needs recursive
        r = await c.request("DELETE", f"/folders/{fid}/delete-files",
                            json={"files": ["d", "g.txt"], "recursive": True})
        assert r.status_code == 200, r.text
        assert await ls(c, fid) == []
        problem(await c.request("DELETE", f"/folders/{fid}/delete-files",
                                json={"files": ["../../etc"], "recursive": True}),
                400, "invalid-api-params")
        types = (await c.get("/folders/_/allowed_types")).json()
        assert types == ["user", "group"]

"""Virtual folders end to end: storage proxy + manager + agent + gateway, the official client.

The official client exits 0 on several failures, so every check reads its printed output.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster import Cluster, start_cluster
from e2e_util import OFFICIAL_CLIENT

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def vcluster(tmp_path_factory: pytest.TempPathFactory, docker_ready: None) -> Iterator[Cluster]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'manager.db'}"
    c = start_cluster(url, storage=True)
    try:
        yield c
    finally:
        c.shutdown()


def backend_ai(
    cluster: Cluster, *args: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    if not OFFICIAL_CLIENT.exists():
        pytest.fail(f"official client missing at {OFFICIAL_CLIENT}: run `make test` (installs it)")
    with tempfile.TemporaryDirectory(prefix="bai-client-") as empty:
        return subprocess.run(
            [str(OFFICIAL_CLIENT), *args],
            cwd=cwd or empty,
            env=cluster.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.mark.official_client
def test_official_client_vfolder_round_trip(vcluster: Cluster, tmp_path: Path) -> None:
    name = "vf-" + uuid.uuid4().hex[:8]
    out = backend_ai(vcluster, "vfolder", "create", name)
    assert f'Virtual folder "{name}" is created' in out.stdout, out.stdout + out.stderr

    out = backend_ai(vcluster, "vfolder", "info", name)
    text = out.stdout + out.stderr
    assert f'Virtual folder "{name}"' in out.stdout and "- Permission: rw" in out.stdout, text
    assert "- Number of files: 0" in out.stdout, text

    up = tmp_path / "up"
    up.mkdir()
    payload = b"hello vfolder\n" * 5000
    (up / "data.bin").write_bytes(payload)
    out = backend_ai(vcluster, "vfolder", "upload", name, "data.bin", cwd=up)
    assert "Done" in out.stdout + out.stderr, out.stdout + out.stderr

    out = backend_ai(vcluster, "vfolder", "ls", name)
    text = out.stdout + out.stderr
    assert "data.bin" in out.stdout and str(len(payload)) in out.stdout, text

    down = tmp_path / "down"
    down.mkdir()
    out = backend_ai(vcluster, "vfolder", "download", name, "data.bin", cwd=down)
    assert (down / "data.bin").read_bytes() == payload, out.stdout + out.stderr

    out = backend_ai(vcluster, "vfolder", "delete", name)
    assert "Deleted" in out.stdout + out.stderr, out.stdout + out.stderr
    with vcluster.client() as c:
        gone = c.get(f"/folders/{name}")
        assert gone.status_code == 404 and gone.json()["type"].endswith("vfolder-not-found")


def test_name_collision_is_409_and_traversal_is_400(vcluster: Cluster) -> None:
    name = "vf-" + uuid.uuid4().hex[:8]
    with vcluster.client() as c:
        hosts = c.get("/folders/_/hosts").json()
        assert hosts["default"] == "local" and hosts["allowed"] == ["local"], hosts
        created = c.post("/folders", json={"name": name})
        assert created.status_code == 201, created.text
        folder = created.json()["id"]
        again = c.post("/folders", json={"name": name})
        assert again.status_code == 409, again.text
        for path in ("../escape.txt", "/etc/passwd", "a/../../b"):
            r = c.post(f"/folders/{folder}/request-upload", json={"path": path, "size": 1})
            assert r.status_code == 400, (path, r.text)
        r = c.get(f"/folders/{folder}/files", params={"path": "../.."})
        assert r.status_code == 400, r.text
        assert c.request("DELETE", "/folders", json={"id": folder}).status_code == 204


def _run(c: httpx.Client, session: str, code: str) -> str:
    r = c.post(f"/session/{session}", json={"mode": "query", "code": code, "runId": "r1"})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    return "".join(str(item[1]) for item in result.get("console", []) if item[0] in
                   ("stdout", "stderr"))


def test_mounted_vfolder_is_shared_between_sessions_and_ro_is_enforced(
    vcluster: Cluster,
) -> None:
    name = "vf-" + uuid.uuid4().hex[:8]
    s1, s2 = "w-" + uuid.uuid4().hex[:8], "r-" + uuid.uuid4().hex[:8]
    with vcluster.client() as c:
        assert c.post("/folders", json={"name": name}).status_code == 201
        body = {"image": "python", "name": s1, "config": {"mounts": [name],
                "resources": {"cpu": "1", "mem": "256m"}}}
        r = c.post("/session", json=body)
        assert r.status_code == 201 and r.json()["status"] == "RUNNING", r.text
        out = _run(c, s1, f"open('/home/work/{name}/note.txt','w').write('from s1'); "
                          "print('wrote')")
        assert "wrote" in out, out
        body = {"image": "python", "name": s2, "config": {
            "mounts": [name], "mount_options": {name: {"permission": "ro"}},
            "resources": {"cpu": "1", "mem": "256m"}}}
        r = c.post("/session", json=body)
        assert r.status_code == 201 and r.json()["status"] == "RUNNING", r.text
        out = _run(c, s2, f"print(open('/home/work/{name}/note.txt').read())")
        assert "from s1" in out, out
        out = _run(c, s2, "import errno\ntry:\n"
                          f"    open('/home/work/{name}/x.txt','w')\n"
                          "except OSError as e:\n    print('refused', errno.errorcode[e.errno])")
        assert "refused EROFS" in out, out
        missing = c.post("/session", json={"image": "python", "name": "m-" + uuid.uuid4().hex[:8],
                                           "config": {"mounts": ["no-such-folder"]}})
        assert missing.status_code == 404, missing.text
        for s in (s1, s2):
            c.delete(f"/session/{s}")
        listed = c.get(f"/folders/{name}/files")
        assert [i["name"] for i in listed.json()["items"]] == ["note.txt"], listed.text


def bai(cluster: Cluster, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from bai.client.cli import main; sys.exit(main())",
         *args],
        cwd=cwd, env=cluster.client_env(), capture_output=True, text=True, timeout=120)


def test_bai_cli_vfolder_commands(vcluster: Cluster, tmp_path: Path) -> None:
    name = "cli-" + uuid.uuid4().hex[:8]
    (tmp_path / "tree" / "deep").mkdir(parents=True)
    (tmp_path / "tree" / "deep" / "f.txt").write_text("deep file")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 70000)  # ~17 MiB: two tus chunks

    def ok(*args: str) -> str:
        out = bai(vcluster, *args, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert f'vfolder "{name}" created' in ok("vfolder", "create", name)
    assert name in ok("vfolder", "list")
    ok("vfolder", "mkdir", name, "x/y", "--parents")
    assert "uploaded 2 file(s)" in ok("vfolder", "upload", name, "big.bin", "tree")
    listing = ok("vfolder", "ls", name)
    assert "big.bin" in listing and str(256 * 70000) in listing and "tree" in listing
    assert "f.txt" in ok("vfolder", "ls", name, "tree/deep")
    assert "files" in ok("vfolder", "info", name)
    (tmp_path / "out").mkdir()
    ok("vfolder", "download", name, "big.bin", "out")
    assert (tmp_path / "out" / "big.bin").read_bytes() == (tmp_path / "big.bin").read_bytes()
    bad = bai(vcluster, "vfolder", "ls", name, "../..", cwd=tmp_path)
    assert bad.returncode == 1 and "error:" in bad.stderr
    assert "deleted" in ok("vfolder", "delete", name)


def _second_user(cluster: Cluster, email: str) -> tuple[str, str]:
    """A plain user in the cluster's database (written while the manager runs: real rows)."""
    import asyncio

    from bai.common import auth
    from bai.manager.adapters.db import Database
    from bai.manager.adapters.db.accounts import create_user

    access_key, secret_key = auth.generate_keypair()

    async def make() -> None:
        db = Database(cluster.db_url)
        try:
            await create_user(db, email=email, access_key=access_key, secret_key=secret_key)
        finally:
            await db.close()

    asyncio.run(make())
    return access_key, secret_key


def official_as(cluster: Cluster, keys: tuple[str, str] | None, *args: str, stdin: str = "",
                cwd: Path | None = None) -> str:
    """Runs the official client (as ``keys``, default the cluster's admin); stdout + stderr."""
    env = cluster.client_env()
    if keys is not None:
        env.update(BACKEND_ACCESS_KEY=keys[0], BACKEND_SECRET_KEY=keys[1])
    with tempfile.TemporaryDirectory(prefix="bai-client-") as empty:
        out = subprocess.run([str(OFFICIAL_CLIENT), *args], cwd=cwd or empty, env=env,
                             input=stdin, capture_output=True, text=True, timeout=180)
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    return text


@pytest.mark.official_client
def test_official_client_invitations_shares_and_leave(vcluster: Cluster) -> None:
    if not OFFICIAL_CLIENT.exists():
        pytest.fail(f"official client missing at {OFFICIAL_CLIENT}: run `make test` (installs it)")
    email = f"bob-{uuid.uuid4().hex[:6]}@localhost"
    bob = _second_user(vcluster, email)
    name = "vm-" + uuid.uuid4().hex[:8]
    assert "is created" in official_as(vcluster, None, "vfolder", "create", name)
    out = official_as(vcluster, None, "vfolder", "invite", name, email, "-p", "ro")
    assert "Invitation sent to:" in out and email in out, out
    out = official_as(vcluster, bob, "vfolder", "invitations", stdin="1\na\n")
    assert "read-only" in out and f"You can now access vfolder {name}" in out, out
    out = official_as(vcluster, bob, "vfolder", "list")  # GraphQL vfolder_list
    assert name in out and "ro" in out, out
    out = official_as(vcluster, None, "vfolder", "share", name, email, "-p", "rw")
    assert "Shared with rw permission to:" in out and email in out, out
    out = official_as(vcluster, bob, "vfolder", "leave", name)
    assert f'Left the shared virtual folder "{name}"' in out, out
    assert name not in official_as(vcluster, bob, "vfolder", "list")


@pytest.mark.official_client
def test_official_client_files_clone_rename_and_trash(vcluster: Cluster, tmp_path: Path) -> None:
    if not OFFICIAL_CLIENT.exists():
        pytest.fail(f"official client missing at {OFFICIAL_CLIENT}: run `make test` (installs it)")
    name = "vt-" + uuid.uuid4().hex[:8]
    assert "is created" in official_as(vcluster, None, "vfolder", "create", name)
    (tmp_path / "a.txt").write_text("payload")
    assert "Done" in official_as(vcluster, None, "vfolder", "upload", name, "a.txt",
                                 cwd=tmp_path)
    assert "Renamed" in official_as(vcluster, None, "vfolder", "rename-file", name, "a.txt",
                                    "b.txt")
    assert "Moved" in official_as(vcluster, None, "vfolder", "mv", name, "b.txt", "c.txt")
    out = official_as(vcluster, None, "vfolder", "clone", name, name + "-copy", "local")
    assert "not allowed" in out, out
    assert "Updated" in official_as(vcluster, None, "vfolder", "update-options", name,
                                    "--set-cloneable", "true")
    out = official_as(vcluster, None, "vfolder", "clone", name, name + "-copy", "local")
    assert "Cloning the vfolder is complete" in out, out
    assert "c.txt" in official_as(vcluster, None, "vfolder", "ls", name + "-copy")
    assert "Done" in official_as(vcluster, None, "vfolder", "rm", name, "c.txt", stdin="y\n")
    assert "c.txt" not in official_as(vcluster, None, "vfolder", "ls", name)

    renamed = name + "-r"
    assert "Renamed" in official_as(vcluster, None, "vfolder", "rename", name, renamed)
    assert "Deleted" in official_as(vcluster, None, "vfolder", "delete", renamed)
    assert "Restored" in official_as(vcluster, None, "vfolder", "restore", renamed)
    assert "Deleted" in official_as(vcluster, None, "vfolder", "delete", renamed)
    assert "Purged" in official_as(vcluster, None, "vfolder", "purge", renamed)
    with vcluster.client() as c:
        gone = c.request("GET", "/folders/_/id", json={"name": renamed})
        assert gone.status_code == 404, gone.text


def test_a_shared_folder_mounts_with_the_shared_permission(vcluster: Cluster) -> None:
    from cluster import SignedAuth

    email = f"ro-{uuid.uuid4().hex[:6]}@localhost"
    bob = _second_user(vcluster, email)
    name, session = "sh-" + uuid.uuid4().hex[:8], "b-" + uuid.uuid4().hex[:8]
    with vcluster.client() as c, httpx.Client(base_url=vcluster.gateway_url, timeout=120,
                                              auth=SignedAuth(*bob)) as b:
        assert c.post("/folders", json={"name": name}).status_code == 201
        folder = c.request("GET", "/folders/_/id", json={"name": name}).json()["id"]
        r = c.post(f"/folders/{folder}/share", json={"permission": "ro", "emails": [email]})
        assert r.json() == {"shared_emails": [email]}, r.text
        body = {"image": "python", "name": session, "config": {
            "mounts": [name], "resources": {"cpu": "1", "mem": "256m"}}}
        r = b.post("/session", json=body)
        assert r.status_code == 201 and r.json()["status"] == "RUNNING", r.text
        try:
            out = _run(b, session, "import errno, os\n"
                                   f"print(sorted(os.listdir('/home/work/{name}')))\ntry:\n"
                                   f"    open('/home/work/{name}/x.txt','w')\n"
                                   "except OSError as e:\n    print('refused', "
                                   "errno.errorcode[e.errno])")
            assert "[]" in out and "refused EROFS" in out, out
        finally:
            b.delete(f"/session/{session}")

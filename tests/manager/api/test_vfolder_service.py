"""VFolderService against a real manager (both databases) and a real in-process storage proxy."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from bai.manager.adapters.db import Database
from bai.manager.adapters.db.accounts import create_user
from bai.manager.server import run_manager
from bai.pb.manager.v1 import session_service_pb2 as spb
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from bai.pb.manager.v1 import vfolder_service_pb2_grpc as pb_grpc
from bai.storage.config import StorageConfig, VolumeConfig
from bai.storage.server import running_proxy
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from manager_harness import Harness, Keys, ProtocolAgent, manager_config, prepare_db

StartAgent = Callable[..., Awaitable[ProtocolAgent]]
TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return info.reason


@pytest.fixture
async def vmanager(db_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    admin, user = await prepare_db(db_url)
    token = "tok-" + secrets.token_hex(8)
    storage = StorageConfig(service_token=token, listen="127.0.0.1:0",
                            transfer_listen="127.0.0.1:0",
                            volumes=(VolumeConfig("local", "fs", {"path": str(tmp_path / "v")}),))
    async with running_proxy(storage) as proxy:
        config = manager_config(db_url, token, storage_addr=f"127.0.0.1:{proxy.grpc_port}")
        async with run_manager(config) as running:
            harness = Harness(running=running, token=token, admin=admin, user=user,
                              db_url=db_url)
            try:
                yield harness
            finally:
                await harness.close()


def stub(h: Harness, keys: Keys | None = None) -> Any:
    return pb_grpc.VFolderServiceStub(h._channel(keys or h.user))


async def other_user(h: Harness) -> Keys:
    keys = Keys("AKOTHER" + secrets.token_hex(4).upper(), secrets.token_hex(16))
    db = Database(h.db_url)
    try:
        await create_user(db, email=f"o{secrets.token_hex(3)}@localhost",
                          access_key=keys.access_key, secret_key=keys.secret_key)
    finally:
        await db.close()
    return keys


async def test_lifecycle_names_and_owner_only(vmanager: Harness) -> None:
    s = stub(vmanager)
    created = (await s.CreateVFolder(pb.CreateVFolderRequest(name="data"))).vfolder
    assert created.volume == "local" and created.mountable and created.status == "ready"
    assert created.permission == pb.FOLDER_PERMISSION_READ_WRITE
    with pytest.raises(grpc.aio.AioRpcError) as dup:
        await s.CreateVFolder(pb.CreateVFolderRequest(name="data"))
    assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(dup.value) == "VFOLDER_ALREADY_EXISTS"
    for bad in ("", ".hidden", "a/b", "x" * 65):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await s.CreateVFolder(pb.CreateVFolderRequest(name=bad))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    hexid = created.id.replace("-", "")
    for ref in ("data", created.id, hexid):
        got = (await s.GetVFolder(pb.GetVFolderRequest(vfolder_ref=ref))).vfolder
        assert got.id == created.id and got.file_count == 0
    listed = (await s.ListVFolders(pb.ListVFoldersRequest())).vfolders
    assert [f.name for f in listed] == ["data"]

    other = stub(vmanager, await other_user(vmanager))
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await other.GetVFolder(pb.GetVFolderRequest(vfolder_ref=created.id))
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await other.ListVFolders(pb.ListVFoldersRequest())).vfolders == []
    mine = (await other.CreateVFolder(pb.CreateVFolderRequest(name="data"))).vfolder
    assert mine.id != created.id  # names are unique per owner only
    admin = stub(vmanager, vmanager.admin)
    assert (await admin.GetVFolder(pb.GetVFolderRequest(vfolder_ref=created.id))).vfolder.name \
        == "data"

    await s.DeleteVFolder(pb.DeleteVFolderRequest(vfolder_ref="data"))
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await s.GetVFolder(pb.GetVFolderRequest(vfolder_ref=created.id))
    assert reason_of(gone.value) == "VFOLDER_NOT_FOUND"
    again = (await s.CreateVFolder(pb.CreateVFolderRequest(name="data"))).vfolder
    assert again.id != created.id  # a deleted folder's name is free again


async def test_files_tokens_and_path_traversal(vmanager: Harness) -> None:
    s = stub(vmanager)
    await s.CreateVFolder(pb.CreateVFolderRequest(name="files"))
    made = await s.MakeDirectory(pb.MakeDirectoryRequest(vfolder_ref="files", path="a/b",
                                                         parents=True))
    assert made.file.type == "directory"
    grant = (await s.CreateUploadToken(pb.CreateUploadTokenRequest(
        vfolder_ref="files", path="a/hello.txt", size_bytes=5))).grant
    async with httpx.AsyncClient() as http:
        r = await http.patch(grant.url, params={"token": grant.token}, content=b"hello",
                             headers={**TUS, "Upload-Offset": "0"})
        assert r.status_code == 204, r.text
        down = (await s.CreateDownloadToken(pb.CreateDownloadTokenRequest(
            vfolder_ref="files", path="a/hello.txt"))).grant
        got = await http.get(down.url, params={"token": down.token})
        assert got.status_code == 200 and got.content == b"hello"
    files = (await s.ListFiles(pb.ListFilesRequest(vfolder_ref="files", path="a"))).files
    assert [(f.name, f.type, f.size_bytes) for f in files] == [
        ("b", "directory", 0), ("hello.txt", "file", 5)]
    info = (await s.GetVFolder(pb.GetVFolderRequest(vfolder_ref="files"))).vfolder
    assert info.file_count == 1 and info.used_bytes == 5
    for path in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await s.CreateUploadToken(pb.CreateUploadTokenRequest(
                vfolder_ref="files", path=path, size_bytes=1))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await s.ListFiles(pb.ListFilesRequest(vfolder_ref="files", path="../.."))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_ro_folders_refuse_uploads(vmanager: Harness) -> None:
    s = stub(vmanager)
    await s.CreateVFolder(pb.CreateVFolderRequest(
        name="readonly", permission=pb.FOLDER_PERMISSION_READ_ONLY))
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await s.CreateUploadToken(pb.CreateUploadTokenRequest(
            vfolder_ref="readonly", path="x", size_bytes=1))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_session_mounts_reach_the_agent(vmanager: Harness) -> None:
    agent = await vmanager.agent().start()
    try:
        s = stub(vmanager)
        rw = (await s.CreateVFolder(pb.CreateVFolderRequest(name="work"))).vfolder
        await s.CreateVFolder(pb.CreateVFolderRequest(
            name="ref", permission=pb.FOLDER_PERMISSION_READ_ONLY))
        sessions = vmanager.sessions()
        reply = await sessions.CreateSession(spb.CreateSessionRequest(
            name="with-mounts", image="python", resources={"cpu": "1", "mem": "256m"},
            mounts=[spb.VFolderMountRequest(vfolder_ref="work"),
                    spb.VFolderMountRequest(vfolder_ref="ref", container_path="refs")]))
        assert reply.session.kernels, reply
        mounts = {m.container_path: m for m in agent.last_create.mounts}
        assert set(mounts) == {"/home/work/work", "/home/work/refs"}
        assert not mounts["/home/work/work"].read_only and mounts["/home/work/refs"].read_only
        assert mounts["/home/work/work"].host_path.endswith(rw.id.replace("-", "")[4:])
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await sessions.CreateSession(spb.CreateSessionRequest(
                name="bad-mount", image="python",
                mounts=[spb.VFolderMountRequest(vfolder_ref="nope")]))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as escape:
            await sessions.CreateSession(spb.CreateSessionRequest(
                name="bad-path", image="python",
                mounts=[spb.VFolderMountRequest(vfolder_ref="work", container_path="../../etc")]))
        assert escape.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await agent.stop()


async def test_without_storage_vfolders_are_failed_precondition(manager: Harness) -> None:
    s = stub(manager)
    with pytest.raises(grpc.aio.AioRpcError) as off:
        await s.ListVFolders(pb.ListVFoldersRequest())
    assert off.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(off.value) == "STORAGE_NOT_CONFIGURED"
    assert "--storage" in (off.value.details() or "")

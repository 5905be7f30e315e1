"""The vfolder model over a real manager (SQLite and PostgreSQL) and a real storage proxy:
project folders, permissions, invitations and shares, trash, clone, quotas, file operations."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from bai.manager.adapters.db import Database
from bai.manager.adapters.db.accounts import create_user
from bai.manager.adapters.db.tables import ProjectMemberRow, ProjectRow
from bai.manager.domain.model import Role
from bai.manager.server import run_manager
from bai.pb.manager.v1 import session_service_pb2 as spb
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from bai.pb.manager.v1 import vfolder_service_pb2_grpc as pb_grpc
from bai.storage.config import StorageConfig, VolumeConfig
from bai.storage.server import running_proxy
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from manager_harness import Harness, Keys, manager_config, prepare_db
from sqlalchemy import select, update

TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
RO, RW, WD = (pb.FOLDER_PERMISSION_READ_ONLY, pb.FOLDER_PERMISSION_READ_WRITE,
              pb.FOLDER_PERMISSION_READ_WRITE_DELETE)


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return info.reason


@dataclass
class VStack:
    h: Harness
    volume_dir: Path

    def stub(self, keys: Keys | None = None) -> Any:
        return pb_grpc.VFolderServiceStub(self.h._channel(keys or self.h.user))

    async def user(self, email: str, *, role: Role = Role.USER, project: str = "default",
                   project_role: str = "member") -> Keys:
        keys = Keys("AK" + secrets.token_hex(8).upper(), secrets.token_hex(16))
        db = Database(self.h.db_url)
        try:
            user_id = await create_user(db, email=email, access_key=keys.access_key,
                                        secret_key=keys.secret_key, role=role, project=project)
            async with db.write() as tx:
                project_id = await tx.scalar(select(ProjectRow.id).where(
                    ProjectRow.name == project))
                await tx.execute(update(ProjectMemberRow).where(
                    ProjectMemberRow.user_id == user_id,
                    ProjectMemberRow.project_id == project_id).values(role=project_role))
        finally:
            await db.close()
        return keys


@pytest.fixture
async def vstack(db_url: str, tmp_path: Path) -> AsyncIterator[VStack]:
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
                yield VStack(harness, tmp_path / "v")
            finally:
                await harness.close()


async def expect(code: grpc.StatusCode, call: Any, reason: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    if reason is not None:
        assert reason_of(err.value) == reason


async def upload(s: Any, ref: str, path: str, data: bytes) -> None:
    grant = (await s.CreateUploadToken(pb.CreateUploadTokenRequest(
        vfolder_ref=ref, path=path, size_bytes=len(data)))).grant
    async with httpx.AsyncClient() as http:
        r = await http.patch(grant.url, params={"token": grant.token}, content=data,
                             headers={**TUS, "Upload-Offset": "0"})
        assert r.status_code == 204, r.text


async def names(s: Any, ref: str, path: str = "") -> list[str]:
    files = (await s.ListFiles(pb.ListFilesRequest(vfolder_ref=ref, path=path))).files
    return [f.name for f in files]


async def test_project_folders_admins_create_members_use(vstack: VStack) -> None:
    member = vstack.stub()  # user@localhost: a plain member of project "default"
    padmin = vstack.stub(await vstack.user("padmin@localhost", project_role="admin"))
    dadmin = vstack.stub(await vstack.user("dadmin@localhost", role=Role.ADMIN))
    outsider = vstack.stub(await vstack.user("out@localhost", project="other"))

    await expect(grpc.StatusCode.PERMISSION_DENIED, member.CreateVFolder(
        pb.CreateVFolderRequest(name="team", project="default")), "VFOLDER_PERMISSION_DENIED")
    team = (await padmin.CreateVFolder(pb.CreateVFolderRequest(
        name="team", project="default", usage_mode="data"))).vfolder
    assert team.owner_project_id and not team.owner_user_id and team.project_name == "default"
    assert team.usage_mode == "data" and team.creator_email == "padmin@localhost"
    models = (await dadmin.CreateVFolder(pb.CreateVFolderRequest(
        name="models", project="default", usage_mode="model",
        permission=RO))).vfolder
    await expect(grpc.StatusCode.ALREADY_EXISTS, dadmin.CreateVFolder(
        pb.CreateVFolderRequest(name="team", project="default")), "VFOLDER_ALREADY_EXISTS")
    await expect(grpc.StatusCode.NOT_FOUND, padmin.CreateVFolder(
        pb.CreateVFolderRequest(name="x", project="no-such-project")), "PROJECT_NOT_FOUND")
    await expect(grpc.StatusCode.INVALID_ARGUMENT, padmin.CreateVFolder(
        pb.CreateVFolderRequest(name="x", usage_mode="bogus")))

    listed = {f.name: f for f in (await member.ListVFolders(pb.ListVFoldersRequest())).vfolders}
    assert set(listed) == {"team", "models"}
    assert listed["team"].access_permission == RW and not listed["team"].is_owner
    assert listed["models"].access_permission == RO
    by_project = (await member.ListVFolders(pb.ListVFoldersRequest(
        project_id=team.owner_project_id))).vfolders
    assert {f.name for f in by_project} == {"team", "models"}

    await upload(member, "team", "shared.txt", b"from a member")
    assert await names(padmin, "team") == ["shared.txt"]
    await expect(grpc.StatusCode.PERMISSION_DENIED, member.CreateUploadToken(
        pb.CreateUploadTokenRequest(vfolder_ref="models", path="x", size_bytes=1)),
        "VFOLDER_READ_ONLY")
    # members use, only admins manage
    await expect(grpc.StatusCode.PERMISSION_DENIED, member.DeleteVFolder(
        pb.DeleteVFolderRequest(vfolder_ref="team")), "VFOLDER_PERMISSION_DENIED")
    await expect(grpc.StatusCode.PERMISSION_DENIED, member.RenameVFolder(
        pb.RenameVFolderRequest(vfolder_ref="team", new_name="mine")))
    # outside the project the folder does not exist, by name or by id
    assert (await outsider.ListVFolders(pb.ListVFoldersRequest())).vfolders == []
    await expect(grpc.StatusCode.NOT_FOUND, outsider.GetVFolder(
        pb.GetVFolderRequest(vfolder_ref=team.id)), "VFOLDER_NOT_FOUND")
    renamed = (await padmin.RenameVFolder(pb.RenameVFolderRequest(
        vfolder_ref=models.id, new_name="weights"))).vfolder
    assert renamed.name == "weights"


async def test_invitations_and_shares_grant_their_permission(vstack: VStack) -> None:
    owner = vstack.stub()
    bob_keys = await vstack.user("bob@localhost")
    bob = vstack.stub(bob_keys)
    carol = vstack.stub(await vstack.user("carol@localhost"))
    await owner.CreateVFolder(pb.CreateVFolderRequest(name="papers"))
    await upload(owner, "papers", "a.txt", b"aaa")

    sent = await owner.InviteToVFolder(pb.InviteToVFolderRequest(
        vfolder_ref="papers", permission=RO,
        emails=["Bob@localhost", "nobody@localhost", "user@localhost"]))
    assert list(sent.invited_emails) == ["bob@localhost"]  # unknown and owner skipped
    again = await owner.InviteToVFolder(pb.InviteToVFolderRequest(
        vfolder_ref="papers", permission=RO, emails=["bob@localhost"]))
    assert list(again.invited_emails) == []  # one pending invitation per invitee
    await expect(grpc.StatusCode.NOT_FOUND, bob.InviteToVFolder(  # bob cannot see it yet
        pb.InviteToVFolderRequest(vfolder_ref="papers", emails=["carol@localhost"])))

    pending = (await bob.ListInvitations(pb.ListInvitationsRequest())).invitations
    assert [(i.vfolder_name, i.inviter_email, i.permission) for i in pending] == [
        ("papers", "user@localhost", RO)]
    assert (await carol.ListInvitations(pb.ListInvitationsRequest())).invitations == []
    await expect(grpc.StatusCode.NOT_FOUND, bob.GetVFolder(
        pb.GetVFolderRequest(vfolder_ref=pending[0].vfolder_id)))
    await expect(grpc.StatusCode.NOT_FOUND, carol.AcceptInvitation(
        pb.AcceptInvitationRequest(invitation_id=pending[0].id)), "INVITATION_NOT_FOUND")
    accepted = (await bob.AcceptInvitation(pb.AcceptInvitationRequest(
        invitation_id=pending[0].id))).invitation
    assert accepted.state == "accepted"
    await expect(grpc.StatusCode.NOT_FOUND, bob.AcceptInvitation(
        pb.AcceptInvitationRequest(invitation_id=pending[0].id)))
    seen = (await bob.GetVFolder(pb.GetVFolderRequest(vfolder_ref="papers"))).vfolder
    assert seen.access_permission == RO and not seen.is_owner and seen.file_count == 1
    assert await names(bob, "papers") == ["a.txt"]
    await expect(grpc.StatusCode.PERMISSION_DENIED, bob.MakeDirectory(
        pb.MakeDirectoryRequest(vfolder_ref="papers", path="d")), "VFOLDER_READ_ONLY")
    await expect(grpc.StatusCode.PERMISSION_DENIED, bob.DeleteVFolder(
        pb.DeleteVFolderRequest(vfolder_ref="papers")))
    await expect(grpc.StatusCode.PERMISSION_DENIED, bob.InviteToVFolder(
        pb.InviteToVFolderRequest(vfolder_ref="papers", emails=["carol@localhost"])))

    # a direct share overrides the permission; unshare takes it away
    shared = await owner.ShareVFolder(pb.ShareVFolderRequest(
        vfolder_ref="papers", permission=RW, emails=["bob@localhost", "carol@localhost"]))
    assert sorted(shared.shared_emails) == ["bob@localhost", "carol@localhost"]
    await bob.MakeDirectory(pb.MakeDirectoryRequest(vfolder_ref="papers", path="bobs"))
    shares = (await owner.ListVFolderShares(pb.ListVFolderSharesRequest(
        vfolder_ref="papers"))).shares
    assert [(x.email, x.permission) for x in shares] == [("bob@localhost", RW),
                                                         ("carol@localhost", RW)]
    await expect(grpc.StatusCode.PERMISSION_DENIED, bob.ListVFolderShares(
        pb.ListVFolderSharesRequest(vfolder_ref="papers")))
    gone = await owner.UnshareVFolder(pb.UnshareVFolderRequest(
        vfolder_ref="papers", emails=["carol@localhost", "nobody@localhost"]))
    assert list(gone.unshared_emails) == ["carol@localhost"]
    await expect(grpc.StatusCode.NOT_FOUND, carol.ListFiles(
        pb.ListFilesRequest(vfolder_ref="papers")))
    await bob.LeaveVFolder(pb.LeaveVFolderRequest(vfolder_ref="papers"))
    assert (await bob.ListVFolders(pb.ListVFoldersRequest())).vfolders == []
    await expect(grpc.StatusCode.FAILED_PRECONDITION, owner.LeaveVFolder(
        pb.LeaveVFolderRequest(vfolder_ref="papers")), "VFOLDER_NOT_SHARED")

    # reject and withdraw; accepting into a name the invitee already uses is a collision
    await owner.InviteToVFolder(pb.InviteToVFolderRequest(
        vfolder_ref="papers", emails=["bob@localhost", "carol@localhost"]))
    bobs = (await bob.ListInvitations(pb.ListInvitationsRequest())).invitations
    rejected = (await bob.RejectInvitation(pb.RejectInvitationRequest(
        invitation_id=bobs[0].id))).invitation
    assert rejected.state == "rejected"
    await carol.CreateVFolder(pb.CreateVFolderRequest(name="papers"))
    carols = (await carol.ListInvitations(pb.ListInvitationsRequest())).invitations
    await expect(grpc.StatusCode.ALREADY_EXISTS, carol.AcceptInvitation(
        pb.AcceptInvitationRequest(invitation_id=carols[0].id)), "VFOLDER_ALREADY_EXISTS")
    withdrawn = (await owner.RejectInvitation(pb.RejectInvitationRequest(
        invitation_id=carols[0].id))).invitation
    assert withdrawn.state == "canceled"
    assert (await carol.ListInvitations(pb.ListInvitationsRequest())).invitations == []


async def test_shared_folders_mount_with_the_shared_permission(vstack: VStack) -> None:
    agent = await vstack.h.agent().start()
    try:
        owner = vstack.stub()
        bob_keys = await vstack.user("bob@localhost")
        await owner.CreateVFolder(pb.CreateVFolderRequest(name="ds"))
        await owner.ShareVFolder(pb.ShareVFolderRequest(
            vfolder_ref="ds", permission=RO, emails=["bob@localhost"]))
        sessions = vstack.h.sessions(bob_keys)
        await sessions.CreateSession(spb.CreateSessionRequest(
            name="bob-ro", image="python", resources={"cpu": "1", "mem": "256m"},
            mounts=[spb.VFolderMountRequest(vfolder_ref="ds")]))
        (mount,) = agent.last_create.mounts
        assert mount.container_path == "/home/work/ds" and mount.read_only
        await owner.ShareVFolder(pb.ShareVFolderRequest(
            vfolder_ref="ds", permission=RW, emails=["bob@localhost"]))
        await sessions.CreateSession(spb.CreateSessionRequest(
            name="bob-rw", image="python", resources={"cpu": "1", "mem": "256m"},
            mounts=[spb.VFolderMountRequest(vfolder_ref="ds")]))
        (mount,) = agent.last_create.mounts
        assert not mount.read_only
    finally:
        await agent.stop()


async def test_trash_restore_purge_and_name_collisions(vstack: VStack) -> None:
    s = vstack.stub()
    first = (await s.CreateVFolder(pb.CreateVFolderRequest(name="proj"))).vfolder
    await upload(s, "proj", "keep.txt", b"kept in the trash")
    await s.DeleteVFolder(pb.DeleteVFolderRequest(vfolder_ref="proj"))
    trash = (await s.ListTrashedVFolders(pb.ListTrashedVFoldersRequest())).vfolders
    assert [(f.id, f.status) for f in trash] == [(first.id, "delete-pending")]
    assert trash[0].HasField("delete_time")
    assert (await s.ListVFolders(pb.ListVFoldersRequest())).vfolders == []
    await expect(grpc.StatusCode.NOT_FOUND, s.PurgeVFolder(
        pb.PurgeVFolderRequest(vfolder_ref="nope")))

    second = (await s.CreateVFolder(pb.CreateVFolderRequest(name="proj"))).vfolder
    await expect(grpc.StatusCode.ALREADY_EXISTS, s.RestoreVFolder(
        pb.RestoreVFolderRequest(vfolder_ref=first.id)), "VFOLDER_ALREADY_EXISTS")
    await expect(grpc.StatusCode.NOT_FOUND, s.RestoreVFolder(
        pb.RestoreVFolderRequest(vfolder_ref=second.id)))  # live: not in the trash
    await s.RenameVFolder(pb.RenameVFolderRequest(vfolder_ref="proj", new_name="proj2"))
    restored = (await s.RestoreVFolder(pb.RestoreVFolderRequest(vfolder_ref="proj"))).vfolder
    assert restored.id == first.id and restored.status == "ready"
    assert await names(s, "proj") == ["keep.txt"]  # contents survived the trash

    await s.DeleteVFolder(pb.DeleteVFolderRequest(vfolder_ref="proj2"))
    folder_dirs = {p.name for p in vstack.volume_dir.rglob("*") if p.is_dir()}
    assert any(uuid.UUID(second.id).hex[4:] in d for d in folder_dirs)
    await s.PurgeVFolder(pb.PurgeVFolderRequest(vfolder_ref="proj2"))
    assert (await s.ListTrashedVFolders(pb.ListTrashedVFoldersRequest())).vfolders == []
    folder_dirs = {p.name for p in vstack.volume_dir.rglob("*") if p.is_dir()}
    assert not any(uuid.UUID(second.id).hex[4:] in d for d in folder_dirs)
    await expect(grpc.StatusCode.NOT_FOUND, s.RestoreVFolder(
        pb.RestoreVFolderRequest(vfolder_ref=second.id)))
    # someone else cannot restore or purge it
    other = vstack.stub(await vstack.user("eve@localhost"))
    await s.ShareVFolder(pb.ShareVFolderRequest(vfolder_ref="proj", permission=WD,
                                                emails=["eve@localhost"]))
    await s.DeleteVFolder(pb.DeleteVFolderRequest(vfolder_ref="proj"))
    assert (await other.ListTrashedVFolders(pb.ListTrashedVFoldersRequest())).vfolders == []
    await expect(grpc.StatusCode.PERMISSION_DENIED, other.PurgeVFolder(
        pb.PurgeVFolderRequest(vfolder_ref=first.id)), "VFOLDER_PERMISSION_DENIED")
    await expect(grpc.StatusCode.PERMISSION_DENIED, other.RestoreVFolder(
        pb.RestoreVFolderRequest(vfolder_ref=first.id)))


async def test_clone_copies_contents_when_allowed(vstack: VStack) -> None:
    owner = vstack.stub()
    bob = vstack.stub(await vstack.user("bob@localhost"))
    await owner.CreateVFolder(pb.CreateVFolderRequest(name="src"))
    await owner.MakeDirectory(pb.MakeDirectoryRequest(vfolder_ref="src", path="sub"))
    await upload(owner, "src", "sub/f.bin", b"x" * 1000)
    copy = (await owner.CloneVFolder(pb.CloneVFolderRequest(
        vfolder_ref="src", target_name="copy", usage_mode="model"))).vfolder
    assert copy.usage_mode == "model" and copy.is_owner
    assert await names(owner, "copy", "sub") == ["f.bin"]
    await expect(grpc.StatusCode.ALREADY_EXISTS, owner.CloneVFolder(
        pb.CloneVFolderRequest(vfolder_ref="src", target_name="copy")))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, owner.CloneVFolder(
        pb.CloneVFolderRequest(vfolder_ref="src", target_name="c2", target_volume="elsewhere")),
        "CROSS_VOLUME_CLONE")

    await owner.ShareVFolder(pb.ShareVFolderRequest(
        vfolder_ref="src", permission=RO, emails=["bob@localhost"]))
    await expect(grpc.StatusCode.FAILED_PRECONDITION, bob.CloneVFolder(
        pb.CloneVFolderRequest(vfolder_ref="src", target_name="mine")), "VFOLDER_NOT_CLONEABLE")
    opts = (await owner.UpdateVFolderOptions(pb.UpdateVFolderOptionsRequest(
        vfolder_ref="src", cloneable=True))).vfolder
    assert opts.cloneable and opts.permission == RW
    mine = (await bob.CloneVFolder(pb.CloneVFolderRequest(
        vfolder_ref="src", target_name="mine"))).vfolder
    assert mine.access_permission == RW and mine.is_owner
    await bob.MakeDirectory(pb.MakeDirectoryRequest(vfolder_ref="mine", path="extra"))
    assert await names(owner, "src") == ["sub"]  # the source is untouched


async def test_folder_and_scope_quotas(vstack: VStack) -> None:
    s = vstack.stub()
    small = (await s.CreateVFolder(pb.CreateVFolderRequest(name="small",
                                                           quota_bytes=10))).vfolder
    assert small.quota_bytes == 10
    await upload(s, "small", "six", b"123456")
    await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, s.CreateUploadToken(
        pb.CreateUploadTokenRequest(vfolder_ref="small", path="five", size_bytes=5)),
        "QUOTA_EXCEEDED")
    raised = (await s.SetVFolderQuota(pb.SetVFolderQuotaRequest(
        vfolder_ref="small", quota_bytes=100))).vfolder
    assert raised.quota_bytes == 100
    await upload(s, "small", "five", b"12345")

    user_scope = pb.QUOTA_SCOPE_TYPE_USER
    await expect(grpc.StatusCode.PERMISSION_DENIED, s.SetQuotaScope(pb.SetQuotaScopeRequest(
        scope_type=user_scope, scope_ref="user@localhost", max_bytes=20)))
    admin = vstack.stub(vstack.h.admin)
    await expect(grpc.StatusCode.INVALID_ARGUMENT, admin.SetQuotaScope(
        pb.SetQuotaScopeRequest(scope_ref="user@localhost", max_bytes=20)))
    scope = (await admin.SetQuotaScope(pb.SetQuotaScopeRequest(
        scope_type=user_scope, scope_ref="user@localhost", max_bytes=20))).quota_scope
    assert (scope.max_bytes, scope.used_bytes, scope.vfolder_count) == (20, 11, 1)
    mine = (await s.GetQuotaScope(pb.GetQuotaScopeRequest())).quota_scope
    assert (mine.max_bytes, mine.used_bytes) == (20, 11)
    await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, s.CreateUploadToken(
        pb.CreateUploadTokenRequest(vfolder_ref="small", path="big", size_bytes=10)))
    await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, s.CreateVFolder(
        pb.CreateVFolderRequest(name="too-big", quota_bytes=21)))
    await s.CreateVFolder(pb.CreateVFolderRequest(name="second"))
    await upload(s, "second", "nine", b"123456789")  # 11 + 9 = 20: exactly the limit
    await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, s.CreateVFolder(
        pb.CreateVFolderRequest(name="third")), "QUOTA_EXCEEDED")
    # the trash still counts; purging frees the space
    await s.DeleteVFolder(pb.DeleteVFolderRequest(vfolder_ref="second"))
    await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, s.CreateVFolder(
        pb.CreateVFolderRequest(name="third")))
    await s.PurgeVFolder(pb.PurgeVFolderRequest(vfolder_ref="second"))
    await s.CreateVFolder(pb.CreateVFolderRequest(name="third"))
    other = vstack.stub(await vstack.user("eve@localhost"))
    await expect(grpc.StatusCode.PERMISSION_DENIED, other.GetQuotaScope(
        pb.GetQuotaScopeRequest(scope_type=user_scope, scope_ref="user@localhost")))


async def test_move_rename_and_delete_files(vstack: VStack) -> None:
    s = vstack.stub()
    await s.CreateVFolder(pb.CreateVFolderRequest(name="w"))
    await s.MakeDirectory(pb.MakeDirectoryRequest(vfolder_ref="w", path="d/e", parents=True))
    await upload(s, "w", "d/e/f.txt", b"f")
    moved = (await s.MoveFile(pb.MoveFileRequest(vfolder_ref="w", src_path="d/e/f.txt",
                                                 dst_path="g.txt"))).file
    assert moved.path == "g.txt" and moved.type == "file"
    await expect(grpc.StatusCode.INVALID_ARGUMENT, s.MoveFile(pb.MoveFileRequest(
        vfolder_ref="w", src_path="g.txt", dst_path="../escape.txt")))
    await expect(grpc.StatusCode.ALREADY_EXISTS, s.MoveFile(pb.MoveFileRequest(
        vfolder_ref="w", src_path="g.txt", dst_path="d")))
    await expect(grpc.StatusCode.FAILED_PRECONDITION, s.DeleteFiles(pb.DeleteFilesRequest(
        vfolder_ref="w", paths=["d"])))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, s.DeleteFiles(pb.DeleteFilesRequest(
        vfolder_ref="w", paths=["."])))
    await s.DeleteFiles(pb.DeleteFilesRequest(vfolder_ref="w", paths=["d", "g.txt"],
                                              recursive=True))
    assert await names(s, "w") == []

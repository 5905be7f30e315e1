"""``bai vfolder ...`` for the vfolder model: sharing and invitations, trash, clone, rename,
file moves and deletes, options and quotas. Registered by :mod:`bai.client.vfolder_cmd`."""

from __future__ import annotations

import argparse
from typing import Any

from bai.client.client import ManagerClient
from bai.client.output import Printer, message_json
from bai.common import errors
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from google.protobuf.message import Message

__all__ = ["PERMISSIONS", "PERMISSION_NAMES", "add_model_commands"]

_SERVICE = "/bai.manager.v1.VFolderService/"
PERMISSIONS = {"ro": pb.FOLDER_PERMISSION_READ_ONLY, "rw": pb.FOLDER_PERMISSION_READ_WRITE,
               "wd": pb.FOLDER_PERMISSION_READ_WRITE_DELETE}
PERMISSION_NAMES = {v: k for k, v in PERMISSIONS.items()}
_SCOPES = {"user": pb.QUOTA_SCOPE_TYPE_USER, "project": pb.QUOTA_SCOPE_TYPE_PROJECT}


async def _call(client: ManagerClient, method: str, request: Message, response: type[Any]) -> Any:
    return await client.call(_SERVICE + method, request, response)


def _done(out: Printer, text: str, value: dict[str, Any]) -> int:
    if out.as_json:
        out.json(value)
    else:
        out.line(text)
    return 0


def _folder_done(out: Printer, text: str, folder: pb.VFolder) -> int:
    if out.as_json:
        out.json(message_json(folder))
    else:
        out.line(text)
    return 0


async def _invite(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    resp = await _call(client, "InviteToVFolder", pb.InviteToVFolderRequest(
        vfolder_ref=args.ref, permission=PERMISSIONS[args.permission], emails=args.emails),
        pb.InviteToVFolderResponse)
    invited = list(resp.invited_emails)
    text = ("invited " + ", ".join(invited)) if invited else "nobody invited (unknown emails, " \
        "or already invited or sharing)"
    return _done(out, text, {"invited": invited})


async def _invitations(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    resp = await _call(client, "ListInvitations", pb.ListInvitationsRequest(),
                       pb.ListInvitationsResponse)
    if out.as_json:
        out.json({"invitations": [message_json(i) for i in resp.invitations]})
        return 0
    out.table(("ID", "VFOLDER", "FROM", "PERM"), [
        (i.id, i.vfolder_name, i.inviter_email, PERMISSION_NAMES.get(i.permission, "?"))
        for i in resp.invitations])
    return 0


async def _accept(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    inv = (await _call(client, "AcceptInvitation", pb.AcceptInvitationRequest(
        invitation_id=args.invitation_id), pb.AcceptInvitationResponse)).invitation
    return _done(out, f'accepted: vfolder "{inv.vfolder_name}" is now shared with you',
                 message_json(inv))


async def _reject(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    inv = (await _call(client, "RejectInvitation", pb.RejectInvitationRequest(
        invitation_id=args.invitation_id), pb.RejectInvitationResponse)).invitation
    return _done(out, f'invitation to "{inv.vfolder_name}" {inv.state}', message_json(inv))


async def _share(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    resp = await _call(client, "ShareVFolder", pb.ShareVFolderRequest(
        vfolder_ref=args.ref, permission=PERMISSIONS[args.permission], emails=args.emails),
        pb.ShareVFolderResponse)
    shared = list(resp.shared_emails)
    text = (f"shared ({args.permission}) with " + ", ".join(shared)) if shared \
        else "nobody found: not shared"
    return _done(out, text, {"shared": shared, "permission": args.permission})


async def _unshare(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    resp = await _call(client, "UnshareVFolder", pb.UnshareVFolderRequest(
        vfolder_ref=args.ref, emails=args.emails), pb.UnshareVFolderResponse)
    removed = list(resp.unshared_emails)
    return _done(out, "unshared from " + (", ".join(removed) or "nobody"),
                 {"unshared": removed})


async def _shares(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    resp = await _call(client, "ListVFolderShares", pb.ListVFolderSharesRequest(
        vfolder_ref=args.ref), pb.ListVFolderSharesResponse)
    if out.as_json:
        out.json({"shares": [message_json(s) for s in resp.shares]})
        return 0
    out.table(("EMAIL", "PERM"), [(s.email, PERMISSION_NAMES.get(s.permission, "?"))
                                  for s in resp.shares])
    return 0


async def _leave(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    await _call(client, "LeaveVFolder", pb.LeaveVFolderRequest(vfolder_ref=args.ref),
                pb.LeaveVFolderResponse)
    return _done(out, f'left vfolder "{args.ref}"', {"left": args.ref})


async def _clone(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    folder = (await _call(client, "CloneVFolder", pb.CloneVFolderRequest(
        vfolder_ref=args.ref, target_name=args.target, target_volume=args.volume or "",
        permission=PERMISSIONS[args.permission], usage_mode=args.usage_mode or ""),
        pb.CloneVFolderResponse)).vfolder
    return _folder_done(out, f'cloned "{args.ref}" into "{folder.name}" (id {folder.id})',
                        folder)


async def _trash(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    resp = await _call(client, "ListTrashedVFolders", pb.ListTrashedVFoldersRequest(),
                       pb.ListTrashedVFoldersResponse)
    if out.as_json:
        out.json({"vfolders": [message_json(f) for f in resp.vfolders]})
        return 0
    out.table(("NAME", "ID", "VOLUME", "DELETED"), [
        (f.name, f.id, f.volume, f.delete_time.ToDatetime().isoformat(timespec="seconds")
         if f.HasField("delete_time") else "") for f in resp.vfolders])
    return 0


async def _restore(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    folder = (await _call(client, "RestoreVFolder", pb.RestoreVFolderRequest(
        vfolder_ref=args.ref), pb.RestoreVFolderResponse)).vfolder
    return _folder_done(out, f'vfolder "{folder.name}" restored', folder)


async def _purge(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    await _call(client, "PurgeVFolder", pb.PurgeVFolderRequest(vfolder_ref=args.ref),
                pb.PurgeVFolderResponse)
    return _done(out, f'vfolder "{args.ref}" purged', {"purged": args.ref})


async def _rename(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    folder = (await _call(client, "RenameVFolder", pb.RenameVFolderRequest(
        vfolder_ref=args.ref, new_name=args.new_name), pb.RenameVFolderResponse)).vfolder
    return _folder_done(out, f'vfolder "{args.ref}" renamed to "{folder.name}"', folder)


async def _mv(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    entry = (await _call(client, "MoveFile", pb.MoveFileRequest(
        vfolder_ref=args.ref, src_path=args.src, dst_path=args.dst), pb.MoveFileResponse)).file
    if out.as_json:
        out.json(message_json(entry))
    else:
        out.line(f"moved {args.src} to {entry.path}")
    return 0


async def _rm(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    await _call(client, "DeleteFiles", pb.DeleteFilesRequest(
        vfolder_ref=args.ref, paths=args.paths, recursive=args.recursive),
        pb.DeleteFilesResponse)
    return _done(out, f"deleted {len(args.paths)} path(s)", {"deleted": args.paths})


async def _options(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.UpdateVFolderOptionsRequest(vfolder_ref=args.ref)
    if args.permission:
        request.permission = PERMISSIONS[args.permission]
    if args.cloneable is not None:
        request.cloneable = args.cloneable
    folder = (await _call(client, "UpdateVFolderOptions", request,
                          pb.UpdateVFolderOptionsResponse)).vfolder
    return _folder_done(out, f'vfolder "{folder.name}": permission '
                        f'{PERMISSION_NAMES.get(folder.permission, "?")}, cloneable '
                        f'{"yes" if folder.cloneable else "no"}', folder)


async def _quota(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    if args.bytes is None:
        folder = (await _call(client, "GetVFolder", pb.GetVFolderRequest(vfolder_ref=args.ref),
                              pb.GetVFolderResponse)).vfolder
    else:
        folder = (await _call(client, "SetVFolderQuota", pb.SetVFolderQuotaRequest(
            vfolder_ref=args.ref, quota_bytes=args.bytes), pb.SetVFolderQuotaResponse)).vfolder
    limit = str(folder.quota_bytes) if folder.quota_bytes else "none"
    return _folder_done(out, f'vfolder "{folder.name}": quota {limit} bytes, '
                        f'{folder.used_bytes} used', folder)


async def _scope_quota(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    scope_type = _SCOPES[args.scope]
    if args.set is None:
        scope = (await _call(client, "GetQuotaScope", pb.GetQuotaScopeRequest(
            scope_type=scope_type, scope_ref=args.ref or ""), pb.GetQuotaScopeResponse))
    else:
        if not args.ref:
            raise errors.InvalidArgument("--set needs the user's email or the project's name")
        scope = (await _call(client, "SetQuotaScope", pb.SetQuotaScopeRequest(
            scope_type=scope_type, scope_ref=args.ref, max_bytes=args.set),
            pb.SetQuotaScopeResponse))
    q = scope.quota_scope
    if out.as_json:
        out.json(message_json(q))
    else:
        out.line(f"{args.scope} {q.scope_id}: {q.used_bytes} bytes in {q.vfolder_count} "
                 f"vfolder(s), quota {q.max_bytes or 'none'}")
    return 0


def add_model_commands(cmds: Any, common: argparse.ArgumentParser) -> None:
    """Registers the commands on ``bai vfolder``'s subparsers."""

    def command(name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = cmds.add_parser(name, help=help, parents=[common])
        parser.set_defaults(handler=handler)
        return parser

    def folder(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("ref", metavar="NAME|ID")
        return parser

    def permission(parser: argparse.ArgumentParser, default: str | None = "rw") -> None:
        parser.add_argument("--permission", "--perm", "-p", choices=tuple(PERMISSIONS),
                            default=default)

    invite = folder(command("invite", "invite users (by email) to your vfolder", _invite))
    invite.add_argument("emails", metavar="EMAIL", nargs="+")
    permission(invite)
    command("invitations", "list the invitations sent to you", _invitations)
    for name, help_, handler in (("accept", "accept an invitation", _accept),
                                 ("reject", "reject (or withdraw) an invitation", _reject)):
        command(name, help_, handler).add_argument("invitation_id", metavar="INVITATION_ID")
    share = folder(command("share", "share a vfolder with users, by email", _share))
    share.add_argument("emails", metavar="EMAIL", nargs="+")
    permission(share)
    unshare = folder(command("unshare", "withdraw shares, by email", _unshare))
    unshare.add_argument("emails", metavar="EMAIL", nargs="+")
    folder(command("shares", "list who a vfolder is shared with", _shares))
    folder(command("leave", "give up a vfolder shared with you", _leave))
    clone = folder(command("clone", "copy a vfolder into a new one of yours", _clone))
    clone.add_argument("target", metavar="TARGET_NAME")
    clone.add_argument("--volume", "--host", metavar="VOLUME", help="must be the source's")
    clone.add_argument("--usage-mode", choices=("general", "model", "data"))
    permission(clone)
    command("trash", "list your trashed vfolders", _trash)
    folder(command("restore", "bring a vfolder back from the trash", _restore))
    folder(command("purge", "delete a trashed vfolder for good", _purge))
    folder(command("rename", "rename a vfolder", _rename)).add_argument(
        "new_name", metavar="NEW_NAME")
    mv = folder(command("mv", "move or rename a file or directory in a vfolder", _mv))
    mv.add_argument("src", metavar="SRC")
    mv.add_argument("dst", metavar="DST")
    rm = folder(command("rm", "delete files or directories in a vfolder", _rm))
    rm.add_argument("paths", metavar="PATH", nargs="+")
    rm.add_argument("--recursive", "-r", action="store_true", help="delete directories too")
    options = folder(command("update-options", "change permission or cloneable", _options))
    permission(options, None)
    options.add_argument("--cloneable", action=argparse.BooleanOptionalAction, default=None)
    quota = folder(command("quota", "show or set a vfolder's quota", _quota))
    quota.add_argument("bytes", metavar="BYTES", type=int, nargs="?",
                       help="new quota in bytes (0 removes it)")
    scope = command("scope-quota", "show or set the total quota of a user's or a project's "
                    "vfolders", _scope_quota)
    scope.add_argument("scope", choices=tuple(_SCOPES))
    scope.add_argument("ref", metavar="EMAIL|PROJECT", nargs="?",
                       help="default: yourself")
    scope.add_argument("--set", metavar="BYTES", type=int, help="new limit (0 removes it)")

"""``bai vfolder ...``: virtual folders (VFolderService) and file transfers with progress bars.

File bytes go straight to the storage proxy's transfer endpoint with a token from the manager:
uploads as tus.io PATCHes of 16 MiB (resumed from the proxy's offset after a failure),
downloads as one streamed GET.
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from bai.client.client import ManagerClient
from bai.client.output import Printer, message_json
from bai.client.vfolder_share_cmd import PERMISSION_NAMES, PERMISSIONS, add_model_commands
from bai.common import errors
from bai.pb.manager.v1 import vfolder_service_pb2 as pb
from google.protobuf.message import Message
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["add_vfolder_commands"]

_SERVICE = "/bai.manager.v1.VFolderService/"
_CHUNK = 16 << 20
_TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


async def _call(client: ManagerClient, method: str, request: Message, response: type[Any]) -> Any:
    return await client.call(_SERVICE + method, request, response)


def _progress(out: Printer) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(),
                    console=out.console, disable=out.as_json, transient=False)


def _folder_rows(folders: list[pb.VFolder]) -> list[tuple[str, ...]]:
    return [(f.name, f.id, f.volume,
             PERMISSION_NAMES.get(f.access_permission or f.permission, "?"), f.usage_mode,
             f.project_name or ("me" if f.is_owner else f.creator_email),
             "yes" if f.mountable else "no") for f in folders]


async def _create(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.CreateVFolderRequest(name=args.name, volume=args.volume or "",
                                      permission=PERMISSIONS[args.permission],
                                      usage_mode=args.usage_mode, project=args.project or "",
                                      quota_bytes=args.quota, cloneable=args.cloneable)
    folder = (await _call(client, "CreateVFolder", request, pb.CreateVFolderResponse)).vfolder
    if out.as_json:
        out.json(message_json(folder))
    else:
        out.line(f'vfolder "{folder.name}" created (id {folder.id}, volume {folder.volume})')
    return 0


async def _list(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.ListVFoldersRequest(project_id=args.project_id or "")
    resp = await _call(client, "ListVFolders", request, pb.ListVFoldersResponse)
    if out.as_json:
        out.json({"vfolders": [message_json(f) for f in resp.vfolders]})
    else:
        out.table(("NAME", "ID", "VOLUME", "PERM", "USAGE", "OWNER", "MOUNTABLE"),
                  _folder_rows(list(resp.vfolders)))
    return 0


async def _info(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.GetVFolderRequest(vfolder_ref=args.ref)
    folder = (await _call(client, "GetVFolder", request, pb.GetVFolderResponse)).vfolder
    if out.as_json:
        out.json(message_json(folder))
        return 0
    out.table(("FIELD", "VALUE"), [
        ("name", folder.name), ("id", folder.id), ("volume", folder.volume),
        ("permission", PERMISSION_NAMES.get(folder.permission, "?")),
        ("your permission", PERMISSION_NAMES.get(folder.access_permission, "?")),
        ("owner", (folder.project_name and f"project {folder.project_name}")
         or folder.creator_email),
        ("cloneable", "yes" if folder.cloneable else "no"),
        ("quota", str(folder.quota_bytes) if folder.quota_bytes else "none"),
        ("usage mode", folder.usage_mode), ("status", folder.status),
        ("mountable", "yes" if folder.mountable else "no"),
        ("files", str(folder.file_count)), ("bytes", str(folder.used_bytes))])
    return 0


async def _delete(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    await _call(client, "DeleteVFolder", pb.DeleteVFolderRequest(vfolder_ref=args.ref),
                pb.DeleteVFolderResponse)
    if out.as_json:
        out.json({"trashed": args.ref})
    else:
        out.line(f'vfolder "{args.ref}" deleted (moved to the trash: restore or purge it there)')
    return 0


async def _ls(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.ListFilesRequest(vfolder_ref=args.ref, path=args.path)
    files = (await _call(client, "ListFiles", request, pb.ListFilesResponse)).files
    if out.as_json:
        out.json({"files": [message_json(f) for f in files]})
        return 0
    kinds = {"directory": stat.S_IFDIR, "symlink": stat.S_IFLNK}
    out.table(("NAME", "SIZE", "MODIFIED", "MODE"), [
        (f.name, str(f.size_bytes),
         f.modify_time.ToDatetime().isoformat(timespec="seconds") if f.HasField("modify_time")
         else "", stat.filemode(kinds.get(f.type, stat.S_IFREG) | f.mode)) for f in files])
    return 0


async def _mkdir(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.MakeDirectoryRequest(vfolder_ref=args.ref, path=args.path,
                                      parents=args.parents, exist_ok=args.parents)
    entry = (await _call(client, "MakeDirectory", request, pb.MakeDirectoryResponse)).file
    if out.as_json:
        out.json(message_json(entry))
    else:
        out.line(f"created directory {entry.path}")
    return 0


def _transfer_error(response: httpx.Response) -> errors.BaiError:
    try:
        body = response.json()
        message = str(body.get("msg") or body.get("title") or response.text)
    except ValueError:
        message = response.text or response.reason_phrase
    cls = {401: errors.Unauthenticated, 404: errors.NotFound, 400: errors.InvalidArgument,
           409: errors.FailedPrecondition}.get(response.status_code, errors.Unavailable)
    return cls(f"storage proxy answered {response.status_code}: {message}",
               reason="TRANSFER_FAILED")


async def _upload_one(client: ManagerClient, http: httpx.AsyncClient, ref: str, local: Path,
                      size: int, remote: str, advance: Callable[[int], None]) -> None:
    request = pb.CreateUploadTokenRequest(vfolder_ref=ref, path=remote, size_bytes=size)
    grant = (await _call(client, "CreateUploadToken", request, pb.CreateUploadTokenResponse)).grant
    params = {"token": grant.token}
    offset, retries = 0, 0
    with local.open("rb") as f:
        while offset < size:
            f.seek(offset)
            chunk = f.read(_CHUNK)
            try:
                r = await http.patch(grant.url, params=params, content=chunk,
                                     headers={**_TUS, "Upload-Offset": str(offset)})
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 204:
                new = int(r.headers.get("Upload-Offset", offset + len(chunk)))
                advance(new - offset)
                offset, retries = new, 0
                continue
            if r is not None and r.status_code not in (409, 500, 502, 503):
                raise _transfer_error(r)
            retries += 1
            if retries > 5:
                raise errors.Unavailable(f"upload of {local} failed after 5 retries",
                                         reason="TRANSFER_FAILED")
            head = await http.head(grant.url, params=params, headers=_TUS)  # resume point
            if head.status_code != 200:
                raise _transfer_error(head)
            new = int(head.headers.get("Upload-Offset", offset))
            advance(new - offset)
            offset = new


def _collect(names: list[str], dest: str) -> list[tuple[Path, int, str]]:
    """(local file, size, path in the vfolder) of every file to upload."""
    files: list[tuple[Path, int, str]] = []
    for name in names:
        local = Path(name)
        if local.is_dir():
            for root, _, entries in os.walk(local):
                for n in sorted(entries):
                    path = Path(root) / n
                    remote = Path(dest) / local.absolute().name / path.relative_to(local)
                    files.append((path, path.stat().st_size, str(remote)))
        elif local.is_file():
            files.append((local, local.stat().st_size, str(Path(dest) / local.name)))
        else:
            raise errors.InvalidArgument(f"{name}: no such file or directory")
    return files


async def _upload(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    files = _collect(args.files, args.dest)
    total = sum(size for _, size, _ in files)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as http:
        with _progress(out) as progress:
            task = progress.add_task("upload", total=total)
            for local, size, remote in files:
                progress.update(task, description=f"upload {local.name}")
                await _upload_one(client, http, args.ref, local, size, remote,
                                  lambda n: progress.advance(task, n))
    if out.as_json:
        out.json({"uploaded": [r for _, _, r in files], "bytes": total})
    else:
        out.line(f"uploaded {len(files)} file(s), {total} bytes")
    return 0


def _target(dest: str | None, path: str) -> Path:
    target = Path(dest or Path(path).name)
    return target / Path(path).name if target.is_dir() else target


async def _download(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    target = _target(args.dest, args.path)
    request = pb.CreateDownloadTokenRequest(vfolder_ref=args.ref, path=args.path)
    grant = (await _call(client, "CreateDownloadToken", request,
                         pb.CreateDownloadTokenResponse)).grant
    partial = target.with_name(target.name + ".part")
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as http:
        async with http.stream("GET", grant.url, params={"token": grant.token}) as r:
            if r.status_code != 200:
                await r.aread()
                raise _transfer_error(r)
            size = int(r.headers.get("Content-Length", 0)) or None
            done = 0
            with _progress(out) as progress, partial.open("wb") as f:
                task = progress.add_task(f"download {target.name}", total=size)
                async for chunk in r.aiter_bytes(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    progress.advance(task, len(chunk))
    partial.replace(target)
    if out.as_json:
        out.json({"downloaded": str(target), "bytes": done})
    else:
        out.line(f"downloaded {args.path} to {target} ({done} bytes)")
    return 0


def add_vfolder_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Registers ``bai vfolder ...`` on the top-level subparsers."""
    vfolder = commands.add_parser("vfolder", help="virtual folders", parents=[common])
    cmds = vfolder.add_subparsers(dest="vfolder_command", metavar="ACTION", required=True)

    create = cmds.add_parser("create", help="create a vfolder", parents=[common])
    create.add_argument("name", metavar="NAME")
    create.add_argument("--volume", "--host", metavar="VOLUME", help="storage volume")
    create.add_argument("--permission", "-p", choices=("ro", "rw", "wd"), default="rw")
    create.add_argument("--usage-mode", choices=("general", "model", "data"), default="general")
    create.add_argument("--project", "--group", metavar="PROJECT",
                        help="create a project folder (project admins only)")
    create.add_argument("--quota", type=int, default=0, metavar="BYTES",
                        help="quota of this folder in bytes")
    create.add_argument("--cloneable", action="store_true", help="let others clone it")
    create.set_defaults(handler=_create)

    listing = cmds.add_parser("list", help="list the vfolders you can use", parents=[common])
    listing.add_argument("--project-id", metavar="UUID", help="only this project's folders")
    listing.set_defaults(handler=_list)

    info = cmds.add_parser("info", help="show one vfolder", parents=[common])
    info.add_argument("ref", metavar="NAME|ID")
    info.set_defaults(handler=_info)

    ls = cmds.add_parser("ls", help="list a directory of a vfolder", parents=[common])
    ls.add_argument("ref", metavar="NAME|ID")
    ls.add_argument("path", metavar="PATH", nargs="?", default="")
    ls.set_defaults(handler=_ls)

    mkdir = cmds.add_parser("mkdir", help="create a directory", parents=[common])
    mkdir.add_argument("ref", metavar="NAME|ID")
    mkdir.add_argument("path", metavar="PATH")
    mkdir.add_argument("--parents", "-p", action="store_true", help="create parents too")
    mkdir.set_defaults(handler=_mkdir)

    upload = cmds.add_parser("upload", help="upload files or directories", parents=[common])
    upload.add_argument("ref", metavar="NAME|ID")
    upload.add_argument("files", metavar="FILE", nargs="+")
    upload.add_argument("--dest", default="", metavar="DIR", help="directory in the vfolder")
    upload.set_defaults(handler=_upload)

    download = cmds.add_parser("download", help="download one file", parents=[common])
    download.add_argument("ref", metavar="NAME|ID")
    download.add_argument("path", metavar="PATH")
    download.add_argument("dest", metavar="DEST", nargs="?", help="local file or directory")
    download.set_defaults(handler=_download)

    delete = cmds.add_parser("delete", help="move a vfolder to the trash", parents=[common])
    delete.add_argument("ref", metavar="NAME|ID")
    delete.set_defaults(handler=_delete)

    add_model_commands(cmds, common)

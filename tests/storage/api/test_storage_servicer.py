"""StorageService over a real grpc.aio server on 127.0.0.1:0, on an fs volume."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from bai.common.rpc import SERVICE_TOKEN_KEY
from bai.pb.storage.v1 import storage_pb2
from bai.pb.storage.v1 import storage_service_pb2 as pb
from bai.pb.storage.v1 import storage_service_pb2_grpc as pb_grpc
from bai.storage.config import StorageConfig, VolumeConfig
from bai.storage.server import RunningProxy, running_proxy
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

TOKEN = "storage-test-token"
MD = ((SERVICE_TOKEN_KEY, TOKEN),)
T = 10  # seconds: every call has a deadline


@pytest.fixture(scope="module")
async def proxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningProxy]:
    root = tmp_path_factory.mktemp("grpc-vol")
    config = StorageConfig(
        service_token=TOKEN,
        listen="127.0.0.1:0",
        transfer_listen="127.0.0.1:0",
        transfer_secret="secret",
        volumes=(VolumeConfig("local", "fs", {"path": str(root)}),),
    )
    async with running_proxy(config) as running:
        yield running


@pytest.fixture(scope="module")
async def stub(proxy: RunningProxy) -> AsyncIterator[pb_grpc.StorageServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.grpc_port}") as channel:
        yield pb_grpc.StorageServiceStub(channel)


async def folder(stub: pb_grpc.StorageServiceStub, quota: int = 0) -> str:
    folder_id = str(uuid.uuid4())
    req = pb.CreateFolderRequest(volume="local", folder_id=folder_id, quota_bytes=quota)
    await stub.CreateFolder(req, metadata=MD, timeout=T)
    return folder_id


def upload_messages(
    folder_id: str,
    path: str,
    chunks: list[bytes],
    offset: int = 0,
    total: int = 0,
    finish: bool = True,
) -> Iterator[pb.UploadFileRequest]:
    header = pb.UploadHeader(
        volume="local", folder_id=folder_id, path=path, offset=offset, total_size_bytes=total
    )
    yield pb.UploadFileRequest(header=header)
    for chunk in chunks:
        yield pb.UploadFileRequest(chunk=chunk)
    if finish and not total:
        yield pb.UploadFileRequest(finish=True)


async def download(
    stub: pb_grpc.StorageServiceStub, folder_id: str, path: str, offset: int = 0, length: int = 0
) -> tuple[storage_pb2.File, bytes]:
    req = pb.DownloadFileRequest(
        volume="local", folder_id=folder_id, path=path, offset=offset, length=length
    )
    messages = [m async for m in stub.DownloadFile(req, metadata=MD, timeout=T)]
    return messages[0].file, b"".join(m.chunk for m in messages)


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def test_upload_stream_then_download_stream(stub: pb_grpc.StorageServiceStub) -> None:
    folder_id = await folder(stub)
    chunks = [os.urandom(1 << 20), os.urandom(1 << 20), os.urandom(12345)]
    data = b"".join(chunks)
    resp = await stub.UploadFile(
        upload_messages(folder_id, "sub/data.bin", chunks), metadata=MD, timeout=T
    )
    assert resp.complete and resp.offset == len(data)
    assert (resp.file.path, resp.file.size_bytes) == ("sub/data.bin", len(data))
    file, got = await download(stub, folder_id, "sub/data.bin")
    assert got == data
    assert file.type == storage_pb2.File.TYPE_FILE and file.modify_time.seconds > 0
    _, part = await download(stub, folder_id, "sub/data.bin", offset=1000, length=2 << 20)
    assert part == data[1000 : 1000 + (2 << 20)]
    listing = await stub.ListFiles(
        pb.ListFilesRequest(volume="local", folder_id=folder_id, path="sub"), metadata=MD, timeout=T
    )
    assert [f.name for f in listing.files] == ["data.bin"]


async def test_resume_an_interrupted_upload_stream(stub: pb_grpc.StorageServiceStub) -> None:
    folder_id = await folder(stub)
    data = os.urandom(10 << 20)
    sent = asyncio.Event()
    first = [data[: 4 << 20], data[4 << 20 : 8 << 20]]  # fs volumes write 8 MiB through at once

    async def interrupted() -> AsyncIterator[pb.UploadFileRequest]:
        for message in upload_messages(folder_id, "r.bin", first, total=len(data)):
            yield message
        sent.set()
        await asyncio.sleep(3600)  # the client stalls; then it is cancelled

    call = stub.UploadFile(interrupted(), metadata=MD, timeout=T)
    await sent.wait()
    # a second upload of the same file while the first is open is refused
    for _ in range(200):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.UploadFile(
                upload_messages(folder_id, "r.bin", [], offset=12345), metadata=MD, timeout=T
            )
        if error_info(exc.value).reason == "UPLOAD_IN_PROGRESS":
            break
        assert error_info(exc.value).reason == "UPLOAD_OFFSET_MISMATCH"  # not open yet
        await asyncio.sleep(0.01)
    assert error_info(exc.value).reason == "UPLOAD_IN_PROGRESS"
    req = pb.GetUploadOffsetRequest(volume="local", folder_id=folder_id, path="r.bin")
    for _ in range(200):
        offset = (await stub.GetUploadOffset(req, metadata=MD, timeout=T)).offset
        if offset == 8 << 20:
            break
        await asyncio.sleep(0.01)
    assert offset == 8 << 20
    call.cancel()  # the client goes away: what the proxy received is kept
    await asyncio.sleep(0.1)
    assert (await stub.GetUploadOffset(req, metadata=MD, timeout=T)).offset == 8 << 20
    # a wrong offset is refused with the right one in the details
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.UploadFile(
            upload_messages(folder_id, "r.bin", [b"x"], offset=5), metadata=MD, timeout=T
        )
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(exc.value)
    assert (info.reason, info.metadata["offset"]) == ("UPLOAD_OFFSET_MISMATCH", str(offset))
    # resume in two calls: one that stops short of the total, then the rest
    resp = await stub.UploadFile(
        upload_messages(folder_id, "r.bin", [data[offset : 9 << 20]], offset, len(data)),
        metadata=MD,
        timeout=T,
    )
    assert (resp.complete, resp.offset) == (False, 9 << 20)
    resp = await stub.UploadFile(
        upload_messages(folder_id, "r.bin", [data[9 << 20 :]], 9 << 20, len(data)),
        metadata=MD,
        timeout=T,
    )
    assert resp.complete and resp.file.size_bytes == len(data)
    assert (await download(stub, folder_id, "r.bin"))[1] == data


async def test_wrong_or_missing_service_token(stub: pb_grpc.StorageServiceStub) -> None:
    for metadata in [((SERVICE_TOKEN_KEY, "wrong"),), ()]:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ListVolumes(pb.ListVolumesRequest(), metadata=metadata, timeout=T)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            req = pb.DownloadFileRequest(volume="local", folder_id=str(uuid.uuid4()), path="x")
            _ = [m async for m in stub.DownloadFile(req, metadata=metadata, timeout=T)]
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_path_traversal_is_invalid_argument(
    stub: pb_grpc.StorageServiceStub, proxy: RunningProxy
) -> None:
    folder_id = await folder(stub)
    for path in ["../x", "/etc/passwd", "a/../../b"]:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await download(stub, folder_id, path)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(exc.value)
        assert (info.reason, info.domain) == ("PATH_ESCAPES_FOLDER", "bai.storage")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.UploadFile(
            upload_messages(folder_id, "../../evil", [b"x"]), metadata=MD, timeout=T
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    mount = (
        await stub.GetFolder(
            pb.GetFolderRequest(volume="local", folder_id=folder_id), metadata=MD, timeout=T
        )
    ).folder.mount_path
    os.symlink("/etc", Path(mount) / "etc")  # as a container could
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await download(stub, folder_id, "etc/passwd")
    assert error_info(exc.value).reason == "PATH_ESCAPES_FOLDER"


async def test_quota_is_resource_exhausted(stub: pb_grpc.StorageServiceStub) -> None:
    folder_id = await folder(stub, quota=1 << 20)
    quota = await stub.GetQuota(
        pb.GetQuotaRequest(volume="local", folder_id=folder_id), metadata=MD, timeout=T
    )
    assert (quota.quota_bytes, quota.used_bytes) == (1 << 20, 0)
    chunks = [b"a" * (600 << 10), b"b" * (600 << 10)]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.UploadFile(upload_messages(folder_id, "big", chunks), metadata=MD, timeout=T)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(exc.value).reason == "QUOTA_EXCEEDED"
    listing = await stub.ListFiles(
        pb.ListFilesRequest(volume="local", folder_id=folder_id), metadata=MD, timeout=T
    )
    assert list(listing.files) == []
    req = pb.GetUploadOffsetRequest(volume="local", folder_id=folder_id, path="big")
    assert (await stub.GetUploadOffset(req, metadata=MD, timeout=T)).offset == 0
    await stub.SetQuota(
        pb.SetQuotaRequest(volume="local", folder_id=folder_id, quota_bytes=0),
        metadata=MD,
        timeout=T,
    )
    await stub.UploadFile(upload_messages(folder_id, "big", chunks), metadata=MD, timeout=T)
    usage = await stub.GetFolderUsage(
        pb.GetFolderUsageRequest(volume="local", folder_id=folder_id), metadata=MD, timeout=T
    )
    assert (usage.used_bytes, usage.file_count) == (1200 << 10, 1)


async def test_volumes_folders_and_files(stub: pb_grpc.StorageServiceStub) -> None:
    volumes = (await stub.ListVolumes(pb.ListVolumesRequest(), metadata=MD, timeout=T)).volumes
    assert [(v.name, v.backend, v.mountable) for v in volumes] == [("local", "fs", True)]
    volume = (
        await stub.GetVolume(pb.GetVolumeRequest(volume="local"), metadata=MD, timeout=T)
    ).volume
    assert "quota" in volume.capabilities and volume.usage.capacity_bytes > 0
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetVolume(pb.GetVolumeRequest(volume="nope"), metadata=MD, timeout=T)
    assert error_info(exc.value).reason == "VOLUME_NOT_FOUND"
    folder_id = await folder(stub)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        req = pb.CreateFolderRequest(volume="local", folder_id=folder_id.replace("-", ""))
        await stub.CreateFolder(req, metadata=MD, timeout=T)
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.CreateFolder(
            pb.CreateFolderRequest(volume="local", folder_id="not-a-uuid"), metadata=MD, timeout=T
        )
    assert error_info(exc.value).reason == "INVALID_FOLDER_ID"
    for name in ["e", "a", "d", "c", "b"]:
        await stub.MakeDirectory(
            pb.MakeDirectoryRequest(
                volume="local", folder_id=folder_id, path=f"x/{name}", parents=True
            ),
            metadata=MD,
            timeout=T,
        )
    names, token = [], ""
    while True:
        page = await stub.ListFiles(
            pb.ListFilesRequest(
                volume="local", folder_id=folder_id, path="x", page_size=2, page_token=token
            ),
            metadata=MD,
            timeout=T,
        )
        names.append([f.name for f in page.files])
        token = page.next_page_token
        if not token:
            break
    assert names == [["a", "b"], ["c", "d"], ["e"]]
    moved = await stub.MoveFile(
        pb.MoveFileRequest(volume="local", folder_id=folder_id, src_path="x/a", dst_path="y"),
        metadata=MD,
        timeout=T,
    )
    assert moved.file.type == storage_pb2.File.TYPE_DIRECTORY
    await stub.DeleteFiles(
        pb.DeleteFilesRequest(volume="local", folder_id=folder_id, paths=["x"], recursive=True),
        metadata=MD,
        timeout=T,
    )
    clone_id = str(uuid.uuid4())
    clone = await stub.CloneFolder(
        pb.CloneFolderRequest(volume="local", folder_id=folder_id, target_folder_id=clone_id),
        metadata=MD,
        timeout=T,
    )
    assert clone.folder.folder_id == clone_id
    assert os.path.basename(clone.folder.mount_path) == clone_id.replace("-", "")[4:]
    got = await stub.GetFile(
        pb.GetFileRequest(volume="local", folder_id=clone_id, path="y"), metadata=MD, timeout=T
    )
    assert got.file.type == storage_pb2.File.TYPE_DIRECTORY
    await stub.DeleteFolder(
        pb.DeleteFolderRequest(volume="local", folder_id=folder_id), metadata=MD, timeout=T
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetFolder(
            pb.GetFolderRequest(volume="local", folder_id=folder_id), metadata=MD, timeout=T
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_transfer_token_and_health(
    stub: pb_grpc.StorageServiceStub, proxy: RunningProxy
) -> None:
    folder_id = await folder(stub)
    resp = await stub.CreateTransferToken(
        pb.CreateTransferTokenRequest(
            volume="local",
            folder_id=folder_id,
            path="up.bin",
            operation=pb.TRANSFER_OPERATION_UPLOAD,
            size_bytes=10,
            ttl=duration_pb2.Duration(seconds=60),
        ),
        metadata=MD,
        timeout=T,
    )
    assert resp.url == f"http://127.0.0.1:{proxy.transfer_port}/upload"
    assert resp.token.count(".") == 2 and resp.expire_time.seconds > 0
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.CreateTransferToken(
            pb.CreateTransferTokenRequest(
                volume="local",
                folder_id=folder_id,
                path="missing.bin",
                operation=pb.TRANSFER_OPERATION_DOWNLOAD,
            ),
            metadata=MD,
            timeout=T,
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = await health.Check(
            health_pb2.HealthCheckRequest(service="bai.storage.v1.StorageService"), timeout=T
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_cancelled_stream_of_unknown_size_publishes_nothing(
    stub: pb_grpc.StorageServiceStub,
) -> None:
    folder_id = await folder(stub)
    sent = asyncio.Event()

    async def cancelled() -> AsyncIterator[pb.UploadFileRequest]:
        for message in upload_messages(folder_id, "u.bin", [b"z" * (1 << 20)], finish=False):
            yield message
        sent.set()
        await asyncio.sleep(3600)

    call = stub.UploadFile(cancelled(), metadata=MD, timeout=T)
    await sent.wait()
    req = pb.GetUploadOffsetRequest(volume="local", folder_id=folder_id, path="u.bin")
    for _ in range(200):
        if (await stub.GetUploadOffset(req, metadata=MD, timeout=T)).offset == 1 << 20:
            break
        await asyncio.sleep(0.01)
    call.cancel()
    await asyncio.sleep(0.2)
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # the end of a cancelled stream is no EOF
        await stub.GetFile(
            pb.GetFileRequest(volume="local", folder_id=folder_id, path="u.bin"),
            metadata=MD,
            timeout=T,
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await stub.GetUploadOffset(req, metadata=MD, timeout=T)).offset == 1 << 20
    # a half-close without `finish` keeps the bytes too; `finish` publishes
    resp = await stub.UploadFile(
        upload_messages(folder_id, "u.bin", [b"y"], offset=1 << 20, finish=False),
        metadata=MD,
        timeout=T,
    )
    assert (resp.complete, resp.offset) == (False, (1 << 20) + 1)
    resp = await stub.UploadFile(
        upload_messages(folder_id, "u.bin", [], offset=(1 << 20) + 1), metadata=MD, timeout=T
    )
    assert resp.complete and resp.file.size_bytes == (1 << 20) + 1
    with pytest.raises(grpc.aio.AioRpcError) as exc:

        def after_finish() -> Iterator[pb.UploadFileRequest]:
            yield from upload_messages(folder_id, "v.bin", [b"a"])
            yield pb.UploadFileRequest(chunk=b"late")

        await stub.UploadFile(after_finish(), metadata=MD, timeout=T)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_two_concurrent_uploads_cannot_overrun_the_quota(
    stub: pb_grpc.StorageServiceStub,
) -> None:
    folder_id = await folder(stub, quota=1 << 20)
    size = 600 << 10  # each fits alone; both would not

    async def upload(path: str) -> pb.UploadFileResponse:
        messages = upload_messages(
            folder_id, path, [os.urandom(size // 2), os.urandom(size // 2)], total=size
        )
        return await stub.UploadFile(messages, metadata=MD, timeout=T)

    results = await asyncio.gather(upload("one.bin"), upload("two.bin"), return_exceptions=True)
    done = [r for r in results if isinstance(r, pb.UploadFileResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(done) == 1 and len(refused) == 1, results
    assert done[0].complete and done[0].file.size_bytes == size
    assert refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(refused[0]).reason == "QUOTA_EXCEEDED"
    usage = await stub.GetFolderUsage(
        pb.GetFolderUsageRequest(volume="local", folder_id=folder_id), metadata=MD, timeout=T
    )
    assert (usage.used_bytes, usage.file_count) == (size, 1)

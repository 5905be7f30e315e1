"""One behaviour for every VolumeBackend: fs, s3 (moto), azure (Azurite), gcs (emulator).

Each test runs once per backend against the real server, in new folders on a shared volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from bai.common import errors as common_errors
from bai.storage.backends import FileType, VolumeBackend, split_path
from bai.storage.backends.fs import FsVolume


def P(path: str) -> tuple[str, ...]:
    return split_path(path)


async def new_folder(backend: VolumeBackend) -> UUID:
    folder = uuid.uuid4()
    await backend.create_folder(folder)
    return folder


async def put(backend: VolumeBackend, folder: UUID, path: str, data: bytes) -> None:
    writer = await backend.open_upload(folder, P(path), offset=0, total_size=len(data))
    await writer.write(data)
    await writer.commit()


async def read(
    backend: VolumeBackend, folder: UUID, path: str, offset: int = 0, length: int | None = None
) -> bytes:
    _, stream = await backend.open_read(folder, P(path), offset=offset, length=length)
    async with contextlib.aclosing(stream):
        return b"".join([chunk async for chunk in stream])


def reason(exc: pytest.ExceptionInfo[common_errors.BaiError]) -> str:
    return exc.value.reason


async def test_folder_lifecycle(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    assert await backend.folder_exists(folder)
    with pytest.raises(common_errors.AlreadyExists) as exc:
        await backend.create_folder(folder)
    assert reason(exc) == "FOLDER_ALREADY_EXISTS"
    assert await backend.list_dir(folder, ()) == []
    await put(backend, folder, "a/b.txt", b"hello")
    await backend.delete_folder(folder)
    assert not await backend.folder_exists(folder)
    with pytest.raises(common_errors.NotFound) as exc:
        await backend.list_dir(folder, ())
    assert reason(exc) == "FOLDER_NOT_FOUND"
    with pytest.raises(common_errors.NotFound):
        await backend.delete_folder(folder)
    assert (backend.mount_path(folder) is not None) == backend.mountable == (backend.kind == "fs")


async def test_chunked_upload_and_ranged_download(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    chunks = [os.urandom(100_000), os.urandom(70_000), os.urandom(33)]
    data = b"".join(chunks)
    writer = await backend.open_upload(folder, P("dir/data.bin"), offset=0, total_size=0)
    for chunk in chunks:
        await writer.write(chunk)
    assert writer.offset == len(data)
    with pytest.raises(common_errors.NotFound):  # nothing visible before commit
        await backend.stat(folder, P("dir/data.bin"))
    entry = await writer.commit()
    assert (entry.name, entry.path, entry.type, entry.size) == (
        "data.bin",
        "dir/data.bin",
        FileType.FILE,
        len(data),
    )
    assert await read(backend, folder, "dir/data.bin") == data
    assert await read(backend, folder, "dir/data.bin", 5, 1000) == data[5:1005]
    assert await read(backend, folder, "dir/data.bin", 169_990) == data[169_990:]
    assert await read(backend, folder, "dir/data.bin", len(data)) == b""
    assert await read(backend, folder, "dir/data.bin", 10, 10**9) == data[10:]
    with pytest.raises(common_errors.InvalidArgument) as exc:
        await read(backend, folder, "dir/data.bin", len(data) + 1)
    assert reason(exc) == "INVALID_RANGE"
    with pytest.raises(common_errors.FailedPrecondition) as exc:
        await read(backend, folder, "dir")
    assert reason(exc) == "IS_A_DIRECTORY"
    with pytest.raises(common_errors.NotFound) as exc:
        await read(backend, folder, "dir/nope")
    assert reason(exc) == "FILE_NOT_FOUND"
    await put(backend, folder, "dir/data.bin", b"replaced")  # an upload replaces a file
    assert await read(backend, folder, "dir/data.bin") == b"replaced"
    await put(backend, folder, "empty", b"")
    assert (await backend.stat(folder, P("empty"))).size == 0


async def test_resume_after_interrupted_upload(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    parts = [os.urandom(3 << 20) for _ in range(4)]  # 12 MiB: S3 needs >= 5 MiB parts
    data = b"".join(parts)
    assert await backend.upload_offset(folder, P("big.bin")) == 0
    writer = await backend.open_upload(folder, P("big.bin"), offset=0, total_size=len(data))
    await writer.write(parts[0])
    await writer.flush()
    await writer.write(parts[1])
    await writer.suspend()  # the client went away after two chunks
    held = await backend.upload_offset(folder, P("big.bin"))
    assert held == len(parts[0]) + len(parts[1])
    writer = await backend.open_upload(folder, P("big.bin"), offset=held, total_size=len(data))
    await writer.write(parts[2][:1000])
    await writer.flush()
    del writer  # the proxy crashed: flushed bytes are kept, the writer is never closed
    held = await backend.upload_offset(folder, P("big.bin"))
    assert held == len(parts[0]) + len(parts[1]) + 1000
    with pytest.raises(common_errors.FailedPrecondition) as exc:
        await backend.open_upload(folder, P("big.bin"), offset=held - 1, total_size=0)
    assert reason(exc) == "UPLOAD_OFFSET_MISMATCH"
    assert exc.value.metadata["offset"] == str(held)
    assert await backend.list_dir(folder, ()) == []  # partial data is never listed
    writer = await backend.open_upload(folder, P("big.bin"), offset=held, total_size=len(data))
    await writer.write(data[held:])
    entry = await writer.commit()
    assert entry.size == len(data)
    assert await read(backend, folder, "big.bin") == data
    assert await backend.upload_offset(folder, P("big.bin")) == 0
    # offset 0 starts over, dropping what a partial upload held
    writer = await backend.open_upload(folder, P("x"), offset=0, total_size=0)
    await writer.write(b"stale")
    await writer.suspend()
    writer = await backend.open_upload(folder, P("x"), offset=0, total_size=0)
    await writer.write(b"fresh")
    await writer.commit()
    assert await read(backend, folder, "x") == b"fresh"


async def test_many_small_flushes(backend: VolumeBackend) -> None:
    """Every flush persists a segment (small ones are merged where the store needs it)."""
    folder = await new_folder(backend)
    pieces = [os.urandom(10_000 + i) for i in range(40)]  # > 32: GCS composes in rounds
    writer = await backend.open_upload(folder, P("s.bin"), offset=0, total_size=0)
    for piece in pieces:
        await writer.write(piece)
        await writer.flush()
    await writer.commit()
    assert await read(backend, folder, "s.bin") == b"".join(pieces)


async def test_list_entries(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    before = datetime.now(UTC) - timedelta(minutes=5)
    await put(backend, folder, "b.txt", b"12345")
    await put(backend, folder, "a/inner.txt", b"x")
    await backend.mkdir(folder, P("c"), parents=False, exist_ok=False)
    entries = await backend.list_dir(folder, ())
    assert [(e.name, e.path, e.type) for e in entries] == [
        ("a", "a", FileType.DIRECTORY),
        ("b.txt", "b.txt", FileType.FILE),
        ("c", "c", FileType.DIRECTORY),
    ]
    file = entries[1]
    assert file.size == 5 and file.mode == 0o644
    assert file.mtime is not None and before < file.mtime < datetime.now(UTC) + timedelta(minutes=5)
    assert [e.path for e in await backend.list_dir(folder, P("a"))] == ["a/inner.txt"]
    assert await backend.list_dir(folder, P("c")) == []
    with pytest.raises(common_errors.FailedPrecondition) as exc:
        await backend.list_dir(folder, P("b.txt"))
    assert reason(exc) == "NOT_A_DIRECTORY"
    with pytest.raises(common_errors.NotFound):
        await backend.list_dir(folder, P("zzz"))
    assert (await backend.stat(folder, P("a"))).type is FileType.DIRECTORY
    assert (await backend.stat(folder, ())).type is FileType.DIRECTORY


async def test_mkdir(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    entry = await backend.mkdir(folder, P("d"), parents=False, exist_ok=False)
    assert (entry.path, entry.type) == ("d", FileType.DIRECTORY)
    with pytest.raises(common_errors.AlreadyExists) as exc:
        await backend.mkdir(folder, P("d"), parents=False, exist_ok=False)
    assert reason(exc) == "FILE_ALREADY_EXISTS"
    await backend.mkdir(folder, P("d"), parents=False, exist_ok=True)
    with pytest.raises(common_errors.NotFound):
        await backend.mkdir(folder, P("x/y/z"), parents=False, exist_ok=False)
    await backend.mkdir(folder, P("x/y/z"), parents=True, exist_ok=False)
    assert (await backend.stat(folder, P("x/y"))).type is FileType.DIRECTORY
    await put(backend, folder, "f", b"file")
    with pytest.raises(common_errors.AlreadyExists):
        await backend.mkdir(folder, P("f"), parents=False, exist_ok=True)
    with pytest.raises(common_errors.FailedPrecondition) as exc:
        await backend.mkdir(folder, P("f/sub"), parents=True, exist_ok=False)
    assert reason(exc) == "NOT_A_DIRECTORY"


async def test_move(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    await put(backend, folder, "a.txt", b"A")
    await put(backend, folder, "b.txt", b"B")
    await put(backend, folder, "dir/one", b"1")
    await put(backend, folder, "dir/sub/two", b"2")
    entry = await backend.move(folder, P("a.txt"), P("renamed.txt"))
    assert (entry.path, entry.size) == ("renamed.txt", 1)
    assert await read(backend, folder, "renamed.txt") == b"A"
    with pytest.raises(common_errors.NotFound):
        await backend.stat(folder, P("a.txt"))
    with pytest.raises(common_errors.AlreadyExists) as exc:
        await backend.move(folder, P("b.txt"), P("renamed.txt"))
    assert reason(exc) == "FILE_ALREADY_EXISTS"
    assert await read(backend, folder, "renamed.txt") == b"A"  # nothing was overwritten
    with pytest.raises(common_errors.AlreadyExists):
        await backend.move(folder, P("b.txt"), P("dir"))
    await backend.mkdir(folder, P("target"), parents=False, exist_ok=False)
    await backend.move(folder, P("dir"), P("target/moved"))
    assert await read(backend, folder, "target/moved/sub/two") == b"2"
    assert await read(backend, folder, "target/moved/one") == b"1"
    with pytest.raises(common_errors.NotFound):
        await backend.stat(folder, P("dir"))
    with pytest.raises(common_errors.NotFound):
        await backend.move(folder, P("nope"), P("x"))
    with pytest.raises(common_errors.NotFound):
        await backend.move(folder, P("b.txt"), P("missing-parent/b.txt"))
    with pytest.raises(common_errors.InvalidArgument):
        await backend.move(folder, P("target"), P("target/inside"))


async def test_delete(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    await put(backend, folder, "keep/file", b"x")
    await put(backend, folder, "tree/a/b", b"y")
    await put(backend, folder, "f", b"z")
    with pytest.raises(common_errors.FailedPrecondition) as exc:
        await backend.delete(folder, [P("f"), P("tree")], recursive=False)
    assert reason(exc) == "DIRECTORY_NOT_EMPTY"
    assert await read(backend, folder, "f") == b"z"  # checked before anything was deleted
    with pytest.raises(common_errors.NotFound):
        await backend.delete(folder, [P("f"), P("missing")], recursive=True)
    assert await read(backend, folder, "f") == b"z"
    await backend.delete(folder, [P("f"), P("tree")], recursive=True)
    await backend.delete(folder, [P("keep/file")], recursive=False)
    names = [e.name for e in await backend.list_dir(folder, ())]
    assert names == ["keep"]  # a directory does not vanish with its last file
    await backend.delete(folder, [P("keep")], recursive=False)
    assert await backend.list_dir(folder, ()) == []


async def test_usage_and_quota(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    await put(backend, folder, "a", b"x" * 300)
    await put(backend, folder, "d/b", b"y" * 200)
    usage = await backend.folder_usage(folder)
    assert (usage.used_bytes, usage.file_count) == (500, 2)
    assert await backend.get_quota(folder) == 0
    await backend.set_quota(folder, 1000)
    assert await backend.get_quota(folder) == 1000
    # declared size over the quota: refused up front
    with pytest.raises(common_errors.ResourceExhausted) as exc:
        await backend.open_upload(folder, P("big"), offset=0, total_size=501)
    assert reason(exc) == "QUOTA_EXCEEDED"
    # unknown size: refused at the write that crosses the quota; nothing stays behind
    writer = await backend.open_upload(folder, P("big"), offset=0, total_size=0)
    await writer.write(b"z" * 400)
    await writer.flush()
    with pytest.raises(common_errors.ResourceExhausted) as exc:
        await writer.write(b"z" * 101)
    assert reason(exc) == "QUOTA_EXCEEDED"
    assert await backend.upload_offset(folder, P("big")) == 0
    with pytest.raises(common_errors.NotFound):
        await backend.stat(folder, P("big"))
    assert (await backend.folder_usage(folder)).used_bytes == 500
    # replacing a file counts only the difference
    await put(backend, folder, "a", b"x" * 800)
    await backend.set_quota(folder, 0)
    await put(backend, folder, "huge", b"h" * 5000)


async def test_concurrent_uploads_cannot_both_pass_the_quota(backend: VolumeBackend) -> None:
    folder = await new_folder(backend)
    await backend.set_quota(folder, 1000)
    await put(backend, folder, "old.bin", b"o" * 200)  # 800 bytes left
    # two uploads of 500 declared bytes, opened at the same time: each fits alone, not both
    opened = await asyncio.gather(
        backend.open_upload(folder, P("a.bin"), offset=0, total_size=500),
        backend.open_upload(folder, P("b.bin"), offset=0, total_size=500),
        return_exceptions=True,
    )
    writers = [w for w in opened if not isinstance(w, BaseException)]
    refused = [e for e in opened if isinstance(e, BaseException)]
    assert len(writers) == 1 and len(refused) == 1, opened
    assert isinstance(refused[0], common_errors.ResourceExhausted)
    assert refused[0].reason == "QUOTA_EXCEEDED"
    await writers[0].write(b"w" * 500)
    winner = (await writers[0].commit()).name  # 700 used, 300 left
    # unknown sizes: bytes are reserved as they arrive, so the second writer is the one refused
    first = await backend.open_upload(folder, P("c.bin"), offset=0, total_size=0)
    second = await backend.open_upload(folder, P("d.bin"), offset=0, total_size=0)
    await first.write(b"c" * 200)
    with pytest.raises(common_errors.ResourceExhausted) as exc:
        await second.write(b"d" * 200)  # 700 + 200 reserved + 200 > 1000
    assert reason(exc) == "QUOTA_EXCEEDED"
    await first.commit()
    usage = await backend.folder_usage(folder)
    assert (usage.used_bytes, usage.file_count) == (900, 3)
    loser = "b.bin" if winner == "a.bin" else "a.bin"
    for name in (loser, "d.bin"):  # nothing of the refused uploads is visible or held
        assert await backend.upload_offset(folder, P(name)) == 0
    assert [e.name for e in await backend.list_dir(folder, ())] == sorted(
        [winner, "c.bin", "old.bin"]
    )
    ledger = getattr(backend, "quota_ledger")  # noqa: B009 - fs and object volumes have one
    assert ledger.reserved_bytes(folder) == 0  # every reservation was given back
    # a commit moved the ledger's count: a later upload sees the committed bytes
    with pytest.raises(common_errors.ResourceExhausted):
        await backend.open_upload(folder, P("e.bin"), offset=0, total_size=101)
    await put(backend, folder, "e.bin", b"e" * 100)


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "..", "a\x00b"])
async def test_traversal_rejected(backend: VolumeBackend, bad: str) -> None:
    with pytest.raises(common_errors.InvalidArgument) as exc:
        split_path(bad)
    assert reason(exc) in ("PATH_ESCAPES_FOLDER", "INVALID_PATH")


async def test_clone(backend: VolumeBackend) -> None:
    source = await new_folder(backend)
    await put(backend, source, "a.txt", b"A")
    await put(backend, source, "d/e/f.txt", b"F")
    await backend.mkdir(source, P("empty"), parents=False, exist_ok=False)
    target = uuid.uuid4()
    await backend.clone_folder(source, target)
    assert await read(backend, target, "d/e/f.txt") == b"F"
    assert [e.name for e in await backend.list_dir(target, ())] == ["a.txt", "d", "empty"]
    await put(backend, target, "a.txt", b"changed")
    assert await read(backend, source, "a.txt") == b"A"
    with pytest.raises(common_errors.AlreadyExists):
        await backend.clone_folder(source, target)
    with pytest.raises(common_errors.NotFound):
        await backend.clone_folder(uuid.uuid4(), uuid.uuid4())


# fs only: symlinks written by containers into mounted folders -------------------------------


@pytest.fixture
async def fs_folder(backend: VolumeBackend) -> tuple[FsVolume, UUID]:
    if not isinstance(backend, FsVolume):
        pytest.skip("symlinks exist on fs volumes only")
    return backend, await new_folder(backend)


async def test_symlinks_out_of_the_folder_are_refused(fs_folder: tuple[FsVolume, UUID]) -> None:
    backend, folder = fs_folder
    root = backend.mount_path(folder)
    assert root is not None
    await put(backend, folder, "real/data.txt", b"inside")
    os.symlink("/etc", os.path.join(root, "abs"))
    os.symlink("../../../../..", os.path.join(root, "up"))
    os.symlink("real/../..", os.path.join(root, "sneaky"))
    os.symlink("/etc/passwd", os.path.join(root, "real", "passwd"))
    for bad in ["abs/passwd", "up/etc/passwd", "sneaky/x", "real/passwd"]:
        with pytest.raises(common_errors.InvalidArgument) as exc:
            await read(backend, folder, bad)
        assert reason(exc) == "PATH_ESCAPES_FOLDER", bad
    for call in (
        backend.list_dir(folder, P("abs")),
        backend.mkdir(folder, P("up/new"), parents=True, exist_ok=False),
        backend.open_upload(folder, P("abs/evil"), offset=0, total_size=0),
        backend.open_upload(folder, P("real/passwd"), offset=0, total_size=0),
        backend.move(folder, P("real/data.txt"), P("sneaky/stolen")),
    ):
        with pytest.raises(common_errors.InvalidArgument):
            await call
    # links inside the folder work, and are listed as links
    os.symlink("real/data.txt", os.path.join(root, "alias"))
    os.symlink("real", os.path.join(root, "dirlink"))
    assert await read(backend, folder, "alias") == b"inside"
    assert await read(backend, folder, "dirlink/data.txt") == b"inside"
    kinds = {e.name: e.type for e in await backend.list_dir(folder, ())}
    assert kinds["alias"] is FileType.SYMLINK and kinds["real"] is FileType.DIRECTORY
    # deleting a link deletes the link, never its target
    await backend.delete(folder, [P("abs"), P("dirlink")], recursive=True)
    assert await read(backend, folder, "real/data.txt") == b"inside"
    assert (await backend.stat(folder, P("real"))).type is FileType.DIRECTORY

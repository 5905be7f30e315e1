"""fs folders are written by kernels running as uid 1000: what the proxy creates must let them.

See bai.storage.backends.fs_owner for the decision. The Docker test bind-mounts a folder into
the real kernel image, as the agent does, and writes from inside as the kernel user.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from bai.storage.backends import split_path
from bai.storage.backends.fs import FsVolume
from bai.storage.backends.fs_owner import Ownership

KERNEL_IMAGE = "bai/python:3.11-debian12"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs a root proxy")


async def _populate(volume: FsVolume) -> uuid.UUID:
    """A folder with what the proxy can create: mkdir -p, an upload with new parents."""
    folder = uuid.uuid4()
    await volume.create_folder(folder)
    await volume.mkdir(folder, split_path("made/by/cli"), parents=True, exist_ok=False)
    writer = await volume.open_upload(
        folder, split_path("up/loaded/data.txt"), offset=0, total_size=5
    )
    await writer.write(b"hello")
    await writer.commit()
    return folder


def _tree(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


@needs_root
async def test_everything_the_proxy_creates_belongs_to_the_kernel_user(tmp_path: Path) -> None:
    volume = FsVolume(tmp_path / "vol", owner="1000:1000")
    await volume.start()
    folder = await _populate(volume)
    clone = uuid.uuid4()
    await volume.clone_folder(folder, clone)
    for f in (folder, clone):
        mount = Path(str(volume.mount_path(f)))
        paths = _tree(mount)
        assert len(paths) == 7  # root, made, by, cli, up, loaded, data.txt
        for path in paths:
            st = path.lstat()
            assert (st.st_uid, st.st_gid) == (1000, 1000), path
            want = 0o755 if stat.S_ISDIR(st.st_mode) else 0o644
            assert stat.S_IMODE(st.st_mode) == want, path


def test_owner_option_is_validated() -> None:
    with pytest.raises(ValueError, match="uid:gid"):
        FsVolume.from_options({"path": "/tmp/x", "owner": "work"})
    assert Ownership.parse("1234").gid == 1234


@needs_root
def test_a_proxy_that_cannot_chown_opens_the_modes() -> None:
    # the proxy as an unprivileged user other than the kernel user: modes, not ownership
    base = Path(tempfile.mkdtemp(prefix="bai-own-", dir="/tmp"))  # pytest's tmp is 0700
    root = base / "vol"
    root.mkdir()
    os.chown(root, 2000, 2000)
    os.chmod(base, 0o755)
    try:
        _check_modes_as_unprivileged(root)
    finally:
        shutil.rmtree(base)


def _check_modes_as_unprivileged(root: Path) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child becomes uid 2000 and runs the backend there
        code = 1
        try:
            os.close(read_end)
            os.setgid(2000)
            os.setuid(2000)
            modes = asyncio.run(_modes_as_unprivileged(root))
            os.write(write_end, " ".join(modes).encode())
            code = 0
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert out.split() == ["0o777", "0o777", "0o777", "0o666"]


async def _modes_as_unprivileged(root: Path) -> list[str]:
    volume = FsVolume(root, owner="1000:1000")
    await volume.start()
    folder = uuid.uuid4()
    await volume.create_folder(folder)
    await volume.mkdir(folder, split_path("a/b"), parents=True, exist_ok=False)
    writer = await volume.open_upload(folder, split_path("a/b/c.txt"), offset=0, total_size=1)
    await writer.write(b"x")
    await writer.commit()
    mount = Path(str(volume.mount_path(folder)))
    paths = [mount, mount / "a", mount / "a/b", mount / "a/b/c.txt"]
    return [oct(stat.S_IMODE(p.lstat().st_mode)) for p in paths]


@pytest.mark.docker
@needs_root
async def test_a_kernel_writes_into_directories_the_proxy_created(
    tmp_path: Path, docker_ready: None
) -> None:
    volume = FsVolume(tmp_path / "vol")  # default owner: 1000:1000, the image's 'work' user
    await volume.start()
    folder = await _populate(volume)
    mount = str(volume.mount_path(folder))
    script = (
        "set -e; cd /home/work/data;"
        " echo k > made/by/cli/from-kernel.txt;"  # a directory made through the API
        " mkdir up/loaded/sub;"  # a parent created by an upload
        " echo more >> up/loaded/data.txt;"  # a file uploaded through the proxy
        " echo top > top.txt; id -u"
    )
    run = subprocess.run(  # noqa: ASYNC221 - one short docker run
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "1000:1000",
            "-v",
            f"{mount}:/home/work/data",
            KERNEL_IMAGE,
            "sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1000"
    entries = await volume.list_dir(folder, split_path("made/by/cli"))
    assert [e.name for e in entries] == ["from-kernel.txt"]
    assert (Path(mount) / "up/loaded/data.txt").read_bytes() == b"hellomore\n"

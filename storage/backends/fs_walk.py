"""Walking paths beneath a folder root without ever leaving it (the ``fs`` backend's guard).

Containers can write to mounted folders, so a folder may hold any symlink. Every path is
walked one name at a time with ``O_NOFOLLOW`` from an open directory descriptor; a symlink met
on the way is resolved by hand, and one whose target is absolute or climbs out of the folder
is refused (PATH_ESCAPES_FOLDER). No joined path string ever reaches the kernel, so a symlink
swapped in concurrently cannot redirect an operation either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Sequence

from bai.storage import errors
from bai.storage.backends.base import Parts

__all__ = ["DIR_FLAGS", "MAX_LINK_HOPS", "Walker", "lstat"]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""Flags to open a directory, never through a symlink."""
MAX_LINK_HOPS = 40
"""Symlinks followed in one path at most (Linux's limit)."""


def lstat(name: str, dir_fd: int) -> os.stat_result | None:
    """``lstat`` of ``name`` in ``dir_fd``; ``None`` when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _mkdir(name: str, dir_fd: int) -> None:
    os.mkdir(name, 0o755, dir_fd=dir_fd)


def _normalize(parts: Sequence[str], display: str) -> list[str]:
    """Lexically applies ``.``/``..`` to names that hold no symlinks."""
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise errors.path_escapes(display)
            out.pop()
        else:
            out.append(part)
    return out


class Walker:
    """Resolves paths beneath one open folder root descriptor (see the module docstring)."""

    def __init__(
        self, root_fd: int, display: str, make_dir: Callable[[str, int], None] | None = None
    ) -> None:
        self.root_fd = root_fd
        self.display = display
        self._make_dir = make_dir or _mkdir

    def walk_dir(self, parts: Sequence[str], *, mkdirs: bool = False) -> tuple[int, list[str]]:
        """Opens the directory at ``parts``; returns its fd and its symlink-free path."""
        hops = 0
        stack = [os.dup(self.root_fd)]
        names: list[str] = []
        todo = list(parts)
        try:
            while todo:
                name = todo.pop(0)
                if name in ("", "."):
                    continue
                if name == "..":
                    if not names:
                        raise errors.path_escapes(self.display)
                    os.close(stack.pop())
                    names.pop()
                    continue
                try:
                    fd = os.open(name, DIR_FLAGS, dir_fd=stack[-1])
                except FileNotFoundError:
                    if not mkdirs:
                        raise errors.file_not_found(self.display) from None
                    with contextlib.suppress(FileExistsError):
                        self._make_dir(name, stack[-1])
                    todo.insert(0, name)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = lstat(name, stack[-1])
                    if st is None or not stat.S_ISLNK(st.st_mode):
                        raise errors.not_a_directory(self.display) from None
                    hops += 1
                    if hops > MAX_LINK_HOPS:
                        raise errors.invalid_path(self.display, "too many symlinks") from None
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/"):
                        raise errors.path_escapes(self.display) from None
                    todo[:0] = target.split("/")
                    continue
                stack.append(fd)
                names.append(name)
            return stack.pop(), names
        finally:
            for fd in stack:
                os.close(fd)

    def parent(
        self, parts: Parts, *, follow: bool, mkdirs: bool = False
    ) -> tuple[int, str, list[str]]:
        """Opens the parent directory of ``parts`` (not the root); returns (fd, name, path).

        With ``follow``, a final symlink is resolved (inside the folder) until the name is not
        a symlink; the returned path is then the resolved one.
        """
        todo: list[str] = list(parts)
        for _ in range(MAX_LINK_HOPS):
            if not todo:
                raise errors.is_a_directory(self.display)
            fd, names = self.walk_dir(todo[:-1], mkdirs=mkdirs)
            name = todo[-1]
            st = lstat(name, fd) if follow else None
            if st is None or not stat.S_ISLNK(st.st_mode):
                return fd, name, [*names, name]
            target = os.readlink(name, dir_fd=fd)
            os.close(fd)
            if target.startswith("/"):
                raise errors.path_escapes(self.display)
            todo = _normalize([*names, *target.split("/")], self.display)
        raise errors.invalid_path(self.display, "too many symlinks")

    def open_dir(self, parts: Parts) -> int:
        """Opens the directory at ``parts`` (the root for ``()``), following in-folder links."""
        if not parts:
            return os.dup(self.root_fd)
        fd, name, _ = self.parent(parts, follow=True)
        try:
            return os.open(name, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            raise errors.file_not_found(self.display) from None
        except NotADirectoryError:
            raise errors.not_a_directory(self.display) from None
        finally:
            os.close(fd)

"""Who owns what the ``fs`` backend creates inside folders.

fs folders are bind-mounted into kernels, which run as an unprivileged user (uid:gid
``1000:1000``, the images' ``work`` user; the agent's ``kernel_user``). A directory the proxy
creates (the folder itself, ``mkdir``, the parents of an upload, a clone) must be writable by
that user, or a session could not write into a subdirectory a user created from the CLI.

Decision: every fs volume has an ``owner`` (option ``owner = "uid:gid"``, default
``"1000:1000"``). A proxy running as root ``chown``\\ s each directory and file it creates
inside a folder to the owner (modes 0755/0644, as if the kernel user had made them). A proxy
that cannot chown and does not run as the owner falls back to modes 0777/0666 so that the
kernel user can still write (a development setup; run production proxies as root or as the
owner). Partial uploads get their owner and mode before they are published, so a file never
appears in a folder with the wrong owner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DEFAULT_OWNER", "Ownership"]

DEFAULT_OWNER = "1000:1000"


@dataclass(frozen=True, slots=True)
class Ownership:
    """The owner and modes of new directories and files inside folders."""

    uid: int
    """Owner uid (the kernel user)."""
    gid: int
    """Owner gid."""
    chown: bool
    """Whether to chown (the proxy runs as root)."""
    dir_mode: int
    """Mode of new directories."""
    file_mode: int
    """Mode of new files."""

    @classmethod
    def parse(cls, owner: str) -> Ownership:
        """``"uid:gid"`` (or ``"uid"``) for this process: chown as root, else modes."""
        uid_text, _, gid_text = owner.partition(":")
        try:
            uid, gid = int(uid_text), int(gid_text or uid_text)
        except ValueError:
            raise ValueError(f"fs volume owner must be 'uid:gid', not {owner!r}") from None
        if uid < 0 or gid < 0:
            raise ValueError(f"fs volume owner must be 'uid:gid', not {owner!r}")
        euid = os.geteuid()
        if euid == 0:
            return cls(uid, gid, chown=True, dir_mode=0o755, file_mode=0o644)
        if euid == uid:
            return cls(uid, gid, chown=False, dir_mode=0o755, file_mode=0o644)
        return cls(uid, gid, chown=False, dir_mode=0o777, file_mode=0o666)

    def mkdir(self, name: str, dir_fd: int) -> None:
        """Creates directory ``name`` in ``dir_fd`` owned by the owner (FileExistsError if it
        exists)."""
        os.mkdir(name, self.dir_mode, dir_fd=dir_fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            self.apply(fd, directory=True)
        finally:
            os.close(fd)

    def apply(self, fd: int, *, directory: bool) -> None:
        """Gives an open new directory or file its owner and mode (the umask is ignored)."""
        if self.chown:
            os.fchown(fd, self.uid, self.gid)
        os.fchmod(fd, self.dir_mode if directory else self.file_mode)

    def apply_tree(self, root: str) -> None:
        """Owner and modes for a copied tree (a clone), never following symlinks."""
        if not self.chown:
            return  # the copy kept the source's modes, which were already set by this policy
        os.chown(root, self.uid, self.gid, follow_symlinks=False)
        for directory, dirs, files in os.walk(root):
            for name in (*dirs, *files):
                os.chown(os.path.join(directory, name), self.uid, self.gid, follow_symlinks=False)

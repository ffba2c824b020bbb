"""A view of the node's filesystem mounted at ``root``, resolved like a chroot.

Paths given to :class:`HostFS` are *node* paths (what the node's containerd sees).
Absolute symlink targets are re-rooted under ``root``, ``..`` never climbs above
``root``, and symlink chains end after :data:`MAX_HOPS` hops with an error naming
the file. Reads refuse anything but regular files under a size cap, so a FIFO,
a device or a huge file on the node cannot hang or exhaust the agent.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

__all__ = ["DEFAULT_CAP", "MAX_HOPS", "HostFS", "NodeFileError"]

MAX_HOPS = 40
DEFAULT_CAP = 4 * 1024 * 1024


class NodeFileError(Exception):
    """A node file that cannot be resolved or read; the message names the node path."""

    def __init__(self, node_path: str, reason: str) -> None:
        super().__init__(f"{node_path}: {reason}")
        self.node_path = node_path
        self.reason = reason


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a regular file"


class HostFS:
    """The node filesystem seen through ``root`` (``/`` is the plain filesystem)."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = os.path.abspath(os.fspath(root))

    def _join(self, parts: list[str]) -> str:
        return os.path.join(self.root, *parts) if parts else self.root

    def resolve(self, path: str | os.PathLike[str]) -> str:
        """The real path under ``root`` for node path ``path``; missing tails stay literal."""
        node = os.fspath(path)
        pending = [p for p in PurePosixPath(node).parts if p != "/"][::-1]
        parts: list[str] = []
        hops = 0
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if parts:
                    parts.pop()
                continue
            candidate = self._join(parts + [comp])
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                parts.append(comp)
                continue
            except OSError as exc:
                if exc.errno == errno.ENOTDIR:
                    parts.append(comp)
                    continue
                raise NodeFileError(node, f"cannot inspect ({exc.strerror})") from None
            if not stat.S_ISLNK(st.st_mode):
                parts.append(comp)
                continue
            hops += 1
            if hops > MAX_HOPS:
                raise NodeFileError(node, f"too many levels of symbolic links (more than {MAX_HOPS})")
            try:
                target = os.readlink(candidate)
            except OSError as exc:
                raise NodeFileError(node, f"cannot read symlink ({exc.strerror})") from None
            if target.startswith("/"):
                parts = []
            pending.extend([p for p in PurePosixPath(target).parts if p != "/"][::-1])
        return self._join(parts)

    def read_bytes(self, path: str | os.PathLike[str], cap: int = DEFAULT_CAP) -> bytes:
        """The contents of regular file ``path``; anything else raises :class:`NodeFileError`."""
        node = os.fspath(path)
        real = self.resolve(node)
        try:
            st = os.lstat(real)
        except OSError as exc:
            raise NodeFileError(node, f"cannot read ({exc.strerror})") from None
        self._check(node, st, cap)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise NodeFileError(node, f"cannot read ({exc.strerror})") from None
        try:
            self._check(node, os.fstat(fd), cap)
            chunks: list[bytes] = []
            total = 0
            while total <= cap:
                chunk = os.read(fd, min(1 << 16, cap + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        except OSError as exc:
            raise NodeFileError(node, f"cannot read ({exc.strerror})") from None
        finally:
            os.close(fd)
        if total > cap:
            raise NodeFileError(node, f"larger than the {cap}-byte cap")
        return b"".join(chunks)

    def read_text(self, path: str | os.PathLike[str], cap: int = DEFAULT_CAP) -> str:
        """The UTF-8 contents of regular file ``path``."""
        data = self.read_bytes(path, cap)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise NodeFileError(os.fspath(path), "not valid UTF-8") from None

    @staticmethod
    def _check(node: str, st: os.stat_result, cap: int) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise NodeFileError(node, f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > cap:
            raise NodeFileError(node, f"is {st.st_size} bytes, over the {cap}-byte cap")

    def listdir(self, path: str | os.PathLike[str]) -> list[str]:
        """Sorted entry names of directory ``path``."""
        node = os.fspath(path)
        try:
            return sorted(os.listdir(self.resolve(node)))
        except OSError as exc:
            raise NodeFileError(node, f"cannot list ({exc.strerror})") from None

    def is_dir(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` resolves to a directory."""
        try:
            return os.path.isdir(self.resolve(path))
        except NodeFileError:
            return False

    def exists(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` resolves to something."""
        try:
            return os.path.lexists(self.resolve(path))
        except NodeFileError:
            return False

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        """``resolve`` as a :class:`Path`."""
        return Path(self.resolve(path))

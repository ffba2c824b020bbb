"""HostFS: a chroot-like view of the node filesystem, on real files in tmp_path."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from probes.hostfs import MAX_HOPS, HostFS, NodeFileError

BUNDLE = "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"
LINK = "/etc/pki/tls/certs/ca-bundle.crt"


def _put(root: Path, node_path: str, data: bytes = b"x") -> Path:
    path = root / node_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _link(root: Path, node_path: str, target: str) -> None:
    path = root / node_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def test_absolute_symlink_is_rerooted(tmp_path: Path) -> None:
    """A RHEL-style absolute CA-bundle symlink resolves under the root, not the agent's /."""
    _put(tmp_path, BUNDLE, b"PEM")
    _link(tmp_path, LINK, BUNDLE)
    fs = HostFS(tmp_path)
    assert fs.resolve(LINK) == str(tmp_path / BUNDLE.lstrip("/"))
    assert fs.read_bytes(LINK) == b"PEM"
    assert fs.read_text(LINK) == "PEM"


def test_relative_symlink(tmp_path: Path) -> None:
    """A relative target is taken from the link's directory."""
    _put(tmp_path, "/etc/ssl/real.pem", b"R")
    _link(tmp_path, "/etc/ssl/certs/link.pem", "../real.pem")
    assert HostFS(tmp_path).read_bytes("/etc/ssl/certs/link.pem") == b"R"


def test_dotdot_in_path_stays_under_root(tmp_path: Path) -> None:
    """``..`` above the root stays at the root."""
    root = tmp_path / "node"
    _put(root, "/etc/passwd", b"node")
    _put(tmp_path, "/etc/passwd", b"outside")
    fs = HostFS(root)
    assert fs.resolve("/../../etc/passwd") == str(root / "etc/passwd")
    assert fs.read_bytes("/../../../etc/passwd") == b"node"
    assert fs.read_bytes("../etc/passwd") == b"node"


def test_dotdot_in_symlink_target_stays_under_root(tmp_path: Path) -> None:
    """A symlink target climbing with ``..`` cannot leave the root."""
    root = tmp_path / "node"
    _put(tmp_path, "/secret", b"outside")
    _put(root, "/secret", b"inside")
    _link(root, "/a/b/up", "../../../../../secret")
    _link(root, "/a/abs", "/../../secret")
    fs = HostFS(root)
    assert fs.read_bytes("/a/b/up") == b"inside"
    assert fs.read_bytes("/a/abs") == b"inside"


def test_symlink_loop_names_the_file(tmp_path: Path) -> None:
    """A loop ends with an error naming the node path."""
    _link(tmp_path, "/etc/a", "/etc/b")
    _link(tmp_path, "/etc/b", "a")
    with pytest.raises(NodeFileError, match=r"^/etc/a: too many levels of symbolic links"):
        HostFS(tmp_path).read_bytes("/etc/a")


def test_long_chain_within_limit(tmp_path: Path) -> None:
    """A chain of exactly MAX_HOPS links resolves; one more fails."""
    _put(tmp_path, "/f0", b"end")
    for i in range(1, MAX_HOPS + 2):
        _link(tmp_path, f"/f{i}", f"/f{i - 1}")
    fs = HostFS(tmp_path)
    assert fs.read_bytes(f"/f{MAX_HOPS}") == b"end"
    with pytest.raises(NodeFileError, match="too many levels"):
        fs.read_bytes(f"/f{MAX_HOPS + 1}")


def test_fifo_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO (no writer) is refused, and the read does not block."""
    fifo = tmp_path / "etc/fifo"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            HostFS(tmp_path).read_bytes("/etc/fifo")
        except BaseException as exc:  # noqa: BLE001 - handed to the asserting thread
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        with open(fifo, "wb"):  # unblock the reader before failing
            pass
        pytest.fail("read_bytes blocked on a FIFO")
    assert isinstance(outcome[0], NodeFileError)
    assert "/etc/fifo: is a FIFO" in str(outcome[0])


def test_symlink_to_dev_zero_refused_under_slash(tmp_path: Path) -> None:
    """Under root /, a link to /dev/zero reaches the device, which is refused."""
    os.symlink("/dev/zero", tmp_path / "zero")
    with pytest.raises(NodeFileError, match="is a device"):
        HostFS("/").read_bytes(tmp_path / "zero")


def test_symlink_to_dev_zero_rerooted(tmp_path: Path) -> None:
    """Under a node root, /dev/zero means the node's /dev/zero, missing here."""
    _link(tmp_path, "/etc/zero", "/dev/zero")
    with pytest.raises(NodeFileError, match=r"^/etc/zero: cannot read"):
        HostFS(tmp_path).read_bytes("/etc/zero")


def test_huge_sparse_file_over_cap(tmp_path: Path) -> None:
    """A sparse file bigger than the cap is refused before reading."""
    path = tmp_path / "big"
    with open(path, "wb") as fh:
        fh.truncate(1 << 40)
    with pytest.raises(NodeFileError, match=r"^/big: is 1099511627776 bytes, over the 1024-byte cap"):
        HostFS(tmp_path).read_bytes("/big", cap=1024)


def test_file_at_cap_is_read(tmp_path: Path) -> None:
    """A file of exactly the cap is read whole."""
    _put(tmp_path, "/f", b"a" * 1024)
    assert HostFS(tmp_path).read_bytes("/f", cap=1024) == b"a" * 1024


def test_directory_where_file_expected(tmp_path: Path) -> None:
    """A directory is refused as a file, but listed and reported as a directory."""
    _put(tmp_path, "/etc/containerd/certs.d/host/ca.crt")
    fs = HostFS(tmp_path)
    with pytest.raises(NodeFileError, match="is a directory"):
        fs.read_bytes("/etc/containerd/certs.d/host")
    assert fs.is_dir("/etc/containerd/certs.d/host")
    assert fs.listdir("/etc/containerd/certs.d/host") == ["ca.crt"]
    assert fs.exists("/etc/containerd/certs.d/host/ca.crt")
    assert not fs.exists("/etc/nope")
    assert not fs.is_dir("/etc/containerd/certs.d/host/ca.crt")


def test_missing_file(tmp_path: Path) -> None:
    """A missing file raises NodeFileError naming the node path."""
    with pytest.raises(NodeFileError, match=r"^/etc/missing: cannot read"):
        HostFS(tmp_path).read_bytes("/etc/missing")
    with pytest.raises(NodeFileError, match=r"^/etc/missing: cannot list"):
        HostFS(tmp_path).listdir("/etc/missing")


def test_unreadable_file(tmp_path: Path) -> None:
    """An unreadable file errors; as root (who reads mode 000) a file used as a directory does."""
    if os.geteuid() == 0:
        _put(tmp_path, "/etc/file")
        with pytest.raises(NodeFileError, match=r"^/etc/file/ca.crt: cannot read"):
            HostFS(tmp_path).read_bytes("/etc/file/ca.crt")
        return
    path = _put(tmp_path, "/etc/secret")
    path.chmod(0)
    with pytest.raises(NodeFileError, match=r"^/etc/secret: cannot read \(Permission denied\)"):
        HostFS(tmp_path).read_bytes("/etc/secret")


def test_slash_root_is_plain_filesystem(tmp_path: Path) -> None:
    """Root / resolves like os.path.realpath."""
    _put(tmp_path, "/a/real", b"plain")
    os.symlink(tmp_path / "a/real", tmp_path / "abs")
    os.symlink("a/real", tmp_path / "rel")
    fs = HostFS("/")
    for name in ("abs", "rel", "a/../a/real"):
        assert fs.resolve(tmp_path / name) == os.path.realpath(tmp_path / name)
        assert fs.read_bytes(tmp_path / name) == b"plain"

"""A private containerd daemon and a ``ctr images pull`` runner (infra-recipes §2).

The daemon gets its own root, state, socket and config (CRI plugin disabled),
so it never touches the machine's containerd. ``ctr`` does the pull on the
client side in containerd 1.6, so each ``ctr`` runs in a private mount
namespace with the fleet's resolv.conf and hosts file: names resolve only
through the fleet DNS server, never the machine's resolver.

It refuses to log the ``user:password`` it puts on ``ctr``'s command line, and
strips ``*_PROXY`` variables from ``ctr``'s environment unless a test passes
them explicitly.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.fleet.process import FleetError, ManagedProcess, spawn, wait_until
from tests.fleet.proxy import hermetic_argv

__all__ = ["CONTAINERD_BINARY", "CTR_BINARY", "Containerd", "CtrResult", "start_containerd"]

CONTAINERD_BINARY = "/usr/bin/containerd"
CTR_BINARY = "/usr/bin/ctr"
_NAMESPACE = "pulldoctor-fleet"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; leave room for ".ttrpc"
_PROXY_VARS = {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}


@dataclass(frozen=True)
class CtrResult:
    """What one ``ctr`` run ended with; ``last_line`` is the last non-empty stderr line."""

    returncode: int
    stderr: str
    last_line: str
    stdout: str = ""
    timed_out: bool = False
    seconds: float = 0.0


def _clean_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env.update(extra or {})
    return env


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


@dataclass
class Containerd:
    """A running private containerd; ``socket`` is its gRPC address."""

    socket: Path
    root: Path
    log: Path
    resolv_conf: Path
    hosts_file: Path
    process: ManagedProcess | None = field(default=None, repr=False)
    namespace: str = _NAMESPACE
    _tmp_socket_dir: Path | None = field(default=None, repr=False)

    def ctr(
        self, *args: str, timeout: float = 30, env: Mapping[str, str] | None = None
    ) -> CtrResult:
        """Run ``ctr -a SOCKET -n NAMESPACE ARGS…`` hermetically and capture its output."""
        argv = hermetic_argv(
            [CTR_BINARY, "-a", str(self.socket), "-n", self.namespace, *args],
            self.resolv_conf,
            self.hosts_file,
        )
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                timeout=timeout,
                check=False,
                env=_clean_env(env),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            err = _text(exc.stderr)
            return CtrResult(
                -9, err, _last_line(err), _text(exc.stdout), True, time.monotonic() - started
            )
        err = _text(done.stderr)
        return CtrResult(
            done.returncode,
            err,
            _last_line(err),
            _text(done.stdout),
            False,
            time.monotonic() - started,
        )

    def pull(
        self,
        ref: str,
        *,
        hosts_dir: Path | None = None,
        user: str | None = None,
        plain_http: bool = False,
        timeout: float = 30,
        env: Mapping[str, str] | None = None,
    ) -> CtrResult:
        """``ctr images pull [--hosts-dir D] [--user U] [--plain-http] REF``."""
        args = ["images", "pull"]
        if hosts_dir is not None:
            args += ["--hosts-dir", str(hosts_dir)]
        if user is not None:
            args += ["--user", user]
        if plain_http:
            args.append("--plain-http")
        return self.ctr(*args, ref, timeout=timeout, env=env)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5)
        if self._tmp_socket_dir is not None:
            shutil.rmtree(self._tmp_socket_dir, ignore_errors=True)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _config(root: Path, state: Path, sock: Path) -> str:
    return f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


def _socket_answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def start_containerd(
    workdir: Path, resolv_conf: Path, hosts_file: Path, timeout: float = 20.0
) -> Containerd:
    """Start the daemon and wait until ``ctr version`` answers."""
    base = workdir / "containerd"
    root, state = base / "root", base / "state"
    for d in (root, state):
        d.mkdir(parents=True, exist_ok=True)
    sock, tmp = base / "containerd.sock", None
    if len(str(sock)) > _MAX_SOCKET_PATH:
        tmp = Path(tempfile.mkdtemp(prefix="pdfleet-ctrd-"))
        sock = tmp / "containerd.sock"
    config = base / "config.toml"
    config.write_text(_config(root, state, sock))
    log = workdir / "logs" / "containerd.log"
    proc = spawn("containerd", [CONTAINERD_BINARY, "--config", str(config)], log)
    daemon = Containerd(sock, root, log, resolv_conf, hosts_file, proc, _tmp_socket_dir=tmp)
    try:
        wait_until(
            lambda: _socket_answers(sock),
            what="containerd",
            log=log,
            timeout=timeout,
            check=proc.check_alive,
        )
        version = daemon.ctr("version", timeout=timeout)
        if version.returncode != 0:
            raise FleetError(f"containerd: `ctr version` failed: {version.last_line}; see {log}")
    except BaseException:
        daemon.stop()
        raise
    return daemon

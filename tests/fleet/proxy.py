"""Real tinyproxy instances (infra-recipes §5): an open CONNECT proxy and one with Basic auth.

Both allow CONNECT only to the ports listed by the fleet (its TLS ports, the
closed port and the fault ports), so CONNECT to any other port — the plain
registry's, for instance — is refused with 403. ``auth`` requires
proxyuser/proxypass (407 without credentials, 401 for wrong ones).

Hermetic name resolution: tinyproxy runs in its own mount namespace where
``/etc/resolv.conf`` and ``/etc/hosts`` are the fleet's files, so it can only
ask the fleet DNS server (which refuses everything outside ``.test``); a
tinyproxy filter additionally denies every destination but 127.0.0.1, ::1,
localhost and ``*.test``. It refuses to run without that namespace: if
``unshare`` fails, start-up fails.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.fleet.accounts import PROXY_PASSWORD, PROXY_USER
from tests.fleet.process import ManagedProcess, Stoppable, spawn, wait_until
from tests.fleet.sockets import LOOPBACK, allocate_ports

__all__ = ["TINYPROXY_BINARY", "Proxy", "hermetic_argv", "start_proxies"]

TINYPROXY_BINARY = "/usr/bin/tinyproxy"
# destinations tinyproxy may connect to: loopback literals and the fleet zone only
_FILTER = "^127\\.0\\.0\\.1$\n^::1$\n^localhost$\n\\.test$\n"


@dataclass
class Proxy:
    """One running tinyproxy; ``credentials`` is None for the open proxy."""

    name: str
    port: int
    log: Path
    config: Path
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def hermetic_argv(argv: list[str], resolv_conf: Path, hosts_file: Path) -> list[str]:
    """Wrap ``argv`` so it runs with the fleet's resolv.conf and hosts file bind-mounted."""
    script = (
        'mount --bind "$0" /etc/resolv.conf && mount --bind "$1" /etc/hosts && shift && exec "$@"'
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        str(resolv_conf),
        str(hosts_file),
        *argv,
    ]


def _config(
    port: int, connect_ports: Iterable[int], pidfile: Path, filter_file: Path, auth: bool
) -> str:
    lines = [
        f"Port {port}",
        f"Listen {LOOPBACK}",
        "Timeout 30",
        "MaxClients 64",
        "Allow 127.0.0.1",
        "LogLevel Info",
        f'PidFile "{pidfile}"',
        f'Filter "{filter_file}"',
        "FilterType ere",
        "FilterDefaultDeny Yes",
        *(f"ConnectPort {p}" for p in sorted(set(connect_ports))),
    ]
    if auth:
        lines.append(f"BasicAuth {PROXY_USER} {PROXY_PASSWORD}")
    return "\n".join(lines) + "\n"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_proxies(
    workdir: Path,
    connect_ports: Iterable[int],
    resolv_conf: Path,
    hosts_file: Path,
    started: list[Stoppable],
    timeout: float = 10.0,
) -> dict[str, Proxy]:
    """Start ``open`` and ``auth`` and wait until both accept connections."""
    directory = workdir / "tinyproxy"
    directory.mkdir(parents=True, exist_ok=True)
    filter_file = directory / "filter"
    filter_file.write_text(_FILTER)
    ports = list(connect_ports)
    proxies: dict[str, Proxy] = {}
    for (name, auth), port in zip((("open", False), ("auth", True)), allocate_ports(2)):
        config = directory / f"{name}.conf"
        config.write_text(_config(port, ports, directory / f"{name}.pid", filter_file, auth))
        config.chmod(0o600)
        log = workdir / "logs" / f"tinyproxy-{name}.log"
        argv = hermetic_argv([TINYPROXY_BINARY, "-d", "-c", str(config)], resolv_conf, hosts_file)
        proxy = Proxy(
            name,
            port,
            log,
            config,
            (PROXY_USER, PROXY_PASSWORD) if auth else None,
            spawn(f"tinyproxy {name!r}", argv, log),
        )
        started.append(proxy)
        proxies[name] = proxy
    for proxy in proxies.values():
        assert proxy.process is not None
        wait_until(
            functools.partial(_listening, proxy.port),
            what=f"tinyproxy {proxy.name!r}",
            log=proxy.log,
            timeout=timeout,
            check=proxy.process.check_alive,
        )
    return proxies

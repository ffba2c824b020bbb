"""The test fleet: real servers on loopback that every test, the demo and the benchmarks use.

Why: pulldoctor diagnoses real network, TLS, auth and registry failures, so its
tests talk to real servers — the Debian ``docker-registry``, tinyproxy,
containerd — plus small in-process servers for what those cannot do (DNS
rcodes, rate limits, HTML front pages, silent or resetting sockets).

Usage::

    from tests.fleet import Fleet
    with Fleet.start(workdir) as fleet:
        fleet.registries["tls"].url

Everything binds 127.0.0.1 on kernel-chosen ports, except the DNS listener on
127.0.0.153:53. Leaving the ``with`` block (normally or by an exception, also
one raised during start-up) stops every thread, closes every socket and kills
every child process by its PID. A component that does not come up fails
start-up with a :class:`FleetError` naming it and its log file.

Public attributes of :class:`Fleet`:

``workdir``, ``logs_dir``
    the work directory and ``workdir/logs`` (one log file per component).
``ca_file``, ``other_ca_file``
    PEM of the trusted CA (the "good" TLS servers) and of an unrelated CA.
``certs_dir``
    containerd ``certs.d`` root: ``127.0.0.1:PORT/hosts.toml`` and
    ``registry.test:PORT/hosts.toml`` for every TLS registry (``server``, ``ca``
    and a ``[host."https://…"]`` table with ``capabilities = ["pull", "resolve"]``).
``registries``
    ``dict[str, Registry]`` — ``plain``, ``tls``, ``basic``, ``token``,
    ``expired``, ``notyet``, ``mismatch``, ``untrusted`` (see
    :mod:`tests.fleet.registry`); each has ``name``, ``host``, ``port``,
    ``scheme``, ``url``, ``log``.
``token_server``
    :class:`~tests.fleet.tokenserver.TokenServer`; ``url`` is the realm.
``images``
    ``dict[str, PushedImage]`` — ``hello``, ``multi``, ``otherarch``,
    ``public``, ``dockerlist`` (see :mod:`tests.fleet.images`), with digests.
``dns``
    :class:`~tests.fleet.dnsserver.DnsServer` — ``address``/``port``
    (127.0.0.1, kernel port), ``system_address``/``system_port``
    (127.0.0.153:53), ``queries``.
``resolv_conf``, ``hosts_file``
    a resolv.conf (``nameserver 127.0.0.153``, ``search corp.test``,
    ``options ndots:1 timeout:1 attempts:1``) and a hosts file
    (localhost and ``hostsonly.test`` → 127.0.0.1).
``proxies``
    ``dict[str, Proxy]`` — ``open`` and ``auth`` (proxyuser/proxypass) tinyproxy;
    each has ``url`` and ``port``.
``closed_port``, ``silent_port``, ``blackhole_port``, ``reset_port``
    TCP ports on 127.0.0.1 that refuse, stay silent, time out, and reset.
``quirky``
    ``dict[str, QuirkyServer]`` — ``html``, ``ratelimit``, ``error500``,
    ``forbidden``, ``manifest500`` (see :mod:`tests.fleet.quirky`); each
    records what it received in ``.requests``.
``containerd``
    None until :meth:`Fleet.start_containerd` is called.
``startup_seconds``
    seconds spent per start-up phase (and ``total``).

The test accounts live in :mod:`tests.fleet.accounts`. The fleet refuses to
touch any non-loopback address, to forward DNS, and to kill anything it did
not start.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fleet.accounts import ALICE, BOB, PROXY_PASSWORD, PROXY_USER
from tests.fleet.certs import FleetCerts, make_certs
from tests.fleet.containerd import Containerd, CtrResult, start_containerd
from tests.fleet.dnsserver import DnsServer, start_dns
from tests.fleet.dockerconfig import write_docker_config
from tests.fleet.images import PushedImage, push_images
from tests.fleet.process import FleetError, Stoppable
from tests.fleet.proxy import Proxy, start_proxies
from tests.fleet.quirky import QuirkyServer, RecordedRequest, start_quirky_servers
from tests.fleet.registry import Registry, start_registries
from tests.fleet.sockets import FaultSockets
from tests.fleet.tokenserver import TokenServer, start_token_server

__all__ = [
    "ALICE",
    "BOB",
    "PROXY_PASSWORD",
    "PROXY_USER",
    "Containerd",
    "CtrResult",
    "DnsServer",
    "Fleet",
    "FleetError",
    "Proxy",
    "PushedImage",
    "QuirkyServer",
    "RecordedRequest",
    "Registry",
    "TokenServer",
]

RESOLV_CONF = "nameserver 127.0.0.153\nsearch corp.test\noptions ndots:1 timeout:1 attempts:1\n"
HOSTS_FILE = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.0.1 hostsonly.test\n"


def _stop_all(items: list[Any]) -> None:
    """Stop in reverse start order; keep going past failures and raise the first one."""
    first: BaseException | None = None
    for item in reversed(items):
        try:
            item.stop()
        except BaseException as exc:  # noqa: BLE001 - every component must get its stop()
            first = first or exc
    if first is not None:
        raise first


def _hosts_toml(server: str, ca_file: Path) -> str:
    return (
        f'server = "{server}"\nca = "{ca_file}"\n\n'
        f'[host."{server}"]\n  capabilities = ["pull", "resolve"]\n  ca = "{ca_file}"\n'
    )


def write_certs_dir(certs_dir: Path, registries: dict[str, Registry], ca_file: Path) -> None:
    """A containerd hosts dir entry per TLS registry, by IP and by ``registry.test``."""
    for reg in registries.values():
        if reg.scheme != "https":
            continue
        for host in (f"127.0.0.1:{reg.port}", f"registry.test:{reg.port}"):
            (certs_dir / host).mkdir(parents=True, exist_ok=True)
            (certs_dir / host / "hosts.toml").write_text(_hosts_toml(f"https://{host}", ca_file))


@dataclass
class Fleet:
    """Every running fleet component; build it with :meth:`Fleet.start`."""

    workdir: Path
    logs_dir: Path
    ca_file: Path
    other_ca_file: Path
    certs_dir: Path
    registries: dict[str, Registry]
    token_server: TokenServer
    images: dict[str, PushedImage]
    dns: DnsServer
    resolv_conf: Path
    hosts_file: Path
    proxies: dict[str, Proxy]
    closed_port: int
    silent_port: int
    blackhole_port: int
    reset_port: int
    quirky: dict[str, QuirkyServer]
    startup_seconds: dict[str, float]
    containerd: Containerd | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _configs: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path) -> Iterator[Fleet]:
        """Start the whole fleet in ``workdir``; stop all of it when the block exits."""
        with contextlib.ExitStack() as stack:
            fleet = _build(Path(workdir).resolve(), stack)
            yield fleet

    def start_containerd(self) -> Containerd:
        """Start the private containerd once (later calls return the same one).

        Call it from a thread that lives as long as the fleet (normally the main
        thread): the daemon gets a parent-death signal tied to the calling thread.
        """
        with self._lock:
            if self.containerd is None:
                began = time.monotonic()
                self.containerd = start_containerd(self.workdir, self.resolv_conf, self.hosts_file)
                self._stack.callback(self.containerd.stop)
                self.startup_seconds["containerd"] = time.monotonic() - began
            return self.containerd

    def docker_config(
        self, entries: dict[str, tuple[str, str]], path: Path | None = None, shape: str = "auths"
    ) -> Path:
        """Write a docker config in ``shape`` (auths/username/dockercfg); return its path."""
        if path is None:
            path = self.workdir / "docker-configs" / f"config-{next(self._configs)}.json"
        return write_docker_config(entries, path, shape)

    def pids(self) -> list[int]:
        """PIDs of every child process the fleet is running."""
        procs = [r.process for r in self.registries.values()]
        procs += [p.process for p in self.proxies.values()]
        procs.append(self.containerd.process if self.containerd else None)
        return [p.pid for p in procs if p is not None and p.alive()]

    def summary(self) -> dict[str, object]:
        """Hosts, ports and paths as JSON-ready data (no credentials)."""
        return {
            "workdir": str(self.workdir),
            "ca_file": str(self.ca_file),
            "other_ca_file": str(self.other_ca_file),
            "certs_dir": str(self.certs_dir),
            "registries": {
                n: {
                    "host": r.host,
                    "url": r.url,
                    "port": r.port,
                    "scheme": r.scheme,
                    "log": str(r.log),
                }
                for n, r in self.registries.items()
            },
            "token_server": {"url": self.token_server.url, "port": self.token_server.port},
            "images": {
                k: {
                    "repository": i.repository,
                    "tag": i.tag,
                    "digest": i.digest,
                    "media_type": i.media_type,
                    "platforms": i.platforms,
                }
                for k, i in self.images.items()
            },
            "dns": {
                "address": self.dns.address,
                "port": self.dns.port,
                "system_address": self.dns.system_address,
                "system_port": self.dns.system_port,
            },
            "resolv_conf": str(self.resolv_conf),
            "hosts_file": str(self.hosts_file),
            "proxies": {n: {"url": p.url, "port": p.port} for n, p in self.proxies.items()},
            "ports": {
                "closed": self.closed_port,
                "silent": self.silent_port,
                "blackhole": self.blackhole_port,
                "reset": self.reset_port,
            },
            "quirky": {n: {"url": q.url, "port": q.port} for n, q in self.quirky.items()},
            "containerd": {"socket": str(self.containerd.socket)} if self.containerd else None,
            "startup_seconds": {k: round(v, 3) for k, v in self.startup_seconds.items()},
        }


def _timed(timings: dict[str, float], phase: str, fn: Callable[[], Any]) -> Any:
    began = time.monotonic()
    try:
        return fn()
    finally:
        timings[phase] = time.monotonic() - began


def _build(workdir: Path, stack: contextlib.ExitStack) -> Fleet:
    """Start every component, registering its stop on ``stack`` the moment it exists."""
    began, t = time.monotonic(), dict[str, float]()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    certs: FleetCerts = _timed(t, "certs", lambda: make_certs(workdir / "certs"))
    resolv_conf, hosts_file = workdir / "resolv.conf", workdir / "hosts"
    resolv_conf.write_text(RESOLV_CONF)
    hosts_file.write_text(HOSTS_FILE)
    started: list[Stoppable] = []
    stack.callback(_stop_all, started)
    faults = FaultSockets.start()
    started.append(faults)
    dns: DnsServer = _timed(t, "dns", lambda: start_dns(logs / "dns.log"))
    started.append(dns)
    token = start_token_server(certs, logs / "token-server.log")
    started.append(token)
    quirky = start_quirky_servers(logs, started)
    registries: dict[str, Registry] = _timed(
        t, "registries", lambda: start_registries(workdir, certs, token.url, started)
    )
    images = _timed(t, "images", lambda: push_images(registries["plain"].url))
    certs_dir = workdir / "certs.d"
    write_certs_dir(certs_dir, registries, certs.ca_file)
    connect_ports = [r.port for r in registries.values() if r.scheme == "https"]
    connect_ports += [
        token.port,
        faults.closed_port,
        faults.silent_port,
        faults.reset_port,
        faults.blackhole_port,
    ]
    proxies = _timed(
        t,
        "proxies",
        lambda: start_proxies(workdir, connect_ports, resolv_conf, hosts_file, started),
    )
    t["total"] = time.monotonic() - began
    fleet = Fleet(
        workdir=workdir,
        logs_dir=logs,
        ca_file=certs.ca_file,
        other_ca_file=certs.other_ca_file,
        certs_dir=certs_dir,
        registries=registries,
        token_server=token,
        images=images,
        dns=dns,
        resolv_conf=resolv_conf,
        hosts_file=hosts_file,
        proxies=proxies,
        closed_port=faults.closed_port,
        silent_port=faults.silent_port,
        blackhole_port=faults.blackhole_port,
        reset_port=faults.reset_port,
        quirky=quirky,
        startup_seconds=t,
        _stack=stack,
    )
    return fleet

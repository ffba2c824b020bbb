"""The node's view of the network: its resolver and sockets we can cut at a deadline
(:mod:`probes._transport` is the httpx transport that dials through both).

Why this exists: httpx resolves names with the process's own resolver and has no
overall deadline (its timeouts restart with every read). A probe must instead
resolve as the node does (its resolv.conf, hosts file, or an explicit DNS
server) and must end by its deadline even when a hostile server drips one byte a
second. So every socket a probe opens is registered with a :class:`SocketSet`,
and a single :class:`Watchdog` thread shuts those sockets down when the
deadline passes, which wakes any blocked read. This module refuses to guess a
timeout of its own: the caller always passes one. It does not import httpx, so a
probe that fails before any HTTP layer never loads the HTTP stack.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.resolver

__all__ = [
    "DnsSettings", "NodeResolver", "Resolution", "SocketSet", "Watchdog", "WATCHDOG",
    "connect", "is_ip", "MAX_ADDRESSES",
]

#: Addresses kept from one answer; a hostile DNS server may send hundreds.
MAX_ADDRESSES = 16


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """Where the node's name resolution comes from."""

    resolv_conf: Path = Path("/etc/resolv.conf")
    hosts_file: Path | None = Path("/etc/hosts")
    server: str | None = None  # HOST[:PORT] overriding resolv.conf's nameservers

    def server_address(self) -> tuple[str, int] | None:
        if not self.server:
            return None
        text = self.server.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            return host, int(rest[1:]) if rest.startswith(":") else 53
        if text.count(":") == 1:
            host, port = text.split(":")
            return host, int(port)
        return text, 53


@dataclass(frozen=True, slots=True)
class Resolution:
    """The addresses one name resolved to, and how."""

    name: str
    addresses: tuple[str, ...]
    source: str  # "literal", "hosts file", "dns"
    canonical: str | None = None
    total: int = 0  # before truncation to MAX_ADDRESSES
    errors: tuple[str, ...] = ()


def _read_hosts(path: Path | None) -> dict[str, list[str]]:
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:1_000_000]
    except OSError:
        return {}
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not is_ip(fields[0]):
            continue
        for name in fields[1:]:
            table.setdefault(name.lower().rstrip("."), []).append(fields[0])
    return table


class NodeResolver:
    """Resolve names as the node does: hosts file first, then the node's DNS servers.

    dnspython (tens of milliseconds to import) and resolv.conf are loaded by
    :meth:`configure`, on the first name that needs the DNS servers: IP literals
    and hosts-file names never do, so a one-shot probe of ``127.0.0.1:5000`` skips both.
    """

    def __init__(self, settings: DnsSettings) -> None:
        self.settings = settings
        self._hosts = _read_hosts(settings.hosts_file)
        self._cache: dict[str, Resolution] = {}
        self._lock = threading.Lock()
        self._configure_lock = threading.Lock()
        self._config_error: str | None = None
        self._resolver: dns.resolver.Resolver | None = None

    def configure(self) -> dns.resolver.Resolver:
        """Load dnspython and the node's resolver configuration, once (thread-safe)."""
        with self._configure_lock:
            if self._resolver is None:
                self._resolver = self._make_resolver()
            return self._resolver

    @property
    def resolver(self) -> dns.resolver.Resolver:
        """dnspython's resolver with the node's nameservers, search list and options."""
        return self._resolver or self.configure()

    @property
    def config_error(self) -> str | None:
        """Why resolv.conf could not be used (None when it could, or a server was given)."""
        self.configure()
        return self._config_error

    def _make_resolver(self) -> dns.resolver.Resolver:
        import dns.resolver  # deferred: see the class docstring

        override = self.settings.server_address()
        try:
            resolver = dns.resolver.Resolver(filename=str(self.settings.resolv_conf), configure=True)
        except (dns.resolver.NoResolverConfiguration, OSError, ValueError) as exc:
            resolver = dns.resolver.Resolver(configure=False)
            if override is None:
                self._config_error = f"cannot use {self.settings.resolv_conf}: {exc}"
        if override is not None:
            resolver.nameservers = [override[0]]
            resolver.port = override[1]
        return resolver

    @property
    def nameservers(self) -> list[str]:
        port = self.resolver.port
        return [f"{ns}:{port}" if port != 53 else str(ns) for ns in self.resolver.nameservers]

    @property
    def search(self) -> list[str]:
        return [str(name).rstrip(".") for name in self.resolver.search]

    def resolve(self, host: str, timeout: float) -> Resolution:
        """Return the addresses of ``host``; raise the dnspython error when there are none."""
        host = host.strip("[]").lower().rstrip(".")
        with self._lock:
            cached = self._cache.get(host)
        if cached is not None:
            return cached
        result = self._resolve(host, timeout)
        with self._lock:
            self._cache[host] = result
        return result

    def _resolve(self, host: str, timeout: float) -> Resolution:
        if is_ip(host):
            return Resolution(host, (host,), "literal", total=1)
        if host in self._hosts:
            found = self._hosts[host]
            return Resolution(host, tuple(found[:MAX_ADDRESSES]), "hosts file", total=len(found))
        return self._query(host, timeout)

    def _query(self, host: str, timeout: float) -> Resolution:
        """Ask the node's DNS servers for A, then AAAA records, within ``timeout``."""
        import dns.exception
        import dns.resolver

        if self.config_error:
            raise dns.resolver.NoNameservers()
        deadline = time.monotonic() + max(timeout, 0.01)
        addresses: list[str] = []
        canonical: str | None = None
        errors: list[BaseException] = []
        for rdtype in ("A", "AAAA"):
            left = deadline - time.monotonic()
            if left <= 0:
                errors.append(dns.resolver.LifetimeTimeout(timeout=timeout, errors=[]))
                break
            try:
                answer = self.resolver.resolve(host, rdtype, search=True, lifetime=left)
            except dns.exception.DNSException as exc:
                errors.append(exc)
                continue
            canonical = canonical or str(answer.canonical_name).rstrip(".")
            addresses.extend(rr.to_text() for rr in answer)
        if not addresses:
            raise _most_telling(errors)
        unique = list(dict.fromkeys(addresses))
        return Resolution(
            host, tuple(unique[:MAX_ADDRESSES]), "dns", canonical, len(unique),
            tuple(f"{type(e).__name__}" for e in errors),
        )


def _most_telling(errors: list[BaseException]) -> BaseException:
    """Pick the error that explains an empty answer best: NXDOMAIN, then timeouts, then any."""
    import dns.exception
    import dns.resolver

    for kind in (dns.resolver.NXDOMAIN, dns.exception.Timeout, dns.resolver.NoNameservers):
        for exc in errors:
            if isinstance(exc, kind):
                return exc
    return errors[0] if errors else dns.resolver.NoAnswer()


class Watchdog:
    """One daemon thread that runs callbacks at deadlines (cheaper than a Timer per probe)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, callback: Callable[[], None]) -> int:
        with self._cond:
            handle = next(self._ids)
            heapq.heappush(self._heap, (when, handle, callback))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="pulldoctor-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
            return handle

    def cancel(self, handle: int) -> None:
        with self._cond:
            self._cancelled.add(handle)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, handle, callback = self._heap[0]
                delay = when - time.monotonic()
                if handle in self._cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled.discard(handle)
                    continue
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failing callback must not stop the watchdog
                pass


WATCHDOG = Watchdog()


class SocketSet:
    """Every socket one probe opened, so a deadline can shut them all down."""

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.expired = False

    def add(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)
        return sock

    def shutdown_all(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def close_all(self) -> None:
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass
            self._sockets.clear()

    def reset(self) -> None:
        with self._lock:
            self.expired = False


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def connect(address: str, port: int, timeout: float, sockets: SocketSet) -> socket.socket:
    """Open a TCP connection to one address, registered with ``sockets``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = sockets.add(socket.socket(family, socket.SOCK_STREAM))
    try:
        sock.settimeout(max(timeout, 0.001))
        sock.connect((address, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock

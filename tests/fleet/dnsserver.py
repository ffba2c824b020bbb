"""The fleet's authoritative DNS server for ``.test`` (dnslib, in-process threads).

It listens on UDP and TCP at two places: 127.0.0.1 on a kernel-chosen port
(``address``/``port``, for dnspython with an explicit port) and 127.0.0.153:53
(``system_address``/``system_port``, so a resolv.conf ``nameserver
127.0.0.153`` works for glibc and Go). The port-53 sockets use ``SO_REUSEPORT``
so two fleets on one machine can both serve the (identical) zone; anything else
holding that address makes start-up fail loudly.

Zone (names are case-insensitive):

=======================================  =======================================================
``registry.test``, ``*.registry.test``   A 127.0.0.1, AAAA ::1
``registry.corp.test``                   A 127.0.0.1 (for search-list tests)
``*.nx.test``                            NXDOMAIN
``*.servfail.test``                      SERVFAIL
``*.refused.test``                       REFUSED
``*.drop.test``                          no reply at all
``noaddr.test``                          NOERROR, no records
``big.test``                             300 A records in 127.0.0.0/8 (truncated over UDP)
``loop.test`` / ``loop2.test``           CNAME loop
``test`` (the apex)                      NOERROR, no records
anything else under ``.test``            NXDOMAIN (also ``hostsonly.test``: hosts file only)
anything outside ``.test``               REFUSED (it never forwards)
=======================================  =======================================================

UDP answers larger than 512 bytes are truncated (TC bit, question kept, no
records), so clients must retry over TCP. Every query is recorded in
:attr:`DnsServer.queries` and logged to the log file.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, SOA, A, DNSRecord  # type: ignore[import-untyped]
from dnslib.dns import DNSError  # type: ignore[import-untyped]
from dnslib.server import BaseResolver, DNSHandler, DNSLogger  # type: ignore[import-untyped]

from tests.fleet.process import FleetError
from tests.fleet.sockets import LOOPBACK, record

__all__ = ["BIG_COUNT", "SYSTEM_ADDRESS", "DnsQuery", "DnsServer", "FleetZone", "start_dns"]

SYSTEM_ADDRESS = "127.0.0.153"
SYSTEM_PORT = 53
BIG_COUNT = 300
_UDP_LIMIT = 512
_TTL = 30
_SOA = SOA("ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, 5))


@dataclass(frozen=True)
class DnsQuery:
    """One query the server received."""

    qname: str
    qtype: str
    protocol: str
    server: str


def _in(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def big_addresses() -> list[str]:
    """The ``big.test`` addresses: 300 distinct 127.0.x.y, never .0 or .255."""
    return [f"127.0.{i // 200}.{i % 200 + 1}" for i in range(BIG_COUNT)]


class FleetZone(BaseResolver):  # type: ignore[misc]
    """The zone table above; ``queries`` collects what was asked."""

    def __init__(self, log: Path) -> None:
        self.queries: list[DnsQuery] = []
        self._log = log
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        host, port = handler.server.server_address[:2]
        server = f"{host}:{port}"
        record(self.queries, DnsQuery(qname, str(qtype), handler.protocol, server))
        reply = request.reply()
        outcome = self._fill(qname, request.q.qtype, reply)
        with self._lock, self._log.open("a") as out:
            out.write(f"{server} {handler.protocol} {qname} {qtype} -> {outcome}\n")
        if outcome == "drop":
            raise DNSError("dropped on purpose")  # dnslib swallows it: no reply is sent
        return reply

    def _fill(self, name: str, qtype: int, reply: DNSRecord) -> str:
        if not _in(name, "test"):
            return self._rcode(reply, RCODE.REFUSED, soa=False)
        if _in(name, "drop.test"):
            return "drop"
        for zone, rcode in (
            ("nx.test", RCODE.NXDOMAIN),
            ("servfail.test", RCODE.SERVFAIL),
            ("refused.test", RCODE.REFUSED),
        ):
            if _in(name, zone):
                return self._rcode(reply, rcode, soa=rcode == RCODE.NXDOMAIN)
        records = self._records(name, qtype)
        if records is None:
            return self._rcode(reply, RCODE.NXDOMAIN, soa=True)
        for rr in records:
            reply.add_answer(rr)
        if not records:
            reply.add_auth(RR("test.", QTYPE.SOA, rdata=_SOA, ttl=_TTL))
        return f"NOERROR ({len(records)} records)"

    @staticmethod
    def _rcode(reply: DNSRecord, rcode: int, *, soa: bool) -> str:
        reply.header.rcode = rcode
        if soa:
            reply.add_auth(RR("test.", QTYPE.SOA, rdata=_SOA, ttl=_TTL))
        return str(RCODE[rcode])

    @staticmethod
    def _records(name: str, qtype: int) -> list[RR] | None:
        """The answer records, [] for NODATA, None for NXDOMAIN."""
        a, aaaa = qtype in (QTYPE.A, QTYPE.ANY), qtype in (QTYPE.AAAA, QTYPE.ANY)
        if _in(name, "registry.test"):
            return ([RR(name, QTYPE.A, rdata=A("127.0.0.1"), ttl=_TTL)] if a else []) + (
                [RR(name, QTYPE.AAAA, rdata=AAAA("::1"), ttl=_TTL)] if aaaa else []
            )
        if name == "registry.corp.test":
            return [RR(name, QTYPE.A, rdata=A("127.0.0.1"), ttl=_TTL)] if a else []
        if name in ("noaddr.test", "test"):
            return []
        if name == "big.test":
            return [RR(name, QTYPE.A, rdata=A(ip), ttl=_TTL) for ip in big_addresses()] if a else []
        if name in ("loop.test", "loop2.test"):
            other = "loop2.test" if name == "loop.test" else "loop.test"
            return [
                RR(name, QTYPE.CNAME, rdata=CNAME(other + "."), ttl=_TTL),
                RR(other, QTYPE.CNAME, rdata=CNAME(name + "."), ttl=_TTL),
            ]
        return None


class _Handler(DNSHandler):  # type: ignore[misc]
    """dnslib's handler, but UDP truncation keeps the question (as real servers do)."""

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp" and len(packed) > _UDP_LIMIT:
            short = DNSRecord(header=reply.header, q=reply.q)
            short.header.tc = 1
            packed = short.pack()
        return packed


class _UDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


class _TCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True


class _SharedUDP(_UDP):
    allow_reuse_port = True


class _SharedTCP(_TCP):
    allow_reuse_port = True


@dataclass
class DnsServer:
    """The running DNS server: four listeners (UDP+TCP on two addresses)."""

    address: str
    port: int
    log: Path
    queries: list[DnsQuery] = field(repr=False)
    _servers: list[socketserver.BaseServer] = field(repr=False)
    _threads: list[threading.Thread] = field(repr=False)
    system_address: str = SYSTEM_ADDRESS
    system_port: int = SYSTEM_PORT

    def stop(self) -> None:
        """Stop every listener thread and close its socket."""
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)


def _serve(
    server_cls: type[socketserver.BaseServer], where: tuple[str, int], zone: FleetZone
) -> socketserver.BaseServer:
    srv = server_cls(where, _Handler)
    srv.resolver = zone  # type: ignore[attr-defined]
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
    srv.logger = quiet  # type: ignore[attr-defined]
    return srv


def _port(server: socketserver.BaseServer) -> int:
    address = server.server_address
    assert isinstance(address, tuple)
    return int(address[1])


def _pair_on_free_port(zone: FleetZone) -> list[socketserver.BaseServer]:
    """UDP and TCP on the same kernel-chosen port of 127.0.0.1 (retried if TCP is taken)."""
    for _ in range(10):
        udp = _serve(_UDP, (LOOPBACK, 0), zone)
        port = _port(udp)
        try:
            return [udp, _serve(_TCP, (LOOPBACK, port), zone)]
        except OSError:
            udp.server_close()
    raise FleetError("dns: could not find a port free for both UDP and TCP on 127.0.0.1")


def _pair_on_system_port(zone: FleetZone) -> list[socketserver.BaseServer]:
    made: list[socketserver.BaseServer] = []
    try:
        for cls in (_SharedUDP, _SharedTCP):
            made.append(_serve(cls, (SYSTEM_ADDRESS, SYSTEM_PORT), zone))
    except OSError as exc:
        for srv in made:
            srv.server_close()
        raise FleetError(
            f"dns: cannot bind {SYSTEM_ADDRESS}:{SYSTEM_PORT} ({exc}); the fleet needs it for "
            "resolv.conf tests (run as root, and stop whatever else holds that address)"
        ) from exc
    return made


def start_dns(log: Path) -> DnsServer:
    """Bind all four listeners, then start one thread per listener."""
    zone = FleetZone(log)
    log.touch()
    servers = _pair_on_free_port(zone)
    try:
        servers += _pair_on_system_port(zone)
    except FleetError:
        for srv in servers:
            srv.server_close()
        raise
    threads = []
    for srv in servers:
        t = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.05}, name="fleet-dns", daemon=True
        )
        t.start()
        threads.append(t)
    return DnsServer(LOOPBACK, _port(servers[0]), log, zone.queries, servers, threads)

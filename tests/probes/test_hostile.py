"""The layered probe against hostile servers: each ends by its deadline with a diagnosis.

Every case runs a real server from :mod:`tests.probes.hostile` on 127.0.0.1 (or
the fleet's DNS for ``big.test`` and ``loop.test``) and asserts two things: the
probe returned within its timeout + 1 s, and it named the expected code at the
expected layer. Where a cap is measurable (bytes the server managed to send,
bytes a bounded read kept, memory of a probe process) it is asserted too.
The table of cases, codes, times and bytes is printed at the end of the module
(``pytest -s`` shows it).

Byte caps under test: response heads are limited by httpcore's h11 setting
(``HTTP11Connection.MAX_INCOMPLETE_EVENT_SIZE``, 100 KiB); bodies by
``probes._http.MAX_BODY`` (256 KiB), ``probes.token.MAX_TOKEN_RESPONSE``
(1 MiB) and ``probes.manifest.MAX_INDEX`` (4 MiB); ``WWW-Authenticate`` by
``probes.wwwauth.MAX_HEADER``/``MAX_PARAMS``; DNS answers by
``probes._net.MAX_ADDRESSES`` and TCP attempts by ``probes.tcp.MAX_TRIED``.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore
import pytest
import trustme

from probes import Code, ProbeReport, Status
from probes._http import MAX_BODY, exchange
from probes._net import MAX_ADDRESSES, DnsSettings
from probes.credentials import Credential, Keyring
from probes.engine import run_probe
from probes.manifest import MAX_INDEX
from probes.reference import parse_reference
from probes.state import ProbeOptions, ProbeState, Target
from probes.tcp import MAX_TRIED
from probes.token import MAX_REDIRECTS, MAX_TOKEN_RESPONSE
from tests.fleet import Fleet
from tests.fleet.dnsserver import BIG_COUNT, big_addresses
from tests.probes.conftest import ProbeFn
from tests.probes.hostile import (
    API_HEADER,
    OCI_INDEX,
    OCI_MANIFEST,
    HostileServer,
    Registry,
    big_header,
    drip_head,
    endless_body,
    late_plain_http,
    many_params_challenge,
    redirect,
    sized_body,
    tls_cut_handshake,
    tls_garbage,
    tls_then_silent,
)

TIMEOUT = 2.0
#: How late a probe may end: its timeout plus one second of slack.
BUDGET = TIMEOUT + 1.0
MIB = 1024 * 1024
#: h11's limit on a response head, as httpcore configures it.
HEAD_LIMIT = httpcore._sync.http11.HTTP11Connection.MAX_INCOMPLETE_EVENT_SIZE
SECRET = "hostile-secret-password"
OTHER_HOST = "other.hostile.test"
ROWS: list[tuple[str, str, str, float, str]] = []


@dataclass(frozen=True)
class Env:
    """Files a probe needs: a hosts file naming the other host, a resolv.conf, a CA."""

    hosts_file: Path
    resolv_conf: Path
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """A node view with only a hosts file, and a CA whose leaf covers 127.0.0.1."""
    root = tmp_path_factory.mktemp("hostile")
    hosts, resolv, ca_file = root / "hosts", root / "resolv.conf", root / "ca.pem"
    hosts.write_text(f"127.0.0.1 localhost {OTHER_HOST}\n")
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return Env(hosts, resolv, ca_file, context)


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    """Print every case's code, time and bytes once the module is done."""
    yield
    width = max((len(r[0]) for r in ROWS), default=4)
    print(f"\n{'case':<{width}}  {'layer':<9} {'code':<27} {'seconds':>7}  bytes detail")
    for case, layer, code, seconds, sent in ROWS:
        print(f"{case:<{width}}  {layer:<9} {code:<27} {seconds:>7.3f}  {sent}")


def _options(env: Env, creds: Keyring | None = None, **overrides: Any) -> ProbeOptions:
    settings: dict[str, Any] = {
        "keyring": creds, "certs_dirs": (), "proxy_for": None, "timeout": TIMEOUT,
        "dns": DnsSettings(resolv_conf=env.resolv_conf, hosts_file=env.hosts_file),
        "system_ca": False,
    }
    settings.update(overrides)
    return ProbeOptions(**settings)


def _keyring(server: HostileServer) -> Keyring:
    return Keyring([Credential(key=server.netloc, source="test", username="alice",
                               password=SECRET)])


def _probe(env: Env, server: HostileServer, *, scheme: str = "http", creds: bool = False,
           ) -> tuple[ProbeReport, float]:
    reference = parse_reference(f"{server.netloc}/test/hello:v1")
    target = Target(scheme, "127.0.0.1", server.port,
                    ca_files=(env.ca_file,) if scheme == "https" else ())
    options = _options(env, _keyring(server) if creds else None)
    started = time.monotonic()
    report = run_probe(reference, target, options)
    return report, time.monotonic() - started


def _check(case: str, report: ProbeReport, seconds: float, code: Code, layer: str | None,
           sent: int | str = "") -> None:
    """Assert the deadline and the diagnosis, and add the case to the table."""
    failed = report.diagnosis.layer if report.diagnosis else None
    detail = report.diagnosis.detail if report.diagnosis else ""
    ROWS.append((case, failed or "-", report.code.value, seconds, f"{sent} {detail[:90]}"))
    assert seconds <= BUDGET, (case, seconds, report.to_dict())
    assert (report.code, failed) == (code, layer), report.to_dict()


def _bearer(server: HostileServer, path: str = "/token") -> str:
    return f'Bearer realm="{server.url}{path}",service="hostile"'


def _registry_server(registry: Registry, *, token_on_self: bool = True,
                     sndbuf: int | None = None) -> HostileServer:
    server = HostileServer(registry, sndbuf=sndbuf)
    if token_on_self and registry.challenge is None:
        registry.challenge = _bearer(server)
    return server


# --------------------------------------------------------------------------- dripped headers


# (case, route dripped, status, headers, bearer challenge, code, layer)
DRIP_CASES: list[tuple[str, str, int, list[tuple[str, str]], bool, Code, str]] = [
    ("drip-headers-v2", "v2", 401, [("WWW-Authenticate", 'Bearer realm="x"')], False,
     Code.TIMEOUT, "challenge"),
    ("drip-headers-token", "token", 200, [("Content-Type", "application/json")], True,
     Code.TOKEN_ENDPOINT_UNREACHABLE, "token"),
    ("drip-headers-manifest-head", "manifest", 200, [("Content-Type", OCI_MANIFEST)], False,
     Code.TIMEOUT, "manifest"),
]


@pytest.mark.parametrize(("case", "route", "status", "headers", "bearer", "code", "layer"),
                         DRIP_CASES, ids=[c[0] for c in DRIP_CASES])
def test_dripped_headers_end_by_the_deadline(env: Env, case: str, route: str, status: int,
                                             headers: list[tuple[str, str]], bearer: bool,
                                             code: Code, layer: str) -> None:
    """A head dripped one byte a second is cut by the layer's deadline, not awaited."""
    drip = drip_head(status, headers)
    registry = Registry(routes={route: drip})
    with _registry_server(registry, token_on_self=bearer) as server:
        report, seconds = _probe(env, server)
    _check(case, report, seconds, code, layer, drip.sent)
    assert 0 < drip.sent <= 3  # one byte a second: the probe waited about a second


def test_dripped_token_endpoint_says_it_timed_out(env: Env) -> None:
    """The token layer's evidence blames the deadline, not a reset, for a dripping realm."""
    registry = Registry(routes={"token": drip_head(200)})
    with _registry_server(registry) as server:
        report, _ = _probe(env, server)
    token = report.layer("token")
    assert token is not None and token.evidence["cause"] == Code.TIMEOUT.value, token


# --------------------------------------------------------------------------- endless and huge bodies


def test_endless_body_on_v2(env: Env) -> None:
    """An endless /v2/ body is cut at MAX_BODY and is not a registry answer."""
    registry = Registry(routes={"v2": endless_body("application/json")})
    with _registry_server(registry) as server:
        report, seconds = _probe(env, server)
    _check("endless-body-v2", report, seconds, Code.REGISTRY_NOT_V2, "challenge",
           server.bytes_sent)
    assert MAX_BODY <= server.bytes_sent < 64 * MIB


def test_endless_body_on_token(env: Env) -> None:
    """An endless token response is cut at the token cap and yields no token."""
    registry = Registry(routes={"token": endless_body("application/json")})
    with _registry_server(registry) as server:
        report, seconds = _probe(env, server)
    _check("endless-body-token", report, seconds, Code.REGISTRY_NOT_V2, "token",
           server.bytes_sent)
    assert MAX_TOKEN_RESPONSE <= server.bytes_sent < 64 * MIB


def test_endless_index_on_manifest_get(env: Env) -> None:
    """An index whose GET never ends is cut at MAX_INDEX and reported unreadable."""
    endless = endless_body(OCI_INDEX, [API_HEADER, ("Docker-Content-Digest", "sha256:" + "1" * 64)])
    registry = Registry(routes={"manifest": endless}, manifest_type=OCI_INDEX)
    with _registry_server(registry) as server:
        report, seconds = _probe(env, server)
    _check("endless-body-manifest-get", report, seconds, Code.REGISTRY_NOT_V2, "manifest",
           server.bytes_sent)
    methods = [r.method for r in server.requests if "/manifests/" in r.path]
    assert methods == ["HEAD", "GET"]
    assert MAX_INDEX <= server.bytes_sent < 64 * MIB


def test_hundred_megabyte_token_is_cut_at_the_cap(env: Env) -> None:
    """A 100 MB token response is abandoned after the 1 MiB cap, far from fully sent."""
    registry = Registry(routes={"token": sized_body(100 * MIB, "application/json")})
    with _registry_server(registry) as server:
        report, seconds = _probe(env, server)
        _check("token-100MB", report, seconds, Code.REGISTRY_NOT_V2, "token", server.bytes_sent)
    assert MAX_TOKEN_RESPONSE <= server.bytes_sent < 40 * MIB


@pytest.mark.parametrize("limit", [MAX_BODY, MAX_TOKEN_RESPONSE, MAX_INDEX])
def test_bounded_read_keeps_exactly_the_cap(env: Env, limit: int) -> None:
    """probes._http.exchange keeps exactly ``limit`` bytes of an endless body and says so."""
    registry = Registry(routes={"other": endless_body("application/octet-stream")})
    with HostileServer(registry) as server:
        state = ProbeState(parse_reference(f"{server.netloc}/a:b"), Target(
            "http", "127.0.0.1", server.port), _options(env))
        try:
            ex = exchange(state, "GET", f"{server.url}/blob", limit=limit)
        finally:
            state.close()
    assert (len(ex.body), ex.truncated, ex.status) == (limit, True, 200)


# --------------------------------------------------------------------------- oversized headers


def test_megabyte_header_line(env: Env) -> None:
    """A 1 MB header line hits h11's head limit instead of being buffered whole."""
    registry = Registry(routes={"v2": big_header(MIB)})
    with _registry_server(registry) as server:
        report, seconds = _probe(env, server)
    _check("1MB-header-line", report, seconds, Code.REGISTRY_NOT_V2, "challenge",
           server.bytes_sent)
    assert HEAD_LIMIT == 100 * 1024
    layer = report.layer("challenge")
    assert layer is not None and "too long" in layer.detail.lower(), layer


def test_thousands_of_challenge_parameters(env: Env) -> None:
    """A challenge with thousands of parameters is bounded and the realm still used."""
    registry = Registry()
    with _registry_server(registry) as server:
        registry.challenge = many_params_challenge(f"{server.url}/token", 4000)
        assert 40_000 < len(registry.challenge) < HEAD_LIMIT
        report, seconds = _probe(env, server)
    _check("www-auth-4000-params", report, seconds, Code.OK, None)
    challenge = report.layer("challenge")
    assert challenge is not None and challenge.evidence["challenges"][0]["realm"].endswith("/token")


def test_realm_after_thousands_of_parameters_is_dropped(env: Env) -> None:
    """A realm behind the parameter cap is not seen: no usable realm, not a hang."""
    registry = Registry()
    with _registry_server(registry) as server:
        registry.challenge = many_params_challenge(f"{server.url}/token", 4000,
                                                   realm_first=False)
        report, seconds = _probe(env, server)
    _check("www-auth-realm-after-4000", report, seconds, Code.REGISTRY_NOT_V2, "token")
    assert not any(r.path.startswith("/token") for r in server.requests)


# --------------------------------------------------------------------------- redirects


def test_token_redirect_loop(env: Env) -> None:
    """A token endpoint that redirects to itself is followed MAX_REDIRECTS times, then named."""
    registry = Registry(routes={"token": redirect(lambda r: r.path)})
    with _registry_server(registry) as server:
        report, seconds = _probe(env, server, creds=True)
    _check("token-redirect-loop", report, seconds, Code.REGISTRY_NOT_V2, "token",
           server.bytes_sent)
    asked = [r for r in server.requests if r.path.startswith("/token")]
    assert len(asked) == MAX_REDIRECTS + 1


def test_token_redirect_to_another_host_drops_credentials(env: Env) -> None:
    """Credentials go to the realm but never follow its redirect to another host."""
    with HostileServer(Registry()) as other:
        registry = Registry(routes={"token": redirect(
            lambda r: f"http://{OTHER_HOST}:{other.port}{r.path}")})
        with _registry_server(registry) as server:
            report, seconds = _probe(env, server, creds=True)
    _check("token-redirect-other-host", report, seconds, Code.OK, None)
    first = next(r for r in server.requests if r.path.startswith("/token"))
    arrived = next(r for r in other.requests if r.path.startswith("/token"))
    assert first.headers["authorization"].startswith("Basic ")
    assert "authorization" not in arrived.headers, arrived
    assert arrived.headers["host"] == f"{OTHER_HOST}:{other.port}"
    assert "scope=repository%3Atest%2Fhello%3Apull" in arrived.path


def test_manifest_redirect_is_followed_without_credentials(env: Env) -> None:
    """A 3xx to HEAD manifest is followed, as containerd's Go client does; the evidence names
    where it went, and credentials do not follow to the other origin."""
    with HostileServer(Registry()) as other:
        registry = Registry(routes={"manifest": redirect(lambda r: f"{other.url}{r.path}")})
        with _registry_server(registry) as server:
            report, seconds = _probe(env, server, creds=True)
    _check("manifest-302", report, seconds, Code.OK, None)
    layer = report.layer("manifest")
    assert layer is not None and layer.evidence["redirected_to"] == [other.url]
    arrived = [r for r in other.requests if "/manifests/" in r.path]
    assert arrived and all("authorization" not in r.headers for r in arrived)


# --------------------------------------------------------------------------- TLS


def test_tls_garbage_after_client_hello(env: Env) -> None:
    """Random bytes in answer to a ClientHello fail the handshake at once.

    OpenSSL reads noise as a record of the wrong version, which is also what an HTTP
    answer looks like, so the table names it tls_plain_http (see the report's notes).
    """
    with HostileServer(tls_garbage(seed=7)) as server:
        report, seconds = _probe(env, server, scheme="https")
    _check("tls-garbage", report, seconds, Code.TLS_PLAIN_HTTP, "tls", server.bytes_sent)


def test_tls_closed_mid_handshake(env: Env) -> None:
    """Half a real ServerHello flight, then a close, is an EOF during the handshake."""
    with HostileServer(tls_cut_handshake(env.server_context)) as server:
        report, seconds = _probe(env, server, scheme="https")
    _check("tls-close-mid-handshake", report, seconds, Code.EOF_OR_RESET, "tls",
           server.bytes_sent)
    assert server.bytes_sent > 0


def test_tls_then_no_http_answer(env: Env) -> None:
    """A server that completes TLS and then stays silent times out in the challenge layer."""
    with HostileServer(tls_then_silent(env.server_context)) as server:
        report, seconds = _probe(env, server, scheme="https")
    _check("tls-then-silent", report, seconds, Code.TIMEOUT, "challenge")
    tls = report.layer("tls")
    assert tls is not None and tls.status is Status.OK


def test_http_fallback_keeps_the_callers_deadline(env: Env) -> None:
    """containerd's plain-HTTP retry of a loopback port runs in what is left of the deadline."""
    registry = Registry(routes={"manifest": drip_head(200, [("Content-Type", OCI_MANIFEST)])})
    with HostileServer(late_plain_http(0.7, registry)) as server:
        target = Target("https", "127.0.0.1", server.port, skip_verify=True, http_fallback=True)
        started = time.monotonic()
        report = run_probe(parse_reference(f"{server.netloc}/test/hello:v1"), target,
                           _options(env))
        seconds = time.monotonic() - started
    _check("http-fallback-late-tls-answer", report, seconds, Code.TIMEOUT, "manifest")
    assert report.endpoint.startswith("http://")
    assert seconds <= TIMEOUT + 0.5  # one deadline for both attempts, not one each


# --------------------------------------------------------------------------- DNS


def test_hundreds_of_addresses_are_capped(fleet: Fleet, run_probe: ProbeFn) -> None:
    """big.test's 300 A records are cut to MAX_ADDRESSES and TCP tries at most MAX_TRIED."""
    port = fleet.registries["plain"].port
    started = time.monotonic()
    report = run_probe(f"big.test:{port}/test/hello:v1", plain_http=True, timeout=TIMEOUT)
    seconds = time.monotonic() - started
    _check("dns-big.test-300-records", report, seconds, Code.OK, None)
    dns, tcp = report.layer("dns"), report.layer("tcp")
    assert dns is not None and tcp is not None
    assert dns.evidence["total_addresses"] == BIG_COUNT
    assert len(dns.evidence["addresses"]) == MAX_ADDRESSES
    assert set(dns.evidence["addresses"]) <= set(big_addresses())
    assert len(tcp.evidence["attempts"]) <= MAX_TRIED


def test_cname_loop(fleet: Fleet, run_probe: ProbeFn) -> None:
    """A CNAME loop is a DNS failure, found quickly."""
    started = time.monotonic()
    report = run_probe(f"loop.test:{fleet.registries['plain'].port}/test/hello:v1",
                       plain_http=True, timeout=TIMEOUT)
    _check("dns-cname-loop", report, time.monotonic() - started, Code.DNS_FAILURE, "dns")


# --------------------------------------------------------------------------- memory


_RSS_SCRIPT = r"""
import json, sys, tracemalloc
from pathlib import Path
from probes._net import DnsSettings
from probes.engine import run_probe
from probes.reference import parse_reference
from probes.state import ProbeOptions, Target

options = ProbeOptions(certs_dirs=(), proxy_for=None, timeout=float(sys.argv[2]),
                       dns=DnsSettings(resolv_conf=Path(sys.argv[1]), hosts_file=None),
                       system_ca=False)

def probe(port):
    ref = parse_reference(f"127.0.0.1:{port}/test/hello:v1")
    return run_probe(ref, Target("http", "127.0.0.1", port), options)

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

def peak_growth(action):
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current
    base = status("VmRSS")
    tracemalloc.start()
    result = action()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, status("VmHWM") - base, peak

def control():
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    return len(block)

probe(int(sys.argv[3]))  # warm-up on a healthy registry: imports, pools, sockets
out = {}
for spec in sys.argv[4:]:
    name, port = spec.split("=")
    report, rss, peak = peak_growth(lambda: probe(int(port)))
    out[name] = {"code": report.code.value, "rss_growth": rss, "python_peak": peak}
_, rss, peak = peak_growth(control)
out["control-64MiB"] = {"code": "-", "rss_growth": rss, "python_peak": peak}
print(json.dumps(out))
"""

MEMORY_CASES = {
    "token-100MB": (Registry(routes={"token": sized_body(100 * MIB, "application/json")}),
                    MAX_TOKEN_RESPONSE),
    "token-endless": (Registry(routes={"token": endless_body("application/json")}),
                      MAX_TOKEN_RESPONSE),
    "v2-endless": (Registry(routes={"v2": endless_body("application/json")}), MAX_BODY),
    "index-endless": (Registry(routes={"manifest": endless_body(OCI_INDEX)},
                               manifest_type=OCI_INDEX), MAX_INDEX),
}


def test_memory_stays_bounded(env: Env) -> None:
    """A probe process reading 100 MB and endless bodies grows by a few caps, not by 100 MB."""
    servers = {name: _registry_server(registry) for name, (registry, _) in MEMORY_CASES.items()}
    healthy = _registry_server(Registry())
    try:
        for server in (*servers.values(), healthy):
            server.__enter__()
        argv = [sys.executable, "-c", _RSS_SCRIPT, str(env.resolv_conf), str(TIMEOUT),
                str(healthy.port), *(f"{n}={s.port}" for n, s in servers.items())]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                             cwd=Path(__file__).resolve().parents[2],
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    finally:
        for server in (*servers.values(), healthy):
            server.stop()
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    for name, case in out.items():
        sent = servers[name].bytes_sent if name in servers else ""
        ROWS.append((f"memory:{name}", "-", case["code"], 0.0,
                     f"rss+{case['rss_growth']} py-peak={case['python_peak']} sent={sent}"))
    # the method sees a large read: 64 MiB allocated shows as (nearly) 64 MiB of growth
    assert out["control-64MiB"]["rss_growth"] > 60 * MIB, out
    for name, (_, cap) in MEMORY_CASES.items():
        assert out[name]["code"] == Code.REGISTRY_NOT_V2.value, out
        assert out[name]["python_peak"] < 3 * cap + MIB, (name, out[name])
        assert out[name]["rss_growth"] < 3 * cap + 4 * MIB, (name, out[name])

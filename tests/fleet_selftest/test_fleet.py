"""The fleet itself: each component answers as documented, and stops without leftovers."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import httpx
import jwt
import pytest

from tests.fleet import ALICE, BOB, PROXY_PASSWORD, PROXY_USER, Fleet, FleetError
from tests.fleet import registry as registry_module
from tests.fleet.images import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, host_platform


def _verify(fleet: Fleet) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(fleet.ca_file))


def _client(fleet: Fleet, **kwargs: Any) -> httpx.Client:
    options: dict[str, Any] = {"verify": _verify(fleet), "trust_env": False, "timeout": 5}
    return httpx.Client(**options, **kwargs)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- registries -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "challenge"),
    [
        ("plain", 200, None),
        ("tls", 200, None),
        ("basic", 401, 'Basic realm="basic-realm"'),
        ("token", 401, "Bearer realm="),
    ],
)
def test_v2_answers_per_registry(
    fleet: Fleet, name: str, status: int, challenge: str | None
) -> None:
    """Each usable registry answers /v2/ with its documented status and challenge."""
    with _client(fleet) as client:
        r = client.get(f"{fleet.registries[name].url}/v2/")
    assert r.status_code == status
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    if challenge:
        assert r.headers["WWW-Authenticate"].startswith(challenge)
    if name == "token":
        assert f'realm="{fleet.token_server.url}"' in r.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("name", "verify_code"),
    [
        ("expired", 10),  # X509_V_ERR_CERT_HAS_EXPIRED
        ("notyet", 9),  # X509_V_ERR_CERT_NOT_YET_VALID
        ("mismatch", 64),  # X509_V_ERR_IP_ADDRESS_MISMATCH (dialled by IP)
        ("untrusted", 20),  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    ],
)
def test_faulty_tls_registries_fail_verification(fleet: Fleet, name: str, verify_code: int) -> None:
    """Each faulty TLS registry fails certificate verification for its own reason."""
    reg = fleet.registries[name]
    with (
        socket.create_connection(("127.0.0.1", reg.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError) as err,
    ):
        _verify(fleet).wrap_socket(raw, server_hostname="127.0.0.1")
    assert err.value.verify_code == verify_code


def test_images_are_served_by_every_instance(fleet: Fleet) -> None:
    """The pushed digests and platforms are what the TLS and basic registries serve."""
    accept = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_LIST}"
    with _client(fleet, headers={"Accept": accept}) as client:
        for key, image in fleet.images.items():
            r = client.head(
                f"{fleet.registries['tls'].url}/v2/{image.repository}/manifests/{image.tag}"
            )
            assert (r.status_code, r.headers["Docker-Content-Digest"]) == (200, image.digest), key
        r = client.head(f"{fleet.registries['basic'].url}/v2/test/hello/manifests/v1", auth=ALICE)
        assert r.status_code == 200
    own = host_platform()
    assert list(fleet.images["hello"].platforms) == [own]
    assert set(fleet.images["multi"].platforms) == {"linux/amd64", "linux/arm64", "linux/arm/v7"}
    assert own not in fleet.images["otherarch"].platforms and fleet.images["otherarch"].platforms
    assert fleet.images["dockerlist"].media_type == DOCKER_LIST


# --- token server ------------------------------------------------------------------------------


def _token(fleet: Fleet, scope: str, auth: tuple[str, str] | None) -> httpx.Response:
    with _client(fleet) as client:
        return client.get(
            fleet.token_server.url,
            auth=auth,
            params={"service": fleet.token_server.service, "scope": scope},
        )


def test_alice_token_pulls_from_token_registry(fleet: Fleet) -> None:
    """alice's token gives 200 on a manifest HEAD; the response carries expires_in and issued_at."""
    r = _token(fleet, "repository:test/hello:pull", ALICE)
    body = r.json()
    assert (r.status_code, body["expires_in"]) == (200, 300) and body["issued_at"].endswith("Z")
    with _client(fleet) as client:
        head = client.head(
            f"{fleet.registries['token'].url}/v2/test/hello/manifests/v1",
            headers={"Authorization": f"Bearer {body['token']}", "Accept": OCI_MANIFEST},
        )
    assert head.status_code == 200


@pytest.mark.parametrize(
    ("auth", "scope", "granted"),
    [
        (
            ALICE,
            "repository:test/hello:pull,push",
            [{"type": "repository", "name": "test/hello", "actions": ["pull", "push"]}],
        ),
        (BOB, "repository:test/hello:pull", []),
        (None, "repository:test/hello:pull", []),
        (
            None,
            "repository:public/hello:pull,push",
            [{"type": "repository", "name": "public/hello", "actions": ["pull"]}],
        ),
    ],
)
def test_token_policy(
    fleet: Fleet, auth: tuple[str, str] | None, scope: str, granted: list[object]
) -> None:
    """The token's access claim follows the documented per-user policy."""
    r = _token(fleet, scope, auth)
    claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
    assert claims["access"] == granted


def test_token_wrong_password_and_password_grant(fleet: Fleet) -> None:
    """A wrong password gets a 401 JSON error; the OAuth2 POST grant issues a token."""
    assert _token(fleet, "repository:test/hello:pull", ("alice", "nope")).status_code == 401
    with _client(fleet) as client:
        r = client.post(
            fleet.token_server.url,
            data={
                "grant_type": "password",
                "username": ALICE[0],
                "password": ALICE[1],
                "service": fleet.token_server.service,
                "scope": "repository:test/hello:pull",
            },
        )
    assert r.status_code == 200 and r.json()["access_token"]


# --- DNS ---------------------------------------------------------------------------------------


def _resolver(fleet: Fleet, *, system: bool = False) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [fleet.dns.system_address if system else fleet.dns.address]
    res.port = fleet.dns.system_port if system else fleet.dns.port
    res.lifetime = res.timeout = 0.4
    return res


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        ("registry.test", "A", ["127.0.0.1"]),
        ("Mirror.Registry.test", "AAAA", ["::1"]),
        ("registry.corp.test", "A", ["127.0.0.1"]),
        ("noaddr.test", "A", dns.resolver.NoAnswer),
        ("x.nx.test", "A", dns.resolver.NXDOMAIN),
        ("hostsonly.test", "A", dns.resolver.NXDOMAIN),
        ("x.servfail.test", "A", dns.resolver.NoNameservers),
        ("x.refused.test", "A", dns.resolver.NoNameservers),
        ("example.com", "A", dns.resolver.NoNameservers),
        ("x.drop.test", "A", dns.resolver.LifetimeTimeout),
    ],
)
def test_dns_zone(fleet: Fleet, name: str, qtype: str, expected: object) -> None:
    """Each name of the zone resolves (or fails) as documented."""
    if isinstance(expected, list):
        assert [r.to_text() for r in _resolver(fleet).resolve(name, qtype)] == expected
    else:
        with pytest.raises(expected):  # type: ignore[call-overload]
            _resolver(fleet).resolve(name, qtype)


def test_dns_cname_loop(fleet: Fleet) -> None:
    """loop.test answers with two CNAMEs pointing at each other."""
    reply = dns.query.udp(
        dns.message.make_query("loop.test", "A"), fleet.dns.address, port=fleet.dns.port, timeout=2
    )
    chain = sorted((rr.name.to_text(), rr[0].target.to_text()) for rr in reply.answer)
    assert chain == [("loop.test.", "loop2.test."), ("loop2.test.", "loop.test.")]


def test_dns_big_answer_needs_tcp_and_port_53_answers(fleet: Fleet) -> None:
    """big.test is truncated over UDP, complete over TCP; 127.0.0.153:53 serves the same zone."""
    query = dns.message.make_query("big.test", "A")
    udp = dns.query.udp(query, fleet.dns.address, port=fleet.dns.port, timeout=2)
    assert udp.flags & dns.flags.TC and not udp.answer
    assert len(_resolver(fleet, system=True).resolve("big.test", "A")) == 300
    tcp = dns.query.tcp(query, fleet.dns.system_address, port=53, timeout=2)
    assert len(tcp.answer[0]) == 300


# --- proxies -----------------------------------------------------------------------------------


def test_open_proxy_connects_only_to_listed_ports(fleet: Fleet) -> None:
    """CONNECT reaches a TLS registry (by IP and by registry.test); the plain port is refused."""
    tls = fleet.registries["tls"]
    with _client(fleet, proxy=fleet.proxies["open"].url) as client:
        assert client.get(f"{tls.url}/v2/").status_code == 200
        assert client.get(f"https://registry.test:{tls.port}/v2/").status_code == 200
    with _client(fleet, proxy=fleet.proxies["open"].url) as client:
        with pytest.raises(httpx.ProxyError, match="403"):
            client.get(f"https://127.0.0.1:{fleet.registries['plain'].port}/v2/")
        with pytest.raises(httpx.ProxyError, match="403 Filtered"):
            client.get(f"https://example.com:{tls.port}/")  # never resolved, never left the box


def test_auth_proxy_requires_credentials(fleet: Fleet) -> None:
    """The auth proxy answers 407 without credentials and tunnels with proxyuser/proxypass."""
    tls, auth = fleet.registries["tls"], fleet.proxies["auth"]
    with _client(fleet, proxy=auth.url) as client, pytest.raises(httpx.ProxyError, match="407"):
        client.get(f"{tls.url}/v2/")
    with_creds = auth.url.replace("http://", f"http://{PROXY_USER}:{PROXY_PASSWORD}@")
    with _client(fleet, proxy=with_creds) as client:
        assert client.get(f"{tls.url}/v2/").status_code == 200


# --- fault sockets -----------------------------------------------------------------------------


def test_fault_ports(fleet: Fleet) -> None:
    """closed refuses, blackhole times out, silent never answers, reset sends an RST."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fleet.closed_port), timeout=1)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        socket.create_connection(("127.0.0.1", fleet.blackhole_port), timeout=1)
    assert time.monotonic() - began >= 0.9
    with socket.create_connection(("127.0.0.1", fleet.silent_port), timeout=0.3) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(TimeoutError):
            s.recv(1)
    with socket.create_connection(("127.0.0.1", fleet.reset_port), timeout=2) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            s.recv(1)


# --- quirky servers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "method", "path", "status", "header"),
    [
        ("html", "GET", "/v2/", 200, ("content-type", "text/html; charset=utf-8")),
        ("ratelimit", "GET", "/v2/", 200, ("docker-distribution-api-version", "registry/2.0")),
        (
            "ratelimit",
            "HEAD",
            "/v2/test/hello/manifests/v1",
            429,
            ("ratelimit-remaining", "0;w=21600"),
        ),
        ("error500", "GET", "/v2/", 503, ("content-type", "application/json")),
        (
            "forbidden",
            "GET",
            "/v2/test/hello/manifests/v1",
            403,
            ("content-type", "application/json"),
        ),
        (
            "manifest500",
            "GET",
            "/v2/test/hello/manifests/v1",
            500,
            ("content-type", "application/json"),
        ),
    ],
)
def test_quirky_servers(
    fleet: Fleet, name: str, method: str, path: str, status: int, header: tuple[str, str]
) -> None:
    """Each quirky server answers its documented status and records the request."""
    server = fleet.quirky[name]
    with httpx.Client(trust_env=False, timeout=5) as client:
        r = client.request(method, f"{server.url}{path}", headers={"Authorization": "Bearer s3"})
    assert (r.status_code, r.headers.get(header[0])) == (status, header[1])
    assert "docker-distribution-api-version" not in r.headers or name != "html"
    last = server.requests[-1]
    assert (last.method, last.path, last.headers["authorization"]) == (method, path, "Bearer s3")
    assert "s3" not in repr(last)


def test_ratelimit_body(fleet: Fleet) -> None:
    """The rate-limit server sends Docker Hub's TOOMANYREQUESTS body and limit header."""
    r = httpx.get(
        f"{fleet.quirky['ratelimit'].url}/v2/library/nginx/manifests/latest", trust_env=False
    )
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert r.headers["ratelimit-limit"] == "100;w=21600"


# --- files ------------------------------------------------------------------------------------


def test_files(fleet: Fleet, tmp_path: Path) -> None:
    """resolv.conf, hosts, certs.d and docker configs have the documented content."""
    assert "nameserver 127.0.0.153" in fleet.resolv_conf.read_text()
    assert "127.0.0.1 hostsonly.test" in fleet.hosts_file.read_text()
    port = fleet.registries["token"].port
    toml = (fleet.certs_dir / f"registry.test:{port}" / "hosts.toml").read_text()
    assert f'[host."https://registry.test:{port}"]' in toml and str(fleet.ca_file) in toml
    assert not (fleet.certs_dir / f"127.0.0.1:{fleet.registries['plain'].port}").exists()
    path = fleet.docker_config({"r:1": ALICE})
    assert (
        json.loads(path.read_text())["auths"]["r:1"]["auth"]
        == base64.b64encode(b"alice:secret").decode()
    )
    legacy = json.loads(
        fleet.docker_config({"r:1": ALICE}, tmp_path / "c", "dockercfg").read_text()
    )
    assert set(legacy["r:1"]) == {"auth", "email"}
    named = json.loads(fleet.docker_config({"r:1": BOB}, shape="username").read_text())
    assert named["auths"]["r:1"] == {"username": "bob", "password": "bob"}


# --- containerd --------------------------------------------------------------------------------


def test_containerd_pulls(fleet: Fleet) -> None:
    """ctr pulls by IP, by registry.test and via the token server, and fails on a wrong password."""
    ctrd = fleet.start_containerd()
    tls, basic, token = (fleet.registries[n] for n in ("tls", "basic", "token"))
    ok = ctrd.pull(fleet.images["hello"].ref(tls.host), hosts_dir=fleet.certs_dir)
    assert ok.returncode == 0, ok.last_line
    named = ctrd.pull(f"registry.test:{tls.port}/test/multi:v1", hosts_dir=fleet.certs_dir)
    assert named.returncode == 0, named.last_line
    alice = ctrd.pull(f"{token.host}/test/hello:v1", hosts_dir=fleet.certs_dir, user="alice:secret")
    assert alice.returncode == 0, alice.last_line
    assert [r.method for r in fleet.token_server.requests[-1:]] == ["POST"]
    bad = ctrd.pull(f"{basic.host}/test/hello:v1", hosts_dir=fleet.certs_dir, user="alice:wrong")
    assert bad.returncode == 1 and "401 Unauthorized" in bad.last_line
    assert "wrong" not in bad.stderr


# --- lifecycle ---------------------------------------------------------------------------------


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (a /proc scan, like pgrep -f)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended while we looked
        if text in argv:
            found.append(argv)
    return found


def test_second_fleet_stops_everything(tmp_path: Path) -> None:
    """A fleet leaves no process and no listening port behind when its block exits."""
    with Fleet.start(tmp_path) as other:
        pids = other.pids()
        ports = [r.port for r in other.registries.values()] + [other.quirky["html"].port]
        assert len(pids) == len(other.registries) + len(other.proxies)
    assert _processes_mentioning(str(tmp_path)) == []
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)


def test_failed_start_names_component_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that cannot start fails start-up with its name and log, and nothing lingers."""
    monkeypatch.setattr(registry_module, "REGISTRY_BINARY", "/bin/false")
    with (
        pytest.raises(FleetError, match=r"registry '\w+'.*exited.*registry-\w+\.log"),
        Fleet.start(tmp_path),
    ):
        pass  # pragma: no cover
    assert _processes_mentioning(str(tmp_path)) == []
